"""Sampling: σ step lists, per-seed noise and solvers as pure functions with one signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .noise import SeededNoise
from .solvers import SOLVERS, Denoiser, Solver, ancestral, ddim, dpmpp_2m, euler, get_solver, heun, nfe
from .steps import STEP_LISTS, karras_sigmas, step_list, vp_uniform_sigmas

__all__ = [
    "SOLVERS",
    "STEP_LISTS",
    "SeededNoise",
    "Solver",
    "ancestral",
    "ddim",
    "dpmpp_2m",
    "euler",
    "get_solver",
    "heun",
    "karras_sigmas",
    "nfe",
    "sample",
    "step_list",
    "vp_uniform_sigmas",
]


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    sigmas: torch.Tensor,
    sampler: str,
    seeds: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Any = None,
    **solver_kwargs: Any,
) -> torch.Tensor:
    """Draw one sample per seed: x = σ_0 · n with n from the seed, then run the named solver.

    The starting noise and every later noise draw come from the same `SeededNoise(seeds)`, so a sample
    depends on its seed only: sampling in chunks of any size gives the same samples (up to the float
    rounding of the denoiser). `shape[0]` must equal `len(seeds)`; `solver_kwargs` go to the solver
    (e.g. `eta` for "ddim").
    """
    solver = get_solver(sampler)
    noise = SeededNoise(seeds)
    sigmas = torch.as_tensor(sigmas)
    x = float(sigmas[0]) * noise(torch.empty(tuple(shape), device=device, dtype=dtype))
    return solver(denoiser, x, sigmas, noise=noise, callback=callback, **solver_kwargs)
