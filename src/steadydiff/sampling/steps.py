"""Step lists: the decreasing noise levels σ_0 > σ_1 > … > σ_{n−1} > σ_n = 0 a solver walks through.

Step lists are kept apart from solvers (any list works with any solver). Each function returns a
float32 1-D tensor of length n + 1, strictly decreasing, whose last entry is exactly 0. The levels are
computed in float64 and rounded once at the end.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..diffusion.schedules import vp_sigma, vp_t


class StepList(Protocol):
    """The common signature of every entry of `STEP_LISTS`."""

    def __call__(self, n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor: ...


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be an integer ≥ 1, got {n!r}")
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _finish(sigmas: torch.Tensor) -> torch.Tensor:
    """Append σ_n = 0, round to float32 and check the list is strictly decreasing."""
    out = torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)
    if not bool((out[1:] < out[:-1]).all()):
        # Only reachable when σ_min and σ_max are so close that float32 merges neighbouring levels.
        raise ValueError("step list is not strictly decreasing in float32; use fewer steps or a wider range")
    return out


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022), Eq. 5: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ.

    ρ > 1 spends more steps at low noise, where the trajectory curves most; ρ = 7 is the paper's choice.
    With n = 1 the list is [σ_max, 0].
    """
    _check(n, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    # Pin the endpoints exactly: the power round trip can be off by one ulp.
    sigmas[0] = sigma_max
    if n > 1:
        sigmas[-1] = sigma_min
    return _finish(sigmas)


def vp_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, schedule: str = "linear") -> torch.Tensor:
    """Uniform steps in the VP time t (as DDPM/DDIM samplers take them), expressed in σ.

    t runs uniformly from t(σ_max) to t(σ_min) and each t is mapped through σ(t) of the VP schedule
    ("linear" or "cosine", see `diffusion.schedules`). The clamp removes the round-off of the t ↔ σ
    round trip at the two ends.
    """
    _check(n, sigma_min, sigma_max)
    t_hi = vp_t(torch.tensor(sigma_max, dtype=torch.float64), schedule)
    t_lo = vp_t(torch.tensor(sigma_min, dtype=torch.float64), schedule)
    t = torch.linspace(float(t_hi), float(t_lo), n, dtype=torch.float64) if n > 1 else t_hi.reshape(1)
    sigmas = vp_sigma(t, schedule).clamp(min=sigma_min, max=sigma_max)
    return _finish(sigmas)


def _vp_linear_entry(n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor:
    # ρ has no meaning for VP-uniform steps; the parameter is accepted to keep the common signature.
    del rho
    return vp_uniform_sigmas(n, sigma_min, sigma_max, "linear")


def _vp_cosine_entry(n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor:
    del rho
    return vp_uniform_sigmas(n, sigma_min, sigma_max, "cosine")


def _karras_entry(n: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor:
    return karras_sigmas(n, sigma_min, sigma_max, rho)


STEP_LISTS: dict[str, StepList] = {
    "karras": _karras_entry,
    "vp-uniform": _vp_linear_entry,  # called directly: the linear schedule; a run resolves it (resolve_step_list)
    "vp-linear": _vp_linear_entry,
    "vp-cosine": _vp_cosine_entry,
}


def resolve_step_list(name: str, training_noise: str) -> str:
    """'vp-uniform' asks for uniform steps in the VP time of the schedule the model was trained with: 'vp-cosine'
    after vp-cosine training noise, else 'vp-linear' (DDPM's); every other name is itself."""
    if name != "vp-uniform":
        return name
    return "vp-cosine" if training_noise == "vp-cosine" else "vp-linear"


def step_list(name: str, n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The step list called `name` (a key of STEP_LISTS); an unknown name raises ValueError."""
    try:
        fn = STEP_LISTS[name]
    except KeyError:
        choices = ", ".join(repr(k) for k in STEP_LISTS)
        raise ValueError(f"unknown step list {name!r}; choose one of {choices}") from None
    return fn(n, sigma_min, sigma_max, rho=rho)
