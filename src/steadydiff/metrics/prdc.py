"""k-NN precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models") and density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
for Generative Models")."""

from __future__ import annotations

import numpy as np
import torch

from ._arrays import as_feature_pair, check_positive_int, mask_self, sq_distance_blocks


def _kth_neighbour_sq(a: np.ndarray, k: int, chunk: int) -> torch.Tensor:
    """Squared distance from each item to its k-th nearest other item: the radius² of its k-NN ball.

    The item itself is excluded by index, so an exact duplicate counts as a neighbour at distance 0
    (the same as the reference code, which takes the (k+1)-th smallest distance including the self-zero).
    """
    radius_sq = torch.empty(len(a), dtype=torch.float64)
    for start, d2 in sq_distance_blocks(a, a, chunk=chunk):
        mask_self(d2, start, float("inf"))
        radius_sq[start:start + len(d2)] = torch.kthvalue(d2, k, dim=1).values
    return radius_sq


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, *, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` (M, ...) against `real` (N, ...), items flattened.

    Each item's k-NN ball is the closed ball around it reaching its k-th nearest neighbour in its own set;
    the union of a set's balls estimates that set's support (its "manifold").

    precision = 1/M Σ_j 1[f_j lies in some real ball]        (Kynkäänniemi et al. 2019, Eqs. 1–2)
    recall    = 1/N Σ_i 1[r_i lies in some fake ball]        (ibid., the same with the roles swapped)
    density   = 1/(kM) Σ_j Σ_i 1[f_j ∈ B(r_i, NND_k(r_i))]   (Naeem et al. 2020)
    coverage  = 1/N Σ_i 1[some f_j ∈ B(r_i, NND_k(r_i))]     (Naeem et al. 2020)

    Density counts how many real balls hold each fake, so it is not capped at 1 and is robust to real
    outliers; its expectation is 1 when fake and real are independent draws of one distribution, for
    which coverage has expectation 1 − Π_{i=1..k} (N−i)/(M+N−i) (Naeem et al. 2020, Lemmas 1–2), e.g.
    ≈ 1 − 2⁻ᵏ for M = N. A fake set that is a copy of the real set scores density (k+1)/k (each ball holds
    its own centre and k neighbours). Balls are closed (≤, as in Kynkäänniemi et al. Eq. 1), so discrete
    data with duplicates is scored sensibly.

    Distances are computed `chunk` rows at a time: memory is O(chunk · max(N, M)), never N × M.
    """
    k = check_positive_int(k, "k")
    chunk = check_positive_int(chunk, "chunk")
    r, f = as_feature_pair(real, fake, ("real", "fake"), min_items=k + 1,
                           why=f" (k + 1 for k = {k}: an item's k nearest neighbours exclude itself)")
    real_radius_sq = _kth_neighbour_sq(r, k, chunk)
    fake_radius_sq = _kth_neighbour_sq(f, k, chunk)

    fake_in_real_support = torch.zeros(len(f), dtype=torch.bool)
    real_in_fake_support = torch.zeros(len(r), dtype=torch.bool)
    real_ball_covered = torch.zeros(len(r), dtype=torch.bool)
    fakes_in_real_balls = 0  # Σ_i Σ_j 1[f_j ∈ B(r_i)]
    for start, d2 in sq_distance_blocks(r, f, chunk=chunk):
        rows = slice(start, start + len(d2))
        inside_real_ball = d2 <= real_radius_sq[rows, None]  # [i, j]: fake j lies in real i's ball
        fake_in_real_support |= inside_real_ball.any(0)
        real_ball_covered[rows] = inside_real_ball.any(1)
        fakes_in_real_balls += int(inside_real_ball.sum())
        real_in_fake_support[rows] = (d2 <= fake_radius_sq[None, :]).any(1)  # real i lies in some fake ball
    return {
        "precision": float(fake_in_real_support.double().mean()),
        "recall": float(real_in_fake_support.double().mean()),
        "density": fakes_in_real_balls / (k * len(f)),
        "coverage": float(real_ball_covered.double().mean()),
    }
