"""Configuration of the σ-space diffusion core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

EDM_P_MEAN = -1.2
VECTOR_P_MEAN = -3.0
EDM_SIGMA_MIN = 0.002  # Karras et al. (2022), Table 1, for σ_data = 0.5
# EDM's σ_min = 0.002 on [-1, 1] images of 8 bits is 0.255 of their value step 2/255: noise that small no
# longer moves a pixel across a level. Data on a coarser grid keeps that ratio (see resolved_sigma_min).
SIGMA_MIN_PER_STEP = EDM_SIGMA_MIN / (2 / 255)


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
    # Range of σ for sampling, in units of 2 σ_data (EDM's values at σ_data = 0.5). sigma_min None: by the
    # data's value grid (resolved_sigma_min), then written into the run's config.
    sigma_min: float | None = None
    sigma_max: float = 80.0

    def check(self) -> None:
        if self.sigma_data is not None and not self.sigma_data > 0:
            raise ConfigError(f"diffusion.sigma_data must be > 0, got {self.sigma_data}")
        if not 0 < self._sigma_min < self.sigma_max:
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
        out blurred; with −3.0, 8% do (the figures: BENCHMARKS.md, toy:grid25). Series, like images, are
        high-dimensional items of correlated values and take EDM's value.
        """
        if self.p_mean is not None:
            return self.p_mean
        return VECTOR_P_MEAN if kind == "vector" else EDM_P_MEAN

    def resolved_sigma_min(self, value_step: float | None, sigma_data: float) -> float:
        """sigma_min (units of 2 σ_data), or when unset the default for data on a grid of `value_step`.

        `value_step` is the spacing of the values the data takes, in normalised units (None: continuous).
        EDM's 0.002 is a quarter of a level of 8-bit images; data with coarser levels (scikit-learn's
        digits: 17 levels, a step of 0.125 on [-1, 1]) gets σ_min = SIGMA_MIN_PER_STEP × its step instead,
        so few-step solvers do not spend steps on noise far below one level (BENCHMARKS.md, few_step). 8-bit
        images keep EDM's value.
        """
        if self.sigma_min is not None or value_step is None or not value_step > 0:
            return self._sigma_min
        return max(EDM_SIGMA_MIN, round(SIGMA_MIN_PER_STEP * value_step / (2 * sigma_data), 6))

    def sigma_range(self, sigma_data: float) -> tuple[float, float]:
        """Sampling σ range in data units: EDM's [0.002, 80] was set for σ_data = 0.5, so scale by 2σ_data."""
        return self._sigma_min * 2 * sigma_data, self.sigma_max * 2 * sigma_data

    @property
    def _sigma_min(self) -> float:
        """sigma_min as set, or EDM's value while it is unresolved."""
        return EDM_SIGMA_MIN if self.sigma_min is None else self.sigma_min
