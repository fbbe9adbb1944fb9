"""Configuration of the σ-space diffusion core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

EDM_P_MEAN = -1.2
VECTOR_P_MEAN = -3.0


@dataclass
class DiffusionConfig:
    """Parameterisation, training-noise distribution and loss weighting (see DESIGN.md).

    σ values are in the normalised data's units. `sigma_data` None means: measured on the normalised
    training data when the run starts, then written into the run's config.
    """

    parameterization: Literal["edm", "eps", "x0", "v"] = "edm"
    sigma_data: float | None = None
    noise: Literal["lognormal", "vp-linear", "vp-cosine"] = "lognormal"
    p_mean: float | None = None  # log-normal σ: ln(σ / (2 σ_data)) ~ N(p_mean, p_std²); None: by data kind
    p_std: float = 1.2
    weighting: Literal["edm", "min-snr", "uniform"] = "edm"
    min_snr_gamma: float = 5.0
    sigma_min: float = 0.002  # range of σ for sampling, in units of 2 σ_data (EDM's values at σ_data=0.5)
    sigma_max: float = 80.0

    def check(self) -> None:
        if self.sigma_data is not None and not self.sigma_data > 0:
            raise ConfigError(f"diffusion.sigma_data must be > 0, got {self.sigma_data}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"need 0 < diffusion.sigma_min < diffusion.sigma_max, got "
                              f"{self.sigma_min}, {self.sigma_max}")
        if self.p_std <= 0:
            raise ConfigError(f"diffusion.p_std must be > 0, got {self.p_std}")
        if self.min_snr_gamma <= 0:
            raise ConfigError(f"diffusion.min_snr_gamma must be > 0, got {self.min_snr_gamma}")

    def resolved_p_mean(self, kind: str) -> float:
        """p_mean, or the default for this kind of data when unset.

        EDM's −1.2 (Karras et al. 2022, Table 1) was tuned on images of thousands of pixels. Low-dimensional
        data (2-D mixtures, tables) keeps its fine structure at much smaller σ/σ_data: with −1.2 under 1% of
        training draws fall below σ = 0.018·σ_data, the width of the 25-mode grid's modes, and samples come
        out blurred (87% within 3 std of a mode); with −3.0, 8% do and 95% of samples are sharp
        (BENCHMARKS.md, toy:grid25).
        """
        if self.p_mean is not None:
            return self.p_mean
        return EDM_P_MEAN if kind == "image" else VECTOR_P_MEAN

    def sigma_range(self, sigma_data: float) -> tuple[float, float]:
        """Sampling σ range in data units: EDM's [0.002, 80] was set for σ_data = 0.5, so scale by 2σ_data."""
        return self.sigma_min * 2 * sigma_data, self.sigma_max * 2 * sigma_data
