"""Post-hoc EMA with power-function profiles (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models", Sec. 3.1–3.2 and Appendix C): pure maths plus a tiny class.

A power-function EMA at time t averages the parameters θ(τ), 0 ≤ τ ≤ t, with the profile

    p(τ) = (γ + 1) τ^γ / t^(γ+1)                                    (Eq. 2)

whose width relative to t is σ_rel = sqrt(γ + 1) / ((γ + 2) sqrt(γ + 3))   (Eq. 3). Unlike a classic EMA
it has no fixed half-life: it always covers the same share of training, whatever its length.

During training `PowerEMA` tracks a few profiles (default σ_rel = 0.05 and 0.10, i.e. γ ≈ 16.97 and 6.94)
and `snapshot()` saves them now and then. Afterwards, `reconstruct(snapshots, target_std)` builds the
average for any other σ_rel as the least-squares combination of the saved profiles that best matches
the target profile (Appendix C.2), so the EMA length can be chosen after training.

Time `t` may be counted in optimiser steps or in samples seen: profiles are scale-free, so only the
ratios of times matter; it must only increase and use one unit throughout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path

# σ_rel(γ) peaks at γ* = (√5 − 3)/2 ≈ −0.382 (where d log σ_rel²/dγ = 0, i.e. γ² + 3γ + 1 = 0); wider
# profiles do not exist. std_to_exp returns the branch γ ≥ γ*, where σ_rel falls as γ grows.
GAMMA_PEAK = (math.sqrt(5.0) - 3.0) / 2.0


def exp_to_std(gamma: float) -> float:
    """σ_rel of the power profile with exponent γ > −1 (Eq. 3): its std relative to its length t."""
    g = float(gamma)
    if not g > -1:
        raise ValueError(f"the power-function exponent must be > -1, got {gamma}")
    return math.sqrt(g + 1) / ((g + 2) * math.sqrt(g + 3))


STD_MAX = exp_to_std(GAMMA_PEAK)  # ≈ 0.3003: the widest power profile


def std_to_exp(sigma_rel: float) -> float:
    """The exponent γ whose profile has relative std σ_rel (inverse of Eq. 3), 0 < σ_rel ≤ ~0.3003.

    Squaring Eq. 3 and clearing denominators gives the cubic γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0;
    its largest real root is the decreasing branch (γ ≥ γ*).
    """
    s = float(sigma_rel)
    if not 0 < s <= STD_MAX * (1 + 1e-12):
        raise ValueError(f"sigma_rel must be in (0, {STD_MAX:.4f}] (the widest power-function profile), got "
                         f"{sigma_rel}")
    k = 1.0 / (s * s)
    roots = np.roots([1.0, 7.0, 16.0 - k, 12.0 - k])
    g = float(max(r.real for r in roots if abs(r.imag) <= 1e-6 * (1 + abs(r.real))))
    return max(g, GAMMA_PEAK)  # the two roots merge at the peak; rounding may put them a hair below


def power_beta(step: float, gamma: float, delta: float = 1.0) -> float:
    """Per-update decay β = (1 − δ/t)^(γ+1) for an update at time t = `step`, δ after the previous one.

    With δ = 1 this is Eq. 4's β_γ(t) = (1 − 1/t)^(γ+1). The recursion θ̂ ← β θ̂ + (1 − β) θ telescopes:
    the parameters held over (t_prev, t] get weight (t^(γ+1) − t_prev^(γ+1)) / T^(γ+1) at a later time T,
    exactly the power profile of Eq. 2 integrated over that interval. The first update (δ = t) gives β = 0.
    """
    t, d = float(step), float(delta)
    if not 0 < d <= t:
        raise ValueError(f"power_beta needs 0 < delta ≤ step, got step={step}, delta={delta}")
    return (1.0 - d / t) ** (float(gamma) + 1.0)


def power_dot(t_a: Any, gamma_a: Any, t_b: Any, gamma_b: Any) -> np.ndarray:
    """Inner product ∫ p_a(τ) p_b(τ) dτ of two power profiles ending at t_a and t_b (broadcasting).

    Closed form (Appendix C.2): (γa+1)(γb+1) m^(γa+γb+1) / ((γa+γb+1) t_a^(γa+1) t_b^(γb+1)),
    m = min(t_a, t_b); evaluated through logarithms, so large γ and t cannot overflow.
    """
    ta, ga, tb, gb = (np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    if (ta <= 0).any() or (tb <= 0).any():
        raise ValueError("profile end times must be > 0")
    s = ga + gb + 1.0
    log = (np.log1p(ga) + np.log1p(gb) + s * np.log(np.minimum(ta, tb)) - np.log(s)
           - (ga + 1.0) * np.log(ta) - (gb + 1.0) * np.log(tb))
    return np.exp(log)


def solve_weights(
    snapshot_steps: Sequence[float] | np.ndarray,
    snapshot_gammas: Sequence[float] | np.ndarray,
    *,
    target_gamma: float | None = None,
    target_std: float | None = None,
    last_step: float | None = None,
) -> np.ndarray:
    """Coefficients x (one per snapshot profile) with Σ x_i p_i closest to the target profile (App. C.2).

    Snapshot i is a power profile with exponent `snapshot_gammas[i]` ending at `snapshot_steps[i]`; the
    target has exponent `target_gamma` (or σ_rel `target_std`, exactly one of the two) and ends at
    `last_step` (default: the latest snapshot). Minimising ‖Σ x_i p_i − p_r‖² over L² gives the normal
    equations A x = b with A_ij = ⟨p_i, p_j⟩ and b_i = ⟨p_i, p_r⟩ in closed form (`power_dot`). x is then
    scaled to sum to 1 (every profile integrates to 1, so the unscaled sum is already ≈ 1) so that a
    constant trajectory comes back unchanged.
    """
    steps = np.asarray(snapshot_steps, dtype=np.float64).ravel()
    gammas = np.asarray(snapshot_gammas, dtype=np.float64).ravel()
    if steps.size == 0 or steps.shape != gammas.shape:
        raise ValueError(f"need one gamma per snapshot step and at least one snapshot, got {steps.size} steps "
                         f"and {gammas.size} gammas")
    if (target_gamma is None) == (target_std is None):
        raise ValueError("give exactly one of target_gamma and target_std")
    g_r = std_to_exp(target_std) if target_std is not None else float(target_gamma)
    if not g_r > -1 or not (gammas > -1).all():
        raise ValueError("power-function exponents must be > -1")
    t_r = float(steps.max() if last_step is None else last_step)
    a = power_dot(steps[:, None], gammas[:, None], steps[None, :], gammas[None, :])
    b = power_dot(steps, gammas, t_r, g_r)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)  # least squares copes with near-duplicate profiles
    return x / x.sum()


# --------------------------------------------------------------------------------------------------
# Tracking during training.


def _flatten(profiles: Sequence[Mapping[str, torch.Tensor]], buffers: Mapping[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
    out = {f"profile{i}/{k}": v for i, params in enumerate(profiles) for k, v in params.items()}
    out.update({f"buffers/{k}": v for k, v in buffers.items()})
    return out


def _check_keys(state: Mapping[str, torch.Tensor], want: set[str], what: str) -> None:
    missing, extra = want - set(state), set(state) - want
    if missing or extra:
        raise KeyError(f"{what} does not match: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")


@dataclass(frozen=True)
class Snapshot:
    """All tracked profiles at one time `step`, for `reconstruct`; CPU tensors of the dtype asked for."""

    step: float
    stds: tuple[float, ...]
    gammas: tuple[float, ...]
    profiles: tuple[dict[str, torch.Tensor], ...]  # one parameter dict per profile
    buffers: dict[str, torch.Tensor]  # copied (never averaged) persistent buffers

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensors for safetensors ("profile{i}/{name}", "buffers/{name}")."""
        return _flatten(self.profiles, self.buffers)

    def metadata(self) -> dict[str, Any]:
        """JSON-safe rest: step, stds and gammas."""
        return {"step": self.step, "stds": list(self.stds), "gammas": list(self.gammas)}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> Snapshot:
        stds = tuple(float(s) for s in metadata["stds"])
        profiles: tuple[dict[str, torch.Tensor], ...] = tuple({} for _ in stds)
        buffers: dict[str, torch.Tensor] = {}
        for key, v in tensors.items():
            head, _, name = key.partition("/")
            if head == "buffers":
                buffers[name] = v
            elif head.startswith("profile") and head[7:].isdigit() and int(head[7:]) < len(stds):
                profiles[int(head[7:])][name] = v
            else:
                raise KeyError(f"unexpected snapshot tensor {key!r}")
        return cls(step=metadata["step"], stds=stds, gammas=tuple(float(g) for g in metadata["gammas"]),
                   profiles=profiles, buffers=buffers)


class PowerEMA:
    """Power-function EMAs of a model's parameters, one per σ_rel profile (EDM2's phema.py idea).

    The averages are kept in at least float32 (float64 parameters stay float64) on the parameters'
    device; persistent buffers are copied, never averaged.
    """

    def __init__(self, model: nn.Module, stds: Sequence[float] = (0.05, 0.10)):
        self.stds = tuple(float(s) for s in stds)
        if not self.stds or len(set(self.stds)) != len(self.stds):
            raise ValueError(f"PowerEMA needs one or more distinct stds, got {list(stds)}")
        self.gammas = tuple(std_to_exp(s) for s in self.stds)
        self.step: float = 0  # time of the last update (0: none yet)
        self.profiles = [
            {k: p.detach().to(torch.promote_types(p.dtype, torch.float32), copy=True)
             for k, p in model.named_parameters()}
            for _ in self.stds
        ]
        persistent = set(model.state_dict())
        self.buffers = {k: b.detach().clone() for k, b in model.named_buffers() if k in persistent}

    @torch.no_grad()
    def update(self, model: nn.Module, step: float) -> None:
        """Fold in the model's parameters at time `step` (> the previous update; see power_beta)."""
        if not step > self.step:
            raise ValueError(f"PowerEMA.update needs increasing times: got step {step} after {self.step}")
        names, current = zip(*model.named_parameters(), strict=True)
        for gamma, params in zip(self.gammas, self.profiles, strict=True):
            weight = 1.0 - power_beta(step, gamma, step - self.step)
            torch._foreach_lerp_([params[k] for k in names],
                                 [p.detach().to(params[k].dtype) for k, p in zip(names, current, strict=True)], weight)
        for k, b in model.named_buffers():
            if k in self.buffers:
                self.buffers[k].copy_(b)
        self.step = step

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only ("profile{i}/{name}", "buffers/{name}"); `metadata()` holds the rest."""
        return _flatten(self.profiles, self.buffers)

    def metadata(self) -> dict[str, Any]:
        """JSON-safe: the stds, their gammas and the time of the last update."""
        return {"stds": list(self.stds), "gammas": list(self.gammas), "step": self.step}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
        stds = [float(s) for s in metadata["stds"]]
        if len(stds) != len(self.stds) or not np.allclose(stds, self.stds, rtol=1e-12, atol=0):
            raise ValueError(f"saved PowerEMA tracks stds {stds}, this one {list(self.stds)}")
        mine = self.state_dict()
        _check_keys(state, set(mine), "PowerEMA state")
        for k, v in mine.items():
            v.copy_(state[k])
        self.step = metadata["step"]

    @torch.no_grad()
    def snapshot(self, dtype: torch.dtype = torch.float32) -> Snapshot:
        """A CPU copy of every profile, tagged with the current step.

        float32 (the default) keeps reconstructions accurate to float32 rounding; float16 halves the size,
        as EDM2 stores them, at a relative error of about 1e-3 in the reconstruction.
        """
        if self.step <= 0:
            raise ValueError("PowerEMA.snapshot before the first update: nothing has been averaged yet")
        profiles = tuple({k: v.to(device="cpu", dtype=dtype, copy=True) for k, v in params.items()}
                         for params in self.profiles)
        buffers = {k: b.to(device="cpu", copy=True) for k, b in self.buffers.items()}
        return Snapshot(step=self.step, stds=self.stds, gammas=self.gammas, profiles=profiles, buffers=buffers)


def snapshot_path(folder: Path, step: float) -> Path:
    """RUN/phema/snapshot-{time:010d}.safetensors: sorted by name is sorted by time."""
    return folder / f"snapshot-{int(step):010d}.safetensors"


def write_snapshot(folder: Path, snap: Snapshot) -> Path:
    """One snapshot as safetensors, its metadata in the file's header; written to a temporary name, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(folder, snap.step)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in snap.tensors().items()}, str(tmp),
                  metadata={"phema": json.dumps(snap.metadata())})
    return path


def read_snapshots(folder: Path) -> list[Snapshot]:
    """Every snapshot in a run's phema folder, oldest first."""
    snaps = []
    for path in sorted(folder.glob("snapshot-*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["phema"])
            snaps.append(Snapshot.from_tensors({k: f.get_tensor(k) for k in f.keys()}, meta))  # noqa: SIM118
    return snaps


@torch.no_grad()
def reconstruct(
    snapshots: Sequence[Snapshot], target_std: float, *, last_step: float | None = None
) -> dict[str, torch.Tensor]:
    """The σ_rel = `target_std` average at `last_step` (default: the latest snapshot) from snapshots.

    Returns float32 parameters (summed in float64) plus the latest snapshot's buffers: a dict that loads
    into the model with `model.load_state_dict`.
    """
    if not snapshots:
        raise ValueError("reconstruct needs at least one snapshot")
    steps = [s.step for s in snapshots for _ in s.gammas]
    gammas = [g for s in snapshots for g in s.gammas]
    x = solve_weights(steps, gammas, target_std=target_std, last_step=last_step)
    keys = set(snapshots[0].profiles[0])
    out: dict[str, torch.Tensor] = {}
    coeffs = iter(x.tolist())
    for snap in snapshots:
        for params in snap.profiles:
            _check_keys(params, keys, f"snapshot at step {snap.step}")
            c = next(coeffs)
            for k, v in params.items():
                term = v.to(torch.float64) * c
                out[k] = term if k not in out else out[k].add_(term)
    latest = max(snapshots, key=lambda s: s.step)
    result = {k: v.to(torch.float32) for k, v in out.items()}
    result.update({k: v.clone() for k, v in latest.buffers.items()})
    return result
