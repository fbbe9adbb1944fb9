"""Mode coverage and high-quality fraction for data whose modes are known (built-in 2-D mixtures)."""

from __future__ import annotations

import numpy as np


def mode_stats(samples: np.ndarray, modes: np.ndarray, std: float, *, k_std: float = 3.0,
               min_share: float = 0.0) -> dict[str, float]:
    """Assign each sample to its nearest mode centre.

    high_quality: share of samples within k_std·std of their nearest centre (Srivastava et al. 2017's
    "high-quality samples" for mixtures of Gaussians). modes_covered: number of modes that receive at
    least one high-quality sample (and at least `min_share` of all samples).
    """
    d = np.sqrt(((samples[:, None, :] - modes[None, :, :]) ** 2).sum(-1))
    nearest = d.argmin(1)
    good = d[np.arange(len(samples)), nearest] <= k_std * std
    counts = np.bincount(nearest[good], minlength=len(modes))
    covered = (counts > 0) & (counts >= min_share * len(samples))
    return {
        "modes_covered": int(covered.sum()),
        "modes_total": int(len(modes)),
        "high_quality": float(good.mean()),
        "smallest_mode_share": float(counts.min() / max(len(samples), 1)),
    }
