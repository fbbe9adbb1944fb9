"""`generate`: n samples from per-sample seeds, the one way the API, the CLI and the training loop draw them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import SampleConfig
from .guidance import Guidance, guided, guided_by_extra
from .impute import resampled, with_extra, with_known
from .noise import SeededNoise, sample_seeds
from .solvers import Denoiser, get_solver
from .steps import resolve_step_list, step_list


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    sigmas: torch.Tensor,
    sampler: str | Callable[..., torch.Tensor],
    seeds: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Any = None,
    init: torch.Tensor | None = None,
    **solver_kwargs: Any,
) -> torch.Tensor:
    """Draw one sample per seed: x = σ_0 · n with n from the seed, then run the named solver.

    The starting noise and every later noise draw come from the same `SeededNoise(seeds)`, so a sample
    depends on its seed only: sampling in chunks of any size gives the same samples (up to the float
    rounding of the denoiser). `shape[0]` must equal `len(seeds)`; `solver_kwargs` go to the solver
    (e.g. `eta` for "ddim").
    """
    solver = sampler if callable(sampler) else get_solver(sampler)
    noise = SeededNoise(seeds)
    sigmas = torch.as_tensor(sigmas)
    x = float(sigmas[0]) * noise(torch.empty(tuple(shape), device=device, dtype=dtype))
    if init is not None:  # SDEdit: start from given data noised to σ_0 rather than from pure noise
        x = init.to(device=device, dtype=dtype) + x
    return solver(denoiser, x, sigmas, noise=noise, callback=callback, **solver_kwargs)


@torch.no_grad()
def generate(denoiser: torch.nn.Module, item_shape: tuple[int, ...], n: int, *, seed: int, settings: SampleConfig,
             sigma_range: tuple[float, float], training_noise: str = "lognormal", steps: int | None = None,
             sampler: str | None = None,
             schedule: str | None = None, batch_size: int = 500, device: torch.device | str = "cpu",
             callback: Callable[[dict[str, Any]], None] | None = None, cond: torch.Tensor | None = None,
             guidance: float | None = None, guide: torch.nn.Module | None = None,
             known: torch.Tensor | None = None, resample: int = 1, seeds: Sequence[int] | None = None,
             init: torch.Tensor | None = None, strength: float = 1.0, masked: bool = False,
             extra: torch.Tensor | None = None, known_guidance: float = 1.0) -> torch.Tensor:
    """n samples in normalised units, deterministic per (seed, index) whatever the batch size.

    `settings` holds the run's sampler, steps, step list, ρ and guidance (each overridable here); `sigma_range` is
    the run's sampling σ range in data units (DiffusionConfig.sigma_range); `training_noise`
    (DiffusionConfig.noise) decides which VP schedule 'vp-uniform' steps follow. A conditional denoiser takes
    `cond`, one condition per sample as the network reads it (class ids, or normalised vectors), guided by
    `guidance` (the weight w of sampling/guidance.py) against its own unconditional branch, or against `guide`
    (autoguidance). `known` (normalised, NaN where unknown) makes the samples completions of those values
    (sampling/impute.py), with RePaint's `resample` > 1 — or, with `masked`, given to a mask-conditioned network
    (train.masks) as its extra inputs, which fills them in on its own, guided by them with weight `known_guidance`
    (guidance.guided_by_extra; 1: plain); `seeds` replaces the per-sample seeds drawn
    from `seed`.
    `init` (normalised data) with `strength` s in (0, 1] is SDEdit (Meng et al. 2022): the last ⌈s·steps⌉ steps of
    the step list, starting from `init` + σ·n at the σ where they begin. `extra` (one row per sample) are the
    extra inputs of a network built with them (train.lowres: the low-resolution images, upsampled).
    """
    sigma_min, sigma_max = sigma_range
    name = resolve_step_list(schedule or settings.schedule, training_noise)
    sigmas = step_list(name, steps or settings.steps, sigma_min, sigma_max, rho=settings.rho).to(device)
    if init is not None:
        if not 0 < strength <= 1:
            raise ValueError(f"strength must lie in (0, 1], got {strength}")
        k = max(1, math.ceil(strength * (len(sigmas) - 1)))
        sigmas = sigmas[-(k + 1):]
    seeds = sample_seeds(seed, n) if seeds is None else list(seeds)
    if len(seeds) != n or (known is not None and len(known) != n):
        raise ValueError(f"{len(seeds)} seeds and {None if known is None else len(known)} known rows for {n} samples")
    if cond is not None and len(cond) != n:
        raise ValueError(f"{len(cond)} conditions for {n} samples")
    rule = Guidance(settings.guidance if guidance is None else guidance, tuple(settings.guidance_interval))
    was_training = denoiser.training
    denoiser.eval()
    out = []
    for s in range(0, n, batch_size):
        chunk = seeds[s:s + batch_size]
        base = denoiser if extra is None else with_extra(denoiser, extra[s:s + batch_size].to(device))
        if known is not None and masked:
            part = known[s:s + batch_size].to(device)
            m = (~torch.isnan(part)).to(part.dtype)
            base = guided_by_extra(denoiser, torch.cat([torch.nan_to_num(part) * m, m], dim=1), known_guidance)
        d = base if cond is None else guided(base, cond[s:s + batch_size].to(device), rule, guide)
        solver = sampler or settings.sampler
        if known is not None:
            # The known values replace the model's estimate of them at every step: the path's known entries then
            # stay at known value + σ·noise, as the noisy input of training had them (a mask-conditioned network
            # reads them there beside the extra channels). Without a mask-conditioned network this is the whole
            # conditioning, with RePaint's resampling.
            part = known[s:s + batch_size].to(device)
            d = with_known(d, torch.nan_to_num(part), ~torch.isnan(part))
            if not masked:
                solver = resampled(resample) if resample > 1 else solver
        out.append(sample(d, (len(chunk), *item_shape), sigmas, solver, chunk, device=device, callback=callback,
                          init=None if init is None else init[s:s + batch_size]).cpu())
    denoiser.train(was_training)
    return torch.cat(out)
