"""Configuration of the σ-space diffusion core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError


@dataclass
class DiffusionConfig:
    """Parameterisation, training-noise distribution and loss weighting (see DESIGN.md).

    σ values are in the normalised data's units. `sigma_data` None means: measured on the normalised
    training data when the run starts, then written into the run's config.
    """

    parameterization: Literal["edm", "eps", "x0", "v"] = "edm"
    sigma_data: float | None = None
    noise: Literal["lognormal", "vp-linear", "vp-cosine"] = "lognormal"
    p_mean: float = -1.2  # log-normal σ (EDM): ln(σ / (2 σ_data)) ~ N(p_mean, p_std²)
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

    def sigma_range(self, sigma_data: float) -> tuple[float, float]:
        """Sampling σ range in data units: EDM's [0.002, 80] was set for σ_data = 0.5, so scale by 2σ_data."""
        return self.sigma_min * 2 * sigma_data, self.sigma_max * 2 * sigma_data
