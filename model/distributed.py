"""Distributed training: the process group ``torchrun`` describes (gloo on CPU, NCCL on CUDA), the
device of each rank, and how many dataloader workers a rank takes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from unigeo.core.errors import UniGeoError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (none: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


def resolve_device(device: str, d: Dist) -> torch.device:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UniGeoError("--device cuda: no CUDA device is available to this torch build")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    if device != "cpu":
        raise UniGeoError(f"--device must be cpu or cuda, got {device!r}")
    return torch.device("cpu")


def auto_workers(device: torch.device, local_world_size: int) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(0, min(4, cores // max(1, local_world_size) - 1))
    spare = cores - local_world_size * min(4, torch.get_num_threads())
    return max(0, min(4, spare // max(1, local_world_size)))
