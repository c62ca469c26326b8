"""Several processes training one model (DistributedDataParallel): who this process is in the
group, and the few collectives the engine needs so that every rank sees the same numbers and takes
the same decisions.

Each epoch every rank walks the same seeded permutation and takes its own part of every global
batch (trainer.batch_size is the global batch); validation and the test look split the samples into
contiguous shards without padding and gather the outputs back in order, so every sample is counted
exactly once and the metrics equal one process's on the same weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dlcli.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes (run directory, metrics, checkpoints, logs)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """This process's place in the initialized process group (one process: World())."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def launched_by_torchrun() -> bool:
    """This process is one of several workers a torchrun (elastic) launcher started."""
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def part_of_batch(rows: torch.Tensor, world: World) -> torch.Tensor | None:
    """This rank's part of a global batch (as even as the batch allows); None when some rank would
    get fewer than two rows (a lone sample breaks batch norm, as in one process), so that every rank
    skips that batch alike (a step every rank must take together)."""
    if not world.active:
        return rows
    if len(rows) < 2 * world.size:
        return None
    return torch.tensor_split(rows, world.size)[world.rank]


def shard(count: int, world: World) -> range:
    """This rank's contiguous share of `count` samples, in order, no padding."""
    return range(count * world.rank // world.size, count * (world.rank + 1) // world.size)


def gather_in_order(outputs: torch.Tensor, targets: torch.Tensor, world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's shard of outputs and targets, concatenated in rank order (the samples' order)."""
    if not world.active:
        return outputs, targets

    parts: list = [None] * world.size
    dist.all_gather_object(parts, (outputs.detach().cpu(), targets.detach().cpu()))
    device = outputs.device
    return (torch.cat([p[0] for p in parts]).to(device), torch.cat([p[1] for p in parts]).to(device))


def buffers_of_rank_zero(model: torch.nn.Module, world: World) -> None:
    """Every rank's buffers (batch norm's running statistics) made rank 0's: each rank updated its
    own on its own batches since DDP last broadcast them, and validation, like the checkpoint, must
    use rank 0's."""
    if not world.active:
        return

    for buffer in model.buffers():
        if dist.get_backend() == "nccl" or buffer.device.type == "cpu":
            dist.broadcast(buffer, src=0)
        else:  # gloo works on CPU tensors
            on_cpu = buffer.detach().cpu()
            dist.broadcast(on_cpu, src=0)
            buffer.copy_(on_cpu)


def summed(value: torch.Tensor, world: World) -> torch.Tensor:
    """A tensor summed over the ranks, element by element (on the CPU for gloo, on the device for nccl)."""
    if not world.active:
        return value

    if dist.get_backend() == "nccl":  # nccl sums on this rank's GPU
        on = value.detach().to(f"cuda:{torch.cuda.current_device()}", copy=True)
    else:
        on = value.detach().cpu().clone()
    dist.all_reduce(on)
    return on.to(value.device)


def check_devices(devices: int, device: torch.device, sync_batchnorm: bool, batch_size: int) -> None:
    """trainer.devices against what this machine has and what each backend supports."""
    if sync_batchnorm and device.type != "cuda":
        raise UserError(f"trainer.sync_batchnorm=true needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only), and this run "
                        f"trains on {device}: drop it")
    if devices == 1:
        return
    if device.type == "mps":
        raise UserError(f"trainer.devices={devices} with MPS: Apple's GPU is one device, and PyTorch has no backend to train "
                        "several processes on it; use trainer.devices=1, or trainer.device=cpu for CPU processes")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if devices > count:
            raise UserError(f"trainer.devices={devices}: this machine has {count} CUDA GPU{'s' if count != 1 else ''}; "
                            f"choose {count} or fewer (or trainer.device=cpu for CPU processes)")
    if batch_size % devices:
        raise UserError(f"trainer.batch_size={batch_size} is the global batch, split evenly over trainer.devices={devices}: "
                        f"give a multiple of {devices}, e.g. trainer.batch_size={batch_size - batch_size % devices or devices}")
