"""Data-parallel training through PyTorch's own engine: `torchrun` starts the processes, torch.distributed joins
them (gloo on CPU, NCCL on GPU) and DistributedDataParallel averages the gradients.

Every process runs the same loop on the same global batch positions (DESIGN.md, Scale): the items, augmentation,
masks, σ and noise of a step are drawn for the whole global batch from (seed, step), exactly as one process
would draw them, and each process trains on its contiguous share. Per-sample losses are gathered, so every
process's stability guard judges the whole batch with the same numbers and takes the same decision; the fixed
validation set is split across processes and its losses gathered the same way. N processes therefore follow the
trajectory of one process with the same global batch, up to the order of floating-point reductions.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError, SteadydiffError

log = logging.getLogger("steadydiff")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run directory, logs, samples and evaluates."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of n items (n divisible by the world size)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def rows(self, n: int) -> slice:
        """This rank's share of n rows that need not divide evenly (ceil-sized chunks, the last one shorter)."""
        per = -(-n // self.size)
        return slice(min(n, self.rank * per), min(n, (self.rank + 1) * per))

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The ranks' equal-sized tensors concatenated along dim 0 in rank order (one process: `local`)."""
        if not self.active:
            return local
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """`gather` for the shares of `rows(n)`: each is padded to the chunk size, the padding dropped after."""
        if not self.active:
            return local
        per = -(-n // self.size)
        padded = local.new_zeros((per, *local.shape[1:]))
        padded[:len(local)] = local
        return self.gather(padded)[:n]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = World()


def from_environment(device: torch.device, timeout_s: float) -> tuple[World, torch.device]:
    """The world torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), its process group joined — NCCL for CUDA
    devices, gloo otherwise — with collectives that give up after `timeout_s`; and this rank's device (its own GPU
    by LOCAL_RANK). Without torchrun: one process, nothing joined."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE, device
    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    if not world.main:
        log.setLevel(logging.ERROR)  # one voice: rank 0 reports; the others speak only of errors
    return world, device


def check_batch(batch: int, world: World, accumulate: int = 1) -> None:
    """The global batch must split into equal shares, one per process and micro-batch (train.accumulate)."""
    parts = world.size * accumulate
    if batch % parts:
        who = (f"the {world.size} processes" if world.active else "") + \
            (" × " if world.active and accumulate > 1 else "") + \
            (f"{accumulate} micro-batches (train.accumulate)" if accumulate > 1 else "")
        nearest = batch - batch % parts or parts
        raise ConfigError(f"train.batch_size={batch} is the global batch, shared equally by {who}; it is not "
                          f"divisible by {parts}. Choose a multiple of {parts} (e.g. {nearest}).")


def close(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def lost_peer(world: World, exc: BaseException, run_dir: object) -> SteadydiffError:
    """The error a collective's failure becomes: another process died or hung past train.dist_timeout_s."""
    return SteadydiffError(
        f"process {world.rank} of {world.size}: a collective operation with the other processes failed "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}): another process died "
        f"or stopped answering within train.dist_timeout_s. The checkpoints in {run_dir}/checkpoints are intact; "
        "run the same command again to resume from the newest.")


def launch(nproc: int, argv: list[str]) -> int:
    """`steadydiff train --nproc N …` on one machine: the same command under torchrun with N processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "steadydiff", *argv]
    log.info("starting %d processes: %s", nproc, " ".join(cmd[1:]))
    return subprocess.run(cmd, check=False).returncode
