"""How many CPU threads torch computes with.

torch starts as many intra-op threads as the machine has cores, and its OpenMP threads spin-wait for one another:
on cores that other processes keep busy, a step waits for a thread that is not running. Measured on a 2-core CPU
with one other busy process (BENCHMARKS.md, scale): a toy MLP step took 9 ms with one thread and 17 ms with two,
a digits U-Net step at batch 32 47 ms and 207 ms. Small models also gain little from threads on a free CPU. So the
count is measured, not assumed: a few real steps with each candidate count, and the fastest (the smaller count
unless a larger one is clearly faster) is kept.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable

import torch

log = logging.getLogger("steadydiff")

TRIALS = 3  # timed repetitions per candidate, after one warm-up
CLEARLY_FASTER = 0.9  # a larger count must take at most this share of the time of a smaller one


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_threads(setting: int, work: Callable[[], object], *, processes: int = 1, what: str = "step"
                   ) -> tuple[int, str]:
    """Set torch's thread count and return it with the reason. `setting` > 0 is used as given; an
    OMP_NUM_THREADS in the environment is honoured (torchrun sets 1 for each of several processes); otherwise
    `work` (one training step or one network evaluation) is timed with 1 thread and with this process's share of
    the cores (`processes` share them), and the faster is kept."""
    if setting > 0:
        torch.set_num_threads(setting)
        return setting, "train.threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    share = max(1, usable_cores() // max(1, processes))
    if share == 1:
        torch.set_num_threads(1)
        return 1, "one core for this process"
    times = {}
    for n in sorted({1, share}):
        torch.set_num_threads(n)
        work()  # warm-up: allocations, thread pool start
        runs = []
        for _ in range(TRIALS):
            t0 = time.perf_counter()
            work()
            runs.append(time.perf_counter() - t0)
        times[n] = statistics.median(runs)
    best = 1 if times[share] > CLEARLY_FASTER * times[1] else share
    torch.set_num_threads(best)
    measured = ", ".join(f"{1000 * t:.1f} ms with {n}" for n, t in times.items())
    return best, f"one {what} took {measured} thread(s); {share} usable cores for this process"


_FOR_LOADING: tuple[int, str] | None = None


def threads_for_loading(work: Callable[[], object]) -> tuple[int, str]:
    """The thread count of a process that loads runs to sample or evaluate: measured with the first network it
    loads (`work`: one evaluation of it) and kept for the later ones (eval --best and --ema-sweep load many)."""
    global _FOR_LOADING
    if _FOR_LOADING is None or os.environ.get("OMP_NUM_THREADS"):
        _FOR_LOADING = choose_threads(0, work, what="network evaluation")
    else:
        torch.set_num_threads(_FOR_LOADING[0])
    return _FOR_LOADING


REDUCED_PRECISION_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where the OS does not say)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def slow_reduced_precision(precision: str) -> bool:
    """Whether `precision` (bf16, fp16) lacks the CPU instructions that make it fast: without them torch has no
    fast kernels and a step runs many times slower than fp32 (BENCHMARKS.md, scale: precision). False where the
    flags cannot be read."""
    wanted = REDUCED_PRECISION_FLAGS.get(precision)
    flags = cpu_flags()
    return bool(wanted) and bool(flags) and not flags & set(wanted)
