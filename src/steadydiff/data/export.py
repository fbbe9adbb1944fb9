"""Write samples in the user's units: PNG (image grid, series line plots or 2-D scatter), .npy or .csv (a typed
table's own columns)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import SteadydiffError
from .table import TRUE_CELLS, Table

FORMATS = (".png", ".npy", ".csv", ".parquet")


def image_grid(x: np.ndarray, value_range: tuple[float, float], *, cols: int | None = None,
               min_cell: int = 32) -> np.ndarray:
    """(N, C, H, W) images in `value_range` → one uint8 grid (H', W') or (H', W', 3), 1-pixel gaps.

    Tiny images (8×8 digits) are enlarged by a whole factor so a cell is at least `min_cell` pixels.
    """
    n, c, h, w = x.shape
    lo, hi = value_range
    u8 = np.clip((x - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    k = max(1, math.ceil(min_cell / max(h, w)))
    u8 = u8.repeat(k, axis=2).repeat(k, axis=3)
    h, w = h * k, w * k
    grid = np.full((c, rows * (h + 1) + 1, cols * (w + 1) + 1), 255 if c == 1 else 128, np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = u8[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def _scatter_png(path: Path, x: np.ndarray, reference: np.ndarray | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="#bbbbbb", alpha=0.5, label="data")
    ax.scatter(x[:, 0], x[:, 1], s=2, c="#1f4e9c", alpha=0.7, label="samples")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def forecast_png(path: Path, history: np.ndarray, paths: np.ndarray, names: list[str], title: str) -> None:
    """A fan chart per channel: the history's last steps, then the draws' median with their 5–95 % and 25–75 %
    bands. `history` is (steps, channels), `paths` (draws, channels, horizon), both in the user's units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels, horizon = paths.shape[1], paths.shape[2]
    tail = history[-max(3 * horizon, 24):]
    t_hist = np.arange(-len(tail) + 1, 1)
    t_next = np.arange(0, horizon + 1)  # the fan starts at the last known value
    q = np.quantile(paths, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)  # (5, channels, horizon)
    q = np.concatenate([np.broadcast_to(tail[-1][None, :, None], (5, channels, 1)), q], axis=2)
    fig, axes = plt.subplots(channels, 1, figsize=(7, 2.2 * channels), dpi=100, squeeze=False, sharex=True)
    for c, ax in enumerate(axes[:, 0]):
        ax.plot(t_hist, tail[:, c], color="black", lw=1.0, label="history")
        ax.fill_between(t_next, q[0, c], q[4, c], color="#9ecae1", label="5–95 %")
        ax.fill_between(t_next, q[1, c], q[3, c], color="#4292c6", label="25–75 %")
        ax.plot(t_next, q[2, c], color="#08306b", lw=1.2, label="median")
        ax.axvline(0.5, color="#888888", lw=0.6, ls=":")
        ax.set_ylabel(names[c] if c < len(names) else f"channel {c}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=4)
    axes[-1, 0].set_xlabel("steps (0: the last known one)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _series_png(path: Path, x: np.ndarray, reference: np.ndarray | None, title: str, *, panels: int = 16) -> None:
    """A grid of line plots: one panel per sample (the first `panels`), one line per channel; with `reference`,
    real series drawn the same way in grey underneath, so shapes can be compared at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(x), panels)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.7 * rows), dpi=100, sharex=True, squeeze=False)
    lo, hi = float(np.min(x[:n])), float(np.max(x[:n]))
    if reference is not None and len(reference):
        lo, hi = min(lo, float(reference[:n].min())), max(hi, float(reference[:n].max()))
    pad = 0.05 * (hi - lo or 1.0)
    colours = plt.get_cmap("tab10").colors
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        if reference is not None and i < len(reference):
            for c in range(reference.shape[1]):
                ax.plot(reference[i, c], color="#cccccc", lw=0.8)
        for c in range(x.shape[1]):
            ax.plot(x[i, c], color=colours[c % len(colours)], lw=1.0)
        ax.set_ylim(lo - pad, hi + pad)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_parquet(path: Path, x: np.ndarray, table: Table | None, columns: list[str] | None) -> None:
    """Rows as a parquet file: a typed table's own columns with their types (numeric as float, integer as nullable
    Int64, boolean as nullable boolean, categorical as its text; missing values as nulls), else one float column
    per feature."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas writes parquet through it)
    except ImportError:
        raise SteadydiffError("writing parquet files needs pandas and pyarrow: pip install 'steadydiff[parquet]' (or "
                              "write .csv)") from None
    flat = x.reshape(len(x), -1)
    if table is None:
        names = columns if columns and len(columns) == flat.shape[1] else [f"x{i}" for i in range(flat.shape[1])]
        pd.DataFrame(flat.astype(np.float64), columns=names).to_parquet(path, index=False)
        return
    rows = table.decode(flat)
    data = {}
    for j, col in enumerate(table.columns):
        cells = [r[j] for r in rows]
        if col.type == "numeric":
            data[col.name] = pd.array([float(c) if c else None for c in cells], dtype="Float64")
        elif col.type == "integer":
            data[col.name] = pd.array([int(c) if c else None for c in cells], dtype="Int64")
        elif col.type == "boolean":
            data[col.name] = pd.array([None if not c else c.lower() in TRUE_CELLS for c in cells], dtype="boolean")
        else:
            data[col.name] = pd.array([c or None for c in cells], dtype="string")
    pd.DataFrame(data).to_parquet(path, index=False)


def save_samples(path: str | Path, x: np.ndarray, *, kind: str, value_range: tuple[float, float] | None = None,
                 columns: list[str] | None = None, reference: np.ndarray | None = None, title: str = "",
                 table: Table | None = None) -> Path:
    """Write `x` (user units) to `path`, choosing the format by its suffix; written atomically. Rows of a typed table
    (`table`, data/table.py) go to a CSV or parquet file as the table's own columns, in its order and types: a
    category by its name, a boolean as the file spelt it (parquet: as a boolean), an integer as one (a .npy holds the
    rows of numbers as they are)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SteadydiffError(f"cannot write samples to {str(path)!r}: use a name ending in .png, .npy, .csv or "
                              ".parquet")
    if suffix == ".parquet" and kind != "vector":
        raise SteadydiffError(f"cannot write {kind} samples to {str(path)!r}: .parquet holds tables and vectors; "
                              "write .npy (or .png) instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # same suffix: np.save and the writers go by it
        if suffix == ".npy":
            np.save(tmp, x.astype(np.float32))
        elif suffix == ".csv" and table is not None:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(table.names)
                writer.writerows(table.decode(x.reshape(len(x), -1)))
        elif suffix == ".parquet":
            _write_parquet(tmp, x, table, columns)
        elif suffix == ".csv":
            flat = x.reshape(len(x), -1)
            if kind == "series":  # one row per series: each channel's steps in turn, named channel_t<step>
                chans = columns if columns and len(columns) == x.shape[1] else \
                    [f"channel{c}" for c in range(x.shape[1])]
                names = [f"{c}_t{t}" for c in chans for t in range(x.shape[2])]
            else:
                names = columns if columns and len(columns) == flat.shape[1] else \
                    [f"x{i}" for i in range(flat.shape[1])]
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(names)
                writer.writerows([[f"{v:.6g}" for v in row] for row in flat])
        elif kind == "image":
            from PIL import Image

            lo_hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
            Image.fromarray(image_grid(x, lo_hi)).save(tmp, format="PNG")
        elif kind == "series":
            _series_png(tmp, x, reference, title or f"{len(x)} samples (one line per channel)")
        elif x.ndim == 2 and x.shape[1] >= 2:
            default_title = f"{len(x)} samples" + (", first two features" if x.shape[1] > 2 else "")
            _scatter_png(tmp, x, reference, title or default_title)
        else:
            raise SteadydiffError(f"cannot draw {x.shape[1:]}-shaped items as a PNG; write .npy or .csv instead")
    return path
