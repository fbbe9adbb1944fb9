"""The report's figures: pure functions from numbers to PNG bytes, drawn by matplotlib's Agg canvas.

Figures are built on `matplotlib.figure.Figure` with an explicit `FigureCanvasAgg`, never through pyplot,
so no global state or GUI backend is touched. Every function returns None when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

BLUE, ORANGE, GREEN, RED, GREY = "#1f4e9c", "#e07b1a", "#2e9e55", "#d43c3c", "#9aa5b1"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _series(records: Sequence[Mapping[str, Any]], key: str, x_key: str = "samples_seen"
            ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the records holding a number under `key`; non-finite values are kept (as NaN)."""
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and x_key in r:
            xs.append(float(r[x_key]))
            ys.append(float(v))
    return np.asarray(xs), np.asarray(ys)


def _log_if_positive(ax: Any, *arrays: np.ndarray) -> None:
    """Log scale when every finite value is positive (the usual case for losses and norms)."""
    finite = [a[np.isfinite(a)] for a in arrays if len(a)]
    if finite and all(len(a) and (a > 0).all() for a in finite):
        ax.set_yscale("log")


def _xlabel(ax: Any) -> None:
    ax.set_xlabel("samples seen")
    ax.grid(True, alpha=0.3, which="both")


def loss_curves(metrics: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Training loss and the fixed validation loss (raw and EMA weights) over samples seen."""
    curves = [("loss", "training loss (per log window)", GREY, 1.0),
              ("val_loss", "fixed validation loss, raw weights", BLUE, 1.8),
              ("val_loss_ema", "fixed validation loss, EMA weights", GREEN, 1.8)]
    drawn = [(key, label, colour, lw, *_series(metrics, key)) for key, label, colour, lw in curves]
    drawn = [d for d in drawn if len(d[4])]
    if not drawn:
        return None
    fig = _figure(10, 3.8)
    ax = fig.add_subplot()
    for _key, label, colour, lw, x, y in drawn:
        ax.plot(x, y, color=colour, lw=lw, label=label, marker="o" if len(x) < 30 and lw > 1 else None, ms=3)
    _log_if_positive(ax, *[d[5] for d in drawn])
    ax.set_ylabel("loss")
    _xlabel(ax)
    ax.legend(loc="best", fontsize=9)
    return _png(fig)


def condition_curves(metrics: Sequence[Mapping[str, Any]]) -> bytes | None:
    """A conditional run's fixed validation loss (raw weights) with each item's own condition, with none (the
    unconditional branch) and with another item's; the gap is what the network takes from its condition."""
    curves = [("val_loss", "own condition", BLUE), ("val_loss_null", "no condition", GREY),
              ("val_loss_shuffled", "another item's condition", RED)]
    drawn = [(label, colour, *_series(metrics, key)) for key, label, colour in curves]
    drawn = [d for d in drawn if len(d[2])]
    if len(drawn) < 3:
        return None
    fig = _figure(10, 3.4)
    ax = fig.add_subplot()
    for label, colour, x, y in drawn:
        ax.plot(x, y, color=colour, lw=1.6, label=label, marker="o" if len(x) < 30 else None, ms=3)
    _log_if_positive(ax, *[d[3] for d in drawn])
    ax.set_ylabel("fixed validation loss")
    _xlabel(ax)
    ax.legend(loc="best", fontsize=9)
    return _png(fig)


def bin_curves(metrics: Sequence[Mapping[str, Any]], bins: int = 8) -> bytes | None:
    """Per-σ-bin curves: training, validation (raw) and validation (EMA), one panel each, low σ first."""
    panels = [("loss_bins", "training loss"), ("val_loss_bins", "validation loss, raw"),
              ("val_loss_ema_bins", "validation loss, EMA")]
    data = []
    for key, title in panels:
        rows = [(r["samples_seen"], r[key]) for r in metrics
                if isinstance(r.get(key), list) and len(r[key]) == bins and "samples_seen" in r]
        if rows:
            x = np.asarray([r[0] for r in rows], dtype=np.float64)
            y = np.asarray([[math.nan if v is None else float(v) for v in r[1]] for r in rows])
            data.append((title, x, y))
    if not data:
        return None
    fig = _figure(11, 4.0)
    axes = fig.subplots(1, len(data), sharey=True, squeeze=False)[0]
    cmap = colormaps["viridis"]
    for ax, (title, x, y) in zip(axes, data, strict=True):
        for b in range(bins):
            label = f"bin {b + 1}" + (" (lowest σ)" if b == 0 else " (highest σ)" if b == bins - 1 else "")
            ax.plot(x, y[:, b], color=cmap(b / max(bins - 1, 1)), lw=1.2, label=label)
        ax.set_title(title, fontsize=10)
        _xlabel(ax)
    _log_if_positive(axes[0], *[d[2].ravel() for d in data])
    axes[0].set_ylabel("loss per σ bin")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=bins, fontsize=8)
    return _png(fig)


def grad_lr(metrics: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Gradient norm (before clipping), learning rate with the guard's LR scale, and, where logged, the
    update/weight ratio and the weight norm per block, over samples seen."""
    xg, g = _series(metrics, "grad_norm")
    xl, lr = _series(metrics, "lr")
    xu, upd = _series(metrics, "update_ratio")
    scale = [(float(r["samples_seen"]), float(r["guard"]["lr_scale"])) for r in metrics
             if isinstance(r.get("guard"), dict) and isinstance(r["guard"].get("lr_scale"), int | float)
             and "samples_seen" in r]
    blocks = sorted({k for r in metrics if isinstance(r.get("weight_norms"), dict) for k in r["weight_norms"]})
    if not len(g) and not len(lr):
        return None
    n_panels = 2 + bool(len(upd)) + bool(blocks)
    cols = 2
    fig = _figure(10, 3.3 * math.ceil(n_panels / cols))
    axes = np.atleast_1d(fig.subplots(math.ceil(n_panels / cols), cols, squeeze=False)).ravel()
    ax1, ax2, rest = axes[0], axes[1], list(axes[2:])
    if len(g):
        ax1.plot(xg, g, color=ORANGE, lw=1.2)
        _log_if_positive(ax1, g)
    ax1.set_title("gradient norm (last step of each log window)", fontsize=10)
    _xlabel(ax1)
    if len(lr):
        ax2.plot(xl, lr, color=BLUE, lw=1.5, label="learning rate")
    ax2.set_title("learning rate", fontsize=10)
    _xlabel(ax2)
    if scale and any(s != 1.0 for _, s in scale):
        tw = ax2.twinx()
        tw.step([s[0] for s in scale], [s[1] for s in scale], where="post", color=RED, lw=1.2,
                label="guard's LR scale")
        tw.set_ylabel("guard's LR scale", color=RED)
        tw.set_ylim(0, 1.05)
    if len(upd):
        ax = rest.pop(0)
        ax.plot(xu, upd, color=GREEN, lw=1.2)
        _log_if_positive(ax, upd)
        ax.set_title("update / weight norm ratio", fontsize=10)
        _xlabel(ax)
    if blocks:
        ax = rest.pop(0)
        for i, b in enumerate(blocks):
            x, y = _series([{**r, "w": r["weight_norms"].get(b)} for r in metrics
                            if isinstance(r.get("weight_norms"), dict)], "w")
            ax.plot(x, y, lw=1.2, label=b, color=colormaps["tab10"](i % 10))
        ax.set_title("weight norm per block", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        _xlabel(ax)
    for ax in rest:
        ax.set_visible(False)
    return _png(fig)


def small_multiples(series: Mapping[str, tuple[np.ndarray, np.ndarray]], *, xlabel: str = "samples seen",
                    cols: int = 3) -> bytes | None:
    """One small panel per named (x, y) series."""
    items = [(k, v) for k, v in series.items() if len(v[0])]
    if not items:
        return None
    rows = math.ceil(len(items) / cols)
    fig = _figure(11, 2.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, (x, y)) in zip(axes, items, strict=False):
        ax.plot(x, y, color=BLUE, lw=1.4, marker="o" if len(x) < 30 else None, ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(items):]:
        ax.set_visible(False)
    return _png(fig)


def sample_metric_curves(series: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                         floors: Mapping[str, float] | None = None,
                         best: tuple[str, float, float] | None = None, cols: int = 3) -> bytes | None:
    """One panel per in-training sample metric over steps: the metric, what real data scores on it (dashed,
    where known) and the best evaluation (`best` = (name, step, value), a star)."""
    items = [(k, v) for k, v in series.items() if len(v[0])]
    if not items:
        return None
    floors = floors or {}
    rows = math.ceil(len(items) / cols)
    fig = _figure(11, 2.7 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, (x, y)) in zip(axes, items, strict=False):
        ax.plot(x, y, color=BLUE, lw=1.4, marker="o" if len(x) < 40 else None, ms=3)
        floor = floors.get(name)
        if isinstance(floor, int | float) and math.isfinite(floor):
            ax.axhline(floor, color=GREY, lw=1.2, ls="--", label="real data")
            ax.legend(fontsize=7, loc="best")
        if best is not None and best[0] == name:
            ax.scatter([best[1]], [best[2]], marker="*", s=140, color=ORANGE, zorder=4, label="best")
            ax.set_title(f"{name} (best: step {int(best[1]):,})", fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(items):]:
        ax.set_visible(False)
    return _png(fig)


_ACTION_COLOURS = {"stop": RED, "rollback": RED, "skipped step": ORANGE, "warned": "#c9a227", "none": GREEN}


def incident_timeline(incidents: Sequence[Mapping[str, Any]], last_step: int) -> bytes | None:
    """Each stability event as a mark at its step, one row per guard, coloured by what was done."""
    if not incidents:
        return None
    kinds = sorted({str(r.get("guard", "?")) for r in incidents})
    fig = _figure(10, 1.2 + 0.42 * len(kinds))
    ax = fig.add_subplot()
    seen: set[str] = set()
    for r in incidents:
        action = str(r.get("action", "?"))
        colour = _ACTION_COLOURS.get(action, BLUE if not action.startswith("lr") else "#7b4fb0")
        label = action if action not in seen else None
        seen.add(action)
        ax.scatter([int(r.get("step", 0))], [kinds.index(str(r.get("guard", "?")))], color=colour,
                   marker="X" if action in ("stop", "rollback") else "o", s=60, label=label, zorder=3)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_ylim(-0.6, len(kinds) - 0.4)
    ax.set_xlim(-0.02 * max(last_step, 1), max(last_step, 1) * 1.02)
    ax.set_xlabel("step")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="action", title_fontsize=8)
    return _png(fig)


def quality_vs_nfe(rows: Sequence[Mapping[str, Any]], key: str, label: str) -> bytes | None:
    """`key` against network evaluations, one line per solver."""
    by: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            by.setdefault(str(r["solver"]), []).append((int(r["nfe"]), float(v)))
    if not by:
        return None
    fig = _figure(6.5, 3.4)
    ax = fig.add_subplot()
    for solver, pts in by.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", lw=1.6, label=solver)
    ax.set_xscale("log")
    _log_if_positive(ax, np.asarray([p[1] for pts in by.values() for p in pts]))
    ax.set_xlabel("network evaluations per sample (NFE)")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=9)
    return _png(fig)


def nn_histogram(sample_nn: np.ndarray, heldout_nn: np.ndarray | None, threshold: float) -> bytes:
    """Distances to the nearest training item: samples against held-out real items, with the copy threshold."""
    fig = _figure(7.5, 3.2)
    ax = fig.add_subplot()
    held = heldout_nn if heldout_nn is not None else np.empty(0)
    both = np.concatenate([sample_nn, held, [threshold]])
    positive = both[np.isfinite(both) & (both > 0)]
    log = len(positive) > 0 and positive.max() / positive.min() > 30  # spans orders of magnitude (2-D data)
    if log:
        edges = np.geomspace(positive.min() / 1.5, positive.max() * 1.5, 45)
        ax.set_xscale("log")
    else:
        edges = np.linspace(0, max(float(np.nanmax(both)) if len(both) else 1.0, 1e-12) * 1.05, 40)
    clip = (edges[0], edges[-1])
    for values, colour, label in ((sample_nn, BLUE, f"{len(sample_nn)} samples"),
                                  (held, GREY, f"{len(held)} held-out real items")):
        if len(values):  # each set sums to 1, so sets of different sizes compare
            ax.hist(np.clip(values, *clip), bins=edges, color=colour, alpha=0.6, label=label,
                    weights=np.full(len(values), 1 / len(values)))
    ax.axvline(threshold, color=RED, lw=1.5, ls="--", label="near-copy threshold")
    ax.set_xlabel("distance to the nearest training item (normalised units)")
    ax.set_ylabel("share per bin")
    ax.legend(fontsize=8)
    return _png(fig)


def _display(item: np.ndarray, value_range: tuple[float, float]) -> tuple[np.ndarray, str | None]:
    """One (C, H, W) image in user units → an array imshow draws, and its colour map."""
    lo, hi = value_range
    u = np.clip((np.asarray(item, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    if u.shape[0] == 3:
        return u.transpose(1, 2, 0), None
    return u[0], "gray"


def _show(ax: Any, item: np.ndarray, value_range: tuple[float, float]) -> None:
    arr, cmap = _display(item, value_range)
    ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _two_rows(top: np.ndarray, bottom: np.ndarray, titles: Sequence[tuple[str, str]], labels: tuple[str, str],
              value_range: tuple[float, float], *, width: float, height: float) -> bytes | None:
    """Images in two aligned rows (one column per item), a (text, colour) title over each column."""
    n = len(top)
    if n == 0:
        return None
    fig = _figure(width * n + 0.7, height)
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        _show(axes[0, i], top[i], value_range)
        _show(axes[1, i], bottom[i], value_range)
        axes[0, i].set_title(titles[i][0], fontsize=8, color=titles[i][1])
    axes[0, 0].set_ylabel(labels[0], fontsize=9)
    axes[1, 0].set_ylabel(labels[1], fontsize=9)
    return _png(fig)


def image_pairs(samples: np.ndarray, nearest: np.ndarray, distances: Sequence[float], threshold: float,
                value_range: tuple[float, float]) -> bytes | None:
    """Each sample beside its nearest training item, with their distance (red when below the threshold)."""
    titles = [(f"d={d:.3g}", RED if d < threshold else "black") for d in distances]
    return _two_rows(samples, nearest, titles, ("sample", "nearest\ntraining item"), value_range,
                     width=1.25, height=2.9)


def vector_pairs(train: np.ndarray, samples: np.ndarray, nearest: np.ndarray, *,
                 columns: Sequence[str] | None = None) -> bytes | None:
    """2-D view (first two features): training data, the worst offenders and lines to their nearest items."""
    if train.ndim != 2 or train.shape[1] < 2 or len(samples) == 0:
        return None
    fig = _figure(5.2, 5.0)
    ax = fig.add_subplot()
    ax.scatter(train[:, 0], train[:, 1], s=3, color=GREY, alpha=0.5, label="training items")
    for s, t in zip(samples, nearest, strict=True):
        ax.plot([s[0], t[0]], [s[1], t[1]], color=RED, lw=1)
    ax.scatter(samples[:, 0], samples[:, 1], s=25, color=RED, marker="x", label="closest samples")
    ax.scatter(nearest[:, 0], nearest[:, 1], s=25, facecolors="none", edgecolors="black", label="their nearest item")
    names = list(columns) if columns and len(columns) >= 2 else ["feature 1", "feature 2"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def series_pairs(samples: np.ndarray, nearest: np.ndarray, distances: Sequence[float], threshold: float
                 ) -> bytes | None:
    """Series (N, C, L): one panel per sample, its channels as coloured lines over its nearest training item's
    (grey, dashed); the title gives the distance (red: a near-copy)."""
    if samples.ndim != 3 or len(samples) == 0:
        return None
    n = len(samples)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = _figure(2.6 * cols, 1.8 * rows)
    colours = colormaps["tab10"].colors
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for c in range(samples.shape[1]):
            ax.plot(nearest[i, c], color=GREY, lw=1.2, ls="--")
            ax.plot(samples[i, c], color=colours[c % len(colours)], lw=1.0)
        d = float(distances[i])
        ax.set_title(f"d={d:.3g}", fontsize=8, color=RED if d < threshold else "black")
        ax.tick_params(labelsize=6)
    return _png(fig)


def trajectory_series(denoised: np.ndarray, sigmas: Sequence[float]) -> bytes | None:
    """Series: the x0 prediction of one sample at a few steps, one panel per step (channels as lines)."""
    if denoised.ndim != 3 or len(denoised) == 0:
        return None
    steps = len(denoised)
    fig = _figure(1.9 * steps, 1.9)
    lo, hi = float(denoised.min()), float(denoised.max())
    colours = colormaps["tab10"].colors
    for k in range(steps):
        ax = fig.add_subplot(1, steps, k + 1)
        for c in range(denoised.shape[1]):
            ax.plot(denoised[k, c], color=colours[c % len(colours)], lw=0.9)
        ax.set_ylim(lo, hi)
        ax.set_title(f"σ={sigmas[k]:.3g}", fontsize=7)
        ax.tick_params(labelsize=5)
    return _png(fig)


def trajectory_images(denoised: np.ndarray, states: np.ndarray, sigmas: Sequence[float],
                      value_range: tuple[float, float]) -> bytes | None:
    """Top row: the x0 prediction D(x; σ) at each step; bottom: the noisy state after the step."""
    titles = [(f"σ={s:.3g}", "black") for s in sigmas]
    return _two_rows(denoised, states, titles, ("D(x; σ)", "x after the\nstep, scaled"), value_range,
                     width=1.05, height=2.6)


def trajectory_paths(denoised: np.ndarray, sigmas: Sequence[float], reference: np.ndarray | None, *,
                     columns: Sequence[str] | None = None) -> bytes | None:
    """Vectors: the x0 prediction of a few samples across the steps (first two features, or value per step
    for one feature). `denoised` is (steps, samples, features), in user units."""
    if denoised.ndim != 3 or denoised.shape[0] == 0:
        return None
    steps, n, d = denoised.shape
    cmap = colormaps["plasma"]
    if d == 1:
        fig = _figure(7, 3.4)
        ax = fig.add_subplot()
        for j in range(n):
            ax.plot(range(steps), denoised[:, j, 0], marker="o", ms=3, lw=1)
        ax.set_xticks(range(steps), [f"{s:.2g}" for s in sigmas], fontsize=7, rotation=60)
        ax.set_xlabel("σ at the step")
        ax.set_ylabel("D(x; σ)")
        return _png(fig)
    fig = _figure(5.6, 5.2)
    ax = fig.add_subplot()
    if reference is not None and len(reference):
        ax.scatter(reference[:, 0], reference[:, 1], s=3, color=GREY, alpha=0.4, label="training data")
    for j in range(n):
        ax.plot(denoised[:, j, 0], denoised[:, j, 1], color="black", lw=0.6, alpha=0.6)
        ax.scatter(denoised[:, j, 0], denoised[:, j, 1], c=range(steps), cmap=cmap, s=14, zorder=3,
                   vmin=0, vmax=max(steps - 1, 1))
    ax.scatter(denoised[-1, :, 0], denoised[-1, :, 1], s=60, facecolors="none", edgecolors="black",
               label="final sample", zorder=4)
    names = list(columns) if columns and len(columns) >= 2 else ["feature 1", "feature 2"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="upper right")
    sm = ScalarMappable(cmap=cmap)
    sm.set_clim(0, max(steps - 1, 1))
    fig.colorbar(sm, ax=ax, label="solver step (σ falling)", shrink=0.8)
    return _png(fig)
