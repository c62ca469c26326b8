"""Where batches come from: tensors on the device (small data) or a DataLoader (large/augmented).

Both give the loop (x, y) pairs on the device: `shuffled` in a seeded order for training,
`in_order` for evaluation. The shuffling generator is the session's, saved in checkpoints.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from dlcli.engine.distributed import World, part_of_batch, shard
from dlcli.errors import UserError

BatchTransform = Callable[[torch.Tensor], torch.Tensor]


class BatchAugment(Protocol):
    """Augmentation of training batches where they are (dlcli.data.batch_augment): each epoch
    draws its random numbers from the run's generator, then transforms batches of sample rows."""

    def epoch(self, count: int, generator: torch.Generator, device: torch.device,
              world: World) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]: ...


class TensorBatches:
    """Samples held on the device as tensors, batched by indexing; no DataLoader overhead.

    `transform` runs on each batch on the device (e.g. uint8 -> float, resize, normalize), so
    images stay compact in memory and are never resized all at once; `augment`, when given, takes
    its place for training batches.
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, transform: BatchTransform | None = None,
                 augment: BatchAugment | None = None):
        self.features, self.targets, self.transform, self.augment = features, targets, transform, augment

    def __len__(self) -> int:
        return len(self.targets)

    def _batch(self, rows, augmented: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features[rows]
        if augmented is not None:
            return augmented(x, rows), self.targets[rows]
        return (self.transform(x) if self.transform is not None else x), self.targets[rows]

    def shuffled(self, batch_size: int, generator: torch.Generator, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of `batch_size` in a seeded order; with several ranks, this rank's part of each
        (every rank draws the same order from the same generator)."""
        count = len(self)
        order = torch.randperm(count, generator=generator).to(self.targets.device)
        augmented = self.augment.epoch(count, generator, self.targets.device, world) if self.augment is not None else None
        for start in range(0, count, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) == 1 and count > 1:
                return  # a lone trailing sample breaks batch norm and adds only noise
            rows = part_of_batch(rows, world)
            if rows is None:
                return
            yield self._batch(rows, augmented)

    def in_order(self, batch_size: int, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every sample in order; with several ranks, this rank's contiguous shard."""
        part = shard(len(self), world)
        for start in range(part.start, part.stop, batch_size):
            yield self._batch(slice(start, min(start + batch_size, part.stop)))

    def peek(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` samples as one batch, for a look that must not disturb training."""
        return self._batch(slice(0, count))


class LoaderBatches:
    """A Dataset read through a DataLoader with workers, pinned memory and persistent workers."""

    def __init__(self, dataset: Dataset, targets: torch.Tensor, device: torch.device, num_workers: int = 0,
                 transform: BatchTransform | None = None):
        self.dataset, self.targets, self.device = dataset, targets, device
        self.num_workers, self.transform = num_workers, transform
        self._loaders: dict = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, batch_size: int, generator: torch.Generator | None) -> DataLoader:
        key = (batch_size, generator is not None)
        if key not in self._loaders:  # kept, so persistent workers survive from epoch to epoch
            self._loaders[key] = DataLoader(
                self.dataset,
                batch_size=batch_size,
                shuffle=generator is not None,
                generator=generator,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                drop_last=False,
                worker_init_fn=ignore_ctrl_c,
            )
        return self._loaders[key]

    def _to_device(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        return (self.transform(x) if self.transform is not None else x), y

    def shuffled(self, batch_size: int, generator: torch.Generator, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self)
        if world.active:
            yield from self._rank_batches(batch_size, generator, world)
            return
        for batch in from_workers(self._loader(batch_size, generator)):
            if len(batch[1]) == 1 and count > 1:
                return
            yield self._to_device(batch)

    def _rank_batches(self, batch_size: int, generator: torch.Generator, world: World):
        """This rank's part of each global batch of the same seeded order every rank draws; the
        workers' random draws (augmentation) are seeded from the run's generator and the rank."""
        count = len(self)
        order = torch.randperm(count, generator=generator)
        seed = int(torch.randint(2**62, (1,), generator=generator)) + world.rank
        batches = []
        for start in range(0, count, batch_size):
            rows = order[start : start + batch_size]
            part = part_of_batch(rows, world) if not (len(rows) == 1 and count > 1) else None
            if part is None:
                break
            batches.append(part.tolist())
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, worker_init_fn=ignore_ctrl_c,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(seed))
        for batch in from_workers(loader):
            yield self._to_device(batch)

    def in_order(self, batch_size: int, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if world.active:
            from torch.utils.data import Subset

            loader = DataLoader(Subset(self.dataset, shard(len(self), world)), batch_size=batch_size,
                                num_workers=self.num_workers, pin_memory=self.device.type == "cuda", worker_init_fn=ignore_ctrl_c)
            for batch in from_workers(loader):
                yield self._to_device(batch)
            return
        for batch in from_workers(self._loader(batch_size, None)):
            yield self._to_device(batch)

    def peek(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` samples as one batch, read here: no worker pool is started or kept."""
        from torch.utils.data import default_collate

        return self._to_device(default_collate([self.dataset[i] for i in range(min(count, len(self.dataset)))]))


def ignore_ctrl_c(worker_id: int) -> None:
    """A DataLoader worker's start: a terminal's Ctrl-C reaches the whole process group, and a
    worker it killed would fail the batch the main process is waiting for (a traceback, the epoch
    lost). The main process decides what Ctrl-C does; the workers end with it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def from_workers(loader: DataLoader) -> Iterator:
    """The loader's batches. A user error raised in a worker process (a file that cannot be
    decoded) comes back from it with the worker's whole traceback as its message: it is raised
    here again as the one line it was."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except UserError as exc:
            text = str(exc)
            if "Original Traceback" not in text:
                raise
            last = [line for line in text.strip().splitlines() if line.strip()][-1]
            raise UserError(last.split(": ", 1)[1] if ": " in last else last) from None
        yield batch
