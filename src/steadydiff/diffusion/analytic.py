"""An exact denoiser: E[x0 | x_σ] for an isotropic Gaussian mixture, used to test samplers.

Data x0 ~ Σ_k w_k N(μ_k, s² I) and x_σ = x0 + σ n give x_σ ~ Σ_k w_k N(μ_k, (s² + σ²) I). Then

    r_k(x)          = w_k N(x; μ_k, v I) / Σ_j w_j N(x; μ_j, v I),    v = s² + σ²
    E[x0 | x, k]    = μ_k + (s²/v)(x − μ_k)                           (Gaussian conditioning)
    D(x; σ)         = Σ_k r_k E[x0 | x, k] = (s² x + σ² Σ_k r_k μ_k) / v

Because every component shares the variance v, the normalising constants cancel in r_k and
|x − μ_k|² = |x|² − 2 x·μ_k + |μ_k|² loses its |x|² term: the logits log w_k + (x·μ_k − |μ_k|²/2)/v
go through a log-sum-exp softmax, in float64, so large σ neither overflows nor cancels.
"""

from __future__ import annotations

import torch


class GaussianMixtureDenoiser:
    """D(x; σ) = E[x0 | x_σ = x] for the mixture Σ_k w_k N(means[k], std² I) (see module docstring).

    `means` is (K, D); `weights` (K,) defaults to uniform and is normalised to sum to 1. Called as
    `denoiser(x, sigma)` with x of shape (N, D) or (N, ...) with D elements per sample, and sigma of
    shape (N,) (a scalar is broadcast); the result has x's shape and dtype.
    """

    def __init__(self, means: torch.Tensor, std: float, weights: torch.Tensor | None = None) -> None:
        means = torch.as_tensor(means)
        if means.dim() != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D) with K ≥ 1, got {tuple(means.shape)}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.dtype = means.dtype if means.is_floating_point() else torch.float32
        self.means = means.to(torch.float64)
        self.std = float(std)
        k = means.shape[0]
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
            if w.shape[0] != k or bool((w < 0).any()) or not float(w.sum()) > 0:
                raise ValueError(f"weights must be {k} non-negative numbers with a positive sum")
            w = w / w.sum()
        self.weights = w
        self._log_weights = torch.log(w)  # −inf for a zero weight: that component never responds

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        """The mixture mean Σ_k w_k μ_k (float64)."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """The mixture covariance s² I + Σ_k w_k (μ_k − m)(μ_k − m)ᵀ (float64, law of total variance)."""
        centred = self.means - self.mean()
        between = (centred * self.weights[:, None]).T @ centred
        return between + self.std**2 * torch.eye(self.dim, dtype=torch.float64)

    def responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """r_k(x) = P(component k | x_σ = x), shape (N, K), float64."""
        x64, sigma64 = self._prepare(x, sigma)
        return self._responsibilities(x64, sigma64)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        x64, sigma64 = self._prepare(x, sigma)
        r = self._responsibilities(x64, sigma64)
        s2, sig2 = self.std**2, sigma64[:, None] ** 2
        posterior_centre = r @ self.means.to(x64.device)  # Σ_k r_k μ_k
        denoised = (s2 * x64 + sig2 * posterior_centre) / (s2 + sig2)
        return denoised.reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws from the mixture (on the CPU, in the dtype `means` was given in)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        n01 = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return (self.means[k] + self.std * n01).to(self.dtype)

    def _prepare(self, x: torch.Tensor, sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        x64 = x.reshape(n, -1).to(torch.float64)
        if x64.shape[1] != self.dim:
            raise ValueError(f"x has {x64.shape[1]} elements per sample; the mixture lives in {self.dim}-D")
        sigma64 = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(n)
        return x64, sigma64

    def _responsibilities(self, x64: torch.Tensor, sigma64: torch.Tensor) -> torch.Tensor:
        means = self.means.to(x64.device)
        v = self.std**2 + sigma64[:, None] ** 2  # (N, 1)
        logits = self._log_weights.to(x64.device) + (x64 @ means.T - 0.5 * (means * means).sum(1)) / v
        return torch.softmax(logits, dim=1)
