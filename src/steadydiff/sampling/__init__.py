"""Sampling: σ step lists, per-seed noise and solvers as pure functions with one signature."""

from __future__ import annotations

from .generate import generate, sample
from .guidance import Guidance, guided, null_like
from .noise import SeededNoise, derive_seed, sample_seeds
from .solvers import SOLVERS, Solver, ancestral, ddim, dpmpp_2m, euler, get_solver, heun, nfe
from .steps import STEP_LISTS, karras_sigmas, resolve_step_list, step_list, vp_uniform_sigmas

__all__ = [
    "SOLVERS",
    "Guidance",
    "STEP_LISTS",
    "SeededNoise",
    "Solver",
    "ancestral",
    "ddim",
    "derive_seed",
    "dpmpp_2m",
    "euler",
    "generate",
    "get_solver",
    "guided",
    "heun",
    "karras_sigmas",
    "nfe",
    "null_like",
    "resolve_step_list",
    "sample",
    "sample_seeds",
    "step_list",
    "vp_uniform_sigmas",
]
