"""Solvers of the EDM probability-flow ODE (and its ancestral SDE variants) as pure functions.

Every solver has one signature, `solver(denoiser, x, sigmas, *, noise=None, callback=None) -> x`:

- `denoiser(x, sigma)` returns the x0 estimate D(x; σ), with `sigma` a tensor of shape (N,);
- `x` starts at σ_0 · n, n ~ N(0, I) (the caller draws it);
- `sigmas` is any decreasing step list ending in 0 (see `steps.py`);
- `noise(like)` supplies fresh standard normal noise (e.g. `SeededNoise`); only stochastic solvers
  call it, and None means `torch.randn_like`;
- `callback(info)` is called after each step with `{"i", "x", "sigma", "sigma_next", "denoised"}`.

The ODE is dx/dσ = (x − D(x; σ)) / σ (Karras et al. 2022, Eq. 1 with σ(t) = t, s(t) = 1).
No solver keeps state between calls; multistep history lives in local variables.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Noise = Callable[[torch.Tensor], torch.Tensor]
StepCallback = Callable[[dict[str, Any]], None]


class Solver(Protocol):
    def __call__(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        noise: Noise | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor: ...


def _levels(sigmas: torch.Tensor) -> list[float]:
    """The step list as Python floats: one host transfer here instead of a sync in every step."""
    levels = [float(s) for s in torch.as_tensor(sigmas).detach().reshape(-1).cpu().tolist()]
    if len(levels) < 2 or levels[-1] != 0.0:
        raise ValueError(f"sigmas must hold at least two levels and end in 0, got {levels[:3]}…{levels[-1:]}")
    if any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError("sigmas must be strictly decreasing")
    return levels


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    # One σ per sample, in x's dtype and device; `new_full` fills on the device without a sync.
    return denoiser(x, x.new_full((x.shape[0],), sigma))


def _report(callback: StepCallback | None, i: int, x, sigma: float, sigma_next: float, denoised) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def _euler_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None,
    callback: StepCallback | None,
    eta: float,
) -> torch.Tensor:
    """Euler steps with ancestral noise of strength η: the one loop behind euler, ddim and ancestral.

    The DDPM posterior of x_{σ'} given x_σ and x0 in σ-space has variance σ'²(σ² − σ'²)/σ². DDIM
    (Song et al. 2021, Eq. 12, divided by sqrt(ᾱ) to reach σ-space) keeps η times that standard
    deviation as fresh noise, σ_up, and moves deterministically to σ_down = sqrt(σ'² − σ_up²):

        x' = D + σ_down · (x − D)/σ + σ_up · n      (the same as the Euler step x + (σ_down − σ)·d)

    η = 0 is deterministic DDIM, which is exactly the Euler step of the probability-flow ODE in σ-space
    (Karras et al. 2022, Sec. 3); η = 1 is DDPM-like ancestral sampling. σ_up is capped at σ' so that
    η > 1 stays defined.
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    levels = _levels(sigmas)
    draw = torch.randn_like if noise is None else noise
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        denoised = _denoise(denoiser, x, sigma)
        sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        d = (x - denoised) / sigma  # dx/dσ, Karras et al. (2022) Eq. 3 with the score (D − x)/σ²
        x = x + (sigma_down - sigma) * d
        if sigma_up > 0.0:
            x = x + sigma_up * draw(x)
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Karras et al. (2022), Algorithm 1 with plain Euler steps (no Heun correction, no churn)."""
    return _euler_ancestral(denoiser, x, sigmas, noise=noise, callback=callback, eta=0.0)


def ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None = None,
    callback: StepCallback | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) in σ-space; with eta = 0 it is exactly `euler`, with eta = 1 `ancestral`."""
    return _euler_ancestral(denoiser, x, sigmas, noise=noise, callback=callback, eta=eta)


def ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None = None,
    callback: StepCallback | None = None,
    eta: float = 1.0,
) -> torch.Tensor:
    """Euler-ancestral sampling (DDPM-like): DDIM with eta = 1, fresh noise at every step but the last."""
    return _euler_ancestral(denoiser, x, sigmas, noise=noise, callback=callback, eta=eta)


def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Karras et al. (2022), Algorithm 1 (deterministic, S_churn = 0): Heun's 2nd-order method.

    Each step takes an Euler predictor and corrects it with the slope at the predicted point; the last
    step, to σ = 0, stays a plain Euler step because the slope (x − D)/σ is undefined there. n steps
    therefore cost 2n − 1 denoiser evaluations.
    """
    del noise  # deterministic: no fresh noise is drawn
    levels = _levels(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        denoised = _denoise(denoiser, x, sigma)
        d = (x - denoised) / sigma
        x_euler = x + (sigma_next - sigma) * d  # Algorithm 1, line 5
        if sigma_next > 0.0:
            # Algorithm 1, lines 7-8: trapezoidal rule with the slope at the Euler prediction.
            d_next = (x_euler - _denoise(denoiser, x_euler, sigma_next)) / sigma_next
            x = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        else:
            x = x_euler
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


def dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: Noise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep, data prediction, in λ = −log σ.

    With α = 1 (σ-space), the exact solution of the ODE over a step of size h = λ' − λ is
    x' = (σ'/σ)·x + σ' ∫ e^λ D dλ. Taking D constant gives the first-order update
    x' = (σ'/σ)·x − (e^{−h} − 1)·D; the 2M variant replaces D by the linear extrapolation
    D̂ = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, r = h_{i−1}/h_i, from the previous denoised value.
    The first step (no history) and the last step (to σ = 0, where h is infinite) are first-order.
    """
    del noise  # deterministic: no fresh noise is drawn
    levels = _levels(sigmas)
    denoised_prev: torch.Tensor | None = None
    h_prev = 0.0
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        denoised = _denoise(denoiser, x, sigma)
        if sigma_next == 0.0:
            # h = ∞: (σ'/σ)·x → 0 and −expm1(−h) → 1, so the update lands on D itself.
            x = denoised
            h = math.inf
        else:
            h = math.log(sigma / sigma_next)
            target = denoised
            if denoised_prev is not None:
                r = h_prev / h
                target = (1.0 + 1.0 / (2.0 * r)) * denoised - (1.0 / (2.0 * r)) * denoised_prev
            x = (sigma_next / sigma) * x - math.expm1(-h) * target
        _report(callback, i, x, sigma, sigma_next, denoised)
        denoised_prev, h_prev = denoised, h
    return x


SOLVERS: dict[str, Solver] = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ancestral": ancestral,
    "dpmpp-2m": dpmpp_2m,
}


def get_solver(name: str) -> Solver:
    """The solver called `name` (a key of SOLVERS); an unknown name raises ValueError with a suggestion."""
    try:
        return SOLVERS[name]
    except KeyError:
        choices = ", ".join(repr(k) for k in SOLVERS)
        close = difflib.get_close_matches(str(name), list(SOLVERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown sampler {name!r}{hint}; choose one of {choices}") from None


def nfe(name: str, steps: int) -> int:
    """Denoiser evaluations for `steps` solver steps: Heun 2·steps − 1 (no correction at σ = 0), else steps.

    Raises ValueError for an unknown solver name or steps < 1.
    """
    get_solver(name)  # raise on an unknown name
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    return 2 * steps - 1 if name == "heun" else steps
