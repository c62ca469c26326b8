"""Where batches come from: tensors on the device (small data) or a DataLoader (large/augmented).

Both give the loop (x, y) pairs on the device: `shuffled` in a seeded order for training,
`in_order` for evaluation. The shuffling generator is the session's, saved in checkpoints.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from dlcli.engine.distributed import World, part_of_batch, shard
from dlcli.errors import UserError
from dlcli.system import interrupts
from dlcli.system.sockets import make_worker_sockets_fit

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

    def _loader(self, batch_size: int) -> DataLoader:
        """The loader of evaluation's batches, in order."""
        if batch_size not in self._loaders:  # kept, so persistent workers survive from epoch to epoch
            self._loaders[batch_size] = DataLoader(
                self.dataset,
                batch_size=batch_size,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                drop_last=False,
                worker_init_fn=ignore_ctrl_c,
            )
        return self._loaders[batch_size]

    def _shuffling_loader(self, seed: int) -> DataLoader:
        """One process's loader of training batches, kept so that its persistent workers survive from
        epoch to epoch: each epoch hands it that epoch's batches (EpochBatches). Its workers' random
        draws are seeded from the first epoch's seed, which the run's generator gave."""
        if "shuffled" not in self._loaders:
            self._loaders["shuffled"] = DataLoader(
                self.dataset, batch_sampler=EpochBatches(), num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                worker_init_fn=ignore_ctrl_c, generator=torch.Generator().manual_seed(seed),
            )
        return self._loaders["shuffled"]

    def _to_device(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        return (self.transform(x) if self.transform is not None else x), y

    def shuffled(self, batch_size: int, generator: torch.Generator, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of `batch_size` in a seeded order; with several ranks, this rank's part of each.
        One process and every rank draw only the order from the run's generator, as TensorBatches
        does, so that one process and several, and a folder read from its files or held in memory,
        train on the same batches; the workers' random draws (augmentation) are seeded from the
        generator's state and the rank."""
        order = torch.randperm(len(self), generator=generator)
        seed = seed_from(generator) + world.rank
        batches = epoch_batches(order, batch_size, world)
        if world.active:  # a loader per epoch: its workers' draws seeded by this epoch's seed (exact resume)
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, worker_init_fn=ignore_ctrl_c,
                                pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(seed))
        else:
            loader = self._shuffling_loader(seed)
            loader.batch_sampler.batches = batches  # before iter(): its workers fetch ahead from these
        for batch in from_workers(loader):
            yield self._to_device(batch)

    def in_order(self, batch_size: int, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if world.active:
            loader = DataLoader(Subset(self.dataset, shard(len(self), world)), batch_size=batch_size,
                                num_workers=self.num_workers, pin_memory=self.device.type == "cuda", worker_init_fn=ignore_ctrl_c)
            for batch in from_workers(loader):
                yield self._to_device(batch)
            return
        for batch in from_workers(self._loader(batch_size)):
            yield self._to_device(batch)

    def peek(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` samples as one batch, read here: no worker pool is started or kept."""
        return self._to_device(default_collate([self.dataset[i] for i in range(min(count, len(self.dataset)))]))


def epoch_batches(order: torch.Tensor, batch_size: int, world: World) -> list[list[int]]:
    """This rank's rows of each global batch of `batch_size` taken from `order`, as TensorBatches
    takes them: a lone trailing sample (which breaks batch norm) and a batch some rank would get
    fewer than two rows of end the epoch."""
    count, batches = len(order), []
    for start in range(0, count, batch_size):
        rows = order[start : start + batch_size]
        part = part_of_batch(rows, world) if not (len(rows) == 1 and count > 1) else None
        if part is None:
            break
        batches.append(part.tolist())
    return batches


def seed_from(generator: torch.Generator) -> int:
    """A seed that follows from the generator's state without drawing from it (a draw would change
    the orders of the epochs after, which then differed from the in-memory path's)."""
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2  # below 2**62: room for the rank and the worker's id


class EpochBatches:
    """A batch sampler whose batches are set anew each epoch (a kept DataLoader's)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def ignore_ctrl_c(worker_id: int) -> None:
    """A DataLoader worker's start: it ignores Ctrl-C (dlcli.system.interrupts.ignore_ctrl_c)."""
    interrupts.ignore_ctrl_c()


def from_workers(loader: DataLoader) -> Iterator:
    """The loader's batches. A user error raised in a worker process (a file that cannot be
    decoded) comes back from it with the worker's whole traceback as its message: it is raised
    here again as the one line it was. Workers hand their batches over sockets whose paths a long
    TMPDIR would make too long, each batch then lost and waited for forever (dlcli.system.sockets)."""
    if loader.num_workers > 0:
        make_worker_sockets_fit()
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
