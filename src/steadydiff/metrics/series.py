"""Metrics of generated time series (items shaped (N, channels, length)) and of probabilistic forecasts.

- `discriminative_score`: how well a post-hoc classifier tells generated windows from real ones, |accuracy − ½|
  on a held-back fifth of both sets (0: indistinguishable). The protocol of TimeGAN (Yoon et al. 2019, its
  `discriminative_metrics.py`) that Diffusion-TS (Yuan & Qiao 2024) and later papers report: a one-layer GRU of
  ⌊C/2⌋ units whose last state feeds one logit, Adam at its defaults, 2,000 iterations of 128 real and 128
  generated windows, an 80/20 split of each set; mean and spread over repeats with fresh splits and weights.
- `predictive_score`: "train on synthetic, test on real" (TimeGAN's `predictive_metrics.py`): a GRU trained on
  the generated windows to predict the last channel one step ahead from the other channels (from its own past
  where there is one channel), 5,000 iterations of 128; its mean absolute error on the real windows, in the
  data's units. Real data's own score (trained on training windows) is its floor.
- `acf_distance`, `spectrum_distance`: cheap summaries that need no training — the mean absolute difference of
  the average autocorrelation function (lags 1 … L/2, per channel), and the total-variation distance between the
  average power spectra (per channel, each scaled to sum 1, so the shape of the spectrum is compared, not the
  level).
- `crps`, `mase`: for forecasts, the continuous ranked probability score of the empirical distribution of the
  draws (Gneiting & Raftery 2007, eq. 21: E|X − y| − ½ E|X − X'|), and the mean absolute scaled error of a point
  forecast against the in-sample seasonal-naive forecast (Hyndman & Koehler 2006).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

BATCH = 128  # windows of each set per iteration (TimeGAN's batch_size)
DISC_ITERATIONS = 2000  # TimeGAN's discriminative_score_metrics
PRED_ITERATIONS = 5000  # TimeGAN's predictive_score_metrics
TRAIN_SHARE = 0.8  # of each set, for the classifier's training (TimeGAN's train_test_divide)


def _check(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or len(x) < 2 or x.shape[2] < 2:
        raise ValueError(f"{name} must be series shaped (N ≥ 2, channels, length ≥ 2), got {x.shape}")
    return x


def _scaler(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min-max of the real windows (TimeGAN scales every set to [0, 1] before its metrics): (lo, span)."""
    lo = real.min(axis=(0, 2), keepdims=True)
    span = real.max(axis=(0, 2), keepdims=True) - lo
    return lo, np.where(span > 0, span, 1.0)


class _GRUs(torch.nn.Module):
    """`repeats` independent one-layer GRUs (PyTorch's gate equations and initialisation, as `torch.nn.GRU`) run
    side by side on (R, N, T, C) inputs, each with a linear read-out of its last state or of every step: the
    repeats of a score train together, since on a CPU a small GRU's time goes to per-step overhead."""

    def __init__(self, repeats: int, channels: int, hidden: int, every_step: bool):
        super().__init__()
        bound = hidden ** -0.5

        def uniform(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.empty(repeats, *shape).uniform_(-bound, bound))

        self.w_ih, self.w_hh = uniform(3 * hidden, channels), uniform(3 * hidden, hidden)
        self.b_ih, self.b_hh = uniform(1, 3 * hidden), uniform(1, 3 * hidden)
        self.w_out, self.b_out = uniform(hidden, 1), uniform(1, 1)
        self.hidden, self.every_step = hidden, every_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        repeats, n, steps, _ = x.shape
        gates_x = torch.einsum("rntc,rgc->rntg", x, self.w_ih) + self.b_ih[:, None]
        h = x.new_zeros(repeats, n, self.hidden)
        states = []
        for t in range(steps):
            gx = gates_x[:, :, t]
            gh = torch.bmm(h, self.w_hh.transpose(1, 2)) + self.b_hh
            r = torch.sigmoid(gx[..., :self.hidden] + gh[..., :self.hidden])
            z = torch.sigmoid(gx[..., self.hidden:2 * self.hidden] + gh[..., self.hidden:2 * self.hidden])
            cand = torch.tanh(gx[..., 2 * self.hidden:] + r * gh[..., 2 * self.hidden:])
            h = (1 - z) * cand + z * h
            states.append(h)
        if self.every_step:
            return (torch.bmm(torch.stack(states, 2).reshape(repeats, n * steps, self.hidden), self.w_out)
                    + self.b_out).reshape(repeats, n, steps)
        return (torch.bmm(h, self.w_out) + self.b_out).squeeze(-1)


def _hidden(channels: int) -> int:
    return max(channels // 2, 1)  # TimeGAN's hidden_dim = int(dim / 2), at least one unit


def _batches(n: torch.Tensor | int, repeats: int, size: int, g: torch.Generator) -> torch.Tensor:
    """(repeats, size) indices: for each repeat, `size` distinct items of n (all n where fewer)."""
    return torch.stack([torch.randperm(int(n), generator=g)[:size] for _ in range(repeats)])


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (R, N, ...) indexed per repeat by idx (R, B) → (R, B, ...)."""
    return x[torch.arange(len(idx))[:, None], idx]


def _splits(n: int, repeats: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each repeat's own TRAIN_SHARE / rest split of n items: (R, n_train) and (R, n − n_train) indices."""
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(repeats)])
    cut = int(TRAIN_SHARE * n)
    return perms[:, :cut], perms[:, cut:]


def discriminative_score(real: np.ndarray, fake: np.ndarray, *, repeats: int = 5, iterations: int = DISC_ITERATIONS,
                         seed: int = 0) -> dict[str, float]:
    """|balanced accuracy − ½| of a GRU classifier telling `fake` from `real` windows (both (N, C, L), the same units),
    averaged over `repeats` (each with its own split and initial weights): {"discriminative", "discriminative_sd"}.
    Both sets are min-max scaled per channel by the real windows' range first, as TimeGAN does."""
    real, fake = _check(real, "real"), _check(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake windows differ in shape: {real.shape[1:]} and {fake.shape[1:]}")
    if min(len(real), len(fake)) < 10:
        raise ValueError("the discriminative score needs at least 10 windows of each set (a fifth is held back)")
    lo, span = _scaler(real)
    # (N, C, L) → (N, L, C): the GRU reads one time step per position
    r = torch.from_numpy(np.ascontiguousarray(((real - lo) / span).transpose(0, 2, 1)))
    f = torch.from_numpy(np.ascontiguousarray(((fake - lo) / span).transpose(0, 2, 1)))
    g = torch.Generator().manual_seed(seed)
    (r_train, r_test), (f_train, f_test) = _splits(len(r), repeats, g), _splits(len(f), repeats, g)
    r_train, r_test, f_train, f_test = r[r_train], r[r_test], f[f_train], f[f_test]  # (R, n, L, C) each
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initial weights
        net = _GRUs(repeats, r.shape[2], _hidden(r.shape[2]), every_step=False)
    opt = torch.optim.Adam(net.parameters())
    rb_n, fb_n = min(BATCH, r_train.shape[1]), min(BATCH, f_train.shape[1])
    labels = torch.cat([torch.ones(rb_n), torch.zeros(fb_n)]).expand(repeats, -1)
    for _ in range(iterations):
        rb = _gather(r_train, _batches(r_train.shape[1], repeats, BATCH, g))
        fb = _gather(f_train, _batches(f_train.shape[1], repeats, BATCH, g))
        # summed over repeats: each repeat's weights get the gradient of its own mean loss
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.cat([rb, fb], 1)), labels,
                                                                    reduction="none").mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        # balanced accuracy (the mean of the two classes' accuracies): with as many fake as real windows it is the
        # plain accuracy of TimeGAN's protocol, and with unequal sets a classifier that calls everything one class
        # still scores ½, so samples and the real-data floor stay comparable whatever their counts
        right = ((net(r_test) > 0).double().mean(1) + (net(f_test) <= 0).double().mean(1)) / 2
    scores = (right - 0.5).abs().numpy()
    return {"discriminative": float(scores.mean()), "discriminative_sd": float(scores.std(ddof=1)) if repeats > 1
            else 0.0}


def _predictor_io(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of one-step-ahead prediction on (..., L, C) windows: the other channels at steps 0…L−2
    predict the last channel at steps 1…L−1 (TimeGAN's protocol); with one channel, its own value does."""
    inputs = x[..., :-1, :-1] if x.shape[-1] > 1 else x[..., :-1, :]
    return inputs, x[..., 1:, -1]


def predictive_score(train_on: np.ndarray, test_on: np.ndarray, *, repeats: int = 5,
                     iterations: int = PRED_ITERATIONS, seed: int = 0) -> dict[str, float]:
    """Mean absolute error on `test_on` (real windows) of a one-step-ahead GRU predictor trained on `train_on`
    (generated windows, or real training windows for the floor), in the units of the data's last channel;
    mean and spread over `repeats`: {"predictive", "predictive_sd"}. Inputs are min-max scaled per channel by
    `test_on`'s range (TimeGAN's [0, 1] scaling); the error is turned back into the data's units."""
    train_on, test_on = _check(train_on, "train_on"), _check(test_on, "test_on")
    if train_on.shape[1:] != test_on.shape[1:]:
        raise ValueError(f"windows differ in shape: {train_on.shape[1:]} and {test_on.shape[1:]}")
    lo, span = _scaler(test_on)
    a = torch.from_numpy(np.ascontiguousarray(((train_on - lo) / span).transpose(0, 2, 1)))
    b = torch.from_numpy(np.ascontiguousarray(((test_on - lo) / span).transpose(0, 2, 1)))
    x_train, y_train = _predictor_io(a)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = _GRUs(repeats, x_train.shape[2], _hidden(a.shape[2]), every_step=True)
    opt = torch.optim.Adam(net.parameters())
    for _ in range(iterations):
        idx = _batches(len(a), repeats, BATCH, g)
        loss = (net(x_train[idx]) - y_train[idx]).abs().mean((1, 2)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_test, y_test = _predictor_io(b)
    with torch.no_grad():
        errors = (net(x_test.expand(repeats, -1, -1, -1)) - y_test).abs().mean((1, 2)).double().numpy()
    scores = errors * float(span[0, -1, 0])
    return {"predictive": float(scores.mean()), "predictive_sd": float(scores.std(ddof=1)) if repeats > 1 else 0.0}


def mean_acf(x: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """The autocorrelation at lags 1 … max_lag (default L/2) of each window and channel, averaged over windows:
    (C, max_lag). A constant window contributes zeros."""
    x = _check(x, "x").astype(np.float64)
    length = x.shape[2]
    max_lag = max(1, length // 2) if max_lag is None else max_lag
    d = x - x.mean(axis=2, keepdims=True)
    var = (d ** 2).sum(axis=2)
    safe = np.where(var > 0, var, 1.0)
    acf = np.stack([(d[:, :, :-k] * d[:, :, k:]).sum(axis=2) / safe for k in range(1, max_lag + 1)], axis=2)
    return np.where(var[..., None] > 0, acf, 0.0).mean(axis=0)


def acf_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Mean absolute difference of the two sets' average autocorrelation functions (lags 1 … L/2, every channel)."""
    return float(np.abs(mean_acf(real) - mean_acf(fake)).mean())


def mean_spectrum(x: np.ndarray) -> np.ndarray:
    """The power spectrum of each de-meaned window and channel, averaged over windows and scaled to sum 1 per
    channel: (C, L // 2 + 1)."""
    x = _check(x, "x").astype(np.float64)
    power = (np.abs(np.fft.rfft(x - x.mean(axis=2, keepdims=True), axis=2)) ** 2).mean(axis=0)
    total = power.sum(axis=1, keepdims=True)
    return power / np.where(total > 0, total, 1.0)


def spectrum_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Total-variation distance between the sets' average power spectra (each channel's scaled to sum 1),
    averaged over channels: 0 (the same shape of spectrum) … 1 (no frequency in common)."""
    return float(0.5 * np.abs(mean_spectrum(real) - mean_spectrum(fake)).sum(axis=1).mean())


def series_scores(real: np.ndarray, fake: np.ndarray, *, models: bool = True, repeats: int = 3,
                  train: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Every series metric of `fake` against `real` windows: the ACF and spectrum distances, and with `models` the
    discriminative score and the predictive score (trained on `fake`; `train` stands in for it when given)."""
    out: dict[str, Any] = {"acf_distance": acf_distance(real, fake), "spectrum_distance": spectrum_distance(real, fake)}
    if models:
        out.update(discriminative_score(real, fake, repeats=repeats, seed=seed))
        out.update(predictive_score(fake if train is None else train, real, repeats=repeats, seed=seed))
    return out


def crps(draws: np.ndarray, truth: np.ndarray) -> float:
    """The CRPS of the empirical distribution of `draws` (K, ...) for the observations `truth` (...), averaged over
    every value: E|X − y| − ½ E|X − X'|, the second term from the sorted draws in O(K log K) (Gneiting & Raftery
    2007, eq. 21; E|X − X'| = 2/K² Σᵢ (2i − K − 1) x₍ᵢ₎). In the data's units; lower is better."""
    d = np.asarray(draws, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if d.shape[1:] != y.shape or len(d) < 1:
        raise ValueError(f"draws must be shaped (K, {y.shape}), got {d.shape}")
    k = len(d)
    spread_weights = (2 * np.arange(1, k + 1) - k - 1).reshape((k,) + (1,) * y.ndim)
    spread = 2.0 / k ** 2 * (spread_weights * np.sort(d, axis=0)).sum(axis=0)
    return float((np.abs(d - y).mean(axis=0) - 0.5 * spread).mean())


def mase(forecast: np.ndarray, truth: np.ndarray, history: np.ndarray, season: int = 1) -> float:
    """Mean absolute error of the point `forecast` against `truth`, divided by the in-sample mean absolute error of
    the seasonal-naive forecast (each value of `history` predicted by the one `season` steps before). Below 1:
    better than that naive forecast was in sample. Arrays are (steps,) or (steps, channels), time first."""
    f, y, h = (np.asarray(a, dtype=np.float64) for a in (forecast, truth, history))
    if f.shape != y.shape:
        raise ValueError(f"forecast and truth differ in shape: {f.shape} and {y.shape}")
    if len(h) <= season:
        raise ValueError(f"the history needs more than {season} steps for a seasonal-naive scale, has {len(h)}")
    scale = np.abs(h[season:] - h[:-season]).mean()
    if not scale > 0:
        raise ValueError("the history is constant at its seasonal lag: MASE is undefined")
    return float(np.abs(f - y).mean() / scale)
