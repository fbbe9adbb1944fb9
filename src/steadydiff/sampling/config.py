"""Configuration of sampling: which solver, how many steps, which step list."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

SamplerName = Literal["euler", "heun", "ddim", "ancestral", "dpmpp-2m"]
ScheduleName = Literal["karras", "vp-uniform", "vp-linear", "vp-cosine"]
EnsembleMode = Literal["mixture", "mean"]


@dataclass
class SampleConfig:
    """Defaults for `Model.sample`, `steadydiff sample` and the grids written during training."""

    sampler: SamplerName = "heun"
    steps: int = 18  # solver steps; Heun uses 2·steps − 1 network evaluations
    schedule: ScheduleName = "karras"
    # Karras et al. (2022), Eq. 5, with their ρ = 7: chosen again over 10 on a validation split of digits
    # (BENCHMARKS.md, defaults).
    rho: float = 7.0
    grid_n: int = 64  # samples in each grid written during training
    grid_seed: int = 0
    # Classifier-free guidance of a conditional run (sampling/guidance.py): 1 is plain conditional sampling, 0
    # unconditional; limited to σ in `guidance_interval` (data units; Kynkäänniemi et al. 2024; [0, inf]: every σ).
    # The default is the weakest setting that kept the classifier's agreement with the requested class ≥ 99 % at
    # 35 and 10 NFE on a validation split of digits, with the lowest FD among those (BENCHMARKS.md, defaults).
    guidance: float = 1.25
    guidance_interval: tuple[float, float] = (0.0, math.inf)
    # How an ensemble (train.ensemble > 1) samples (sampling/ensemble.py): mixture: each sample from one member,
    # chosen by its seed (the cost of one model); mean: the members' denoisers averaged at every network evaluation
    # (K times the cost). A single run ignores it.
    ensemble: EnsembleMode = "mixture"

    def check(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"sample.steps must be ≥ 1, got {self.steps}")
        if self.grid_n < 1:
            raise ConfigError(f"sample.grid_n must be ≥ 1, got {self.grid_n}")
        if not math.isfinite(self.guidance):
            raise ConfigError(f"sample.guidance must be a finite number, got {self.guidance}")
        lo, hi = self.guidance_interval
        if not 0 <= lo <= hi:
            raise ConfigError(f"sample.guidance_interval must be [low, high] with 0 ≤ low ≤ high, got "
                              f"{list(self.guidance_interval)}")
