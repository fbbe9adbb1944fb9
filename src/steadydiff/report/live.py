"""Figures computed now, from the run's last checkpoint (EMA weights) and its data, kept cheap. Quality is not
among them: its one definition is `metrics.reference.Reference`, and the report reads what `steadydiff eval`
(eval.json), the in-training sample metrics (metrics.jsonl) and the end of training (summary.json) wrote with it.

- the samples: `n` from the run's own sampler settings (seed 0), in normalised units;
- memorisation: each sample's distance to its nearest training item (normalised units, full resolution)
  against the same distance for held-out real items, over at most the first 5,000 training items (the cap
  summary.json uses too);
- diversity: mean nearest-neighbour distance among samples against that among as many real items;
- the denoising trajectory: the x0 prediction D(x; σ) at each solver step, through the solver's callback.

Only public layers are used: `steadydiff.api.load` (the public loader), `steadydiff.metrics` and
`steadydiff.data.load_data` (to reload the training data from the run's config).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..api import Model, load
from ..data import load_data
from ..data.normalise import Normaliser
from ..errors import SteadydiffError
from ..metrics import copy_fraction, mode_stats, nearest_distances
from ..metrics.reference import SAMPLES_FILE
from .files import RunFiles

# Samples per setting of the report's quality-vs-NFE table (scored by `steadydiff eval` before a report) and for
# memorisation and diversity (the table's samples of the run's own sampler, reused): 250 keeps a default digits
# report within a minute on one CPU core; each distance is read against real data's floor at the same size.
N_EVAL = 250
MAX_REFERENCE = 5000  # training items that samples are compared with
WORST = 8  # memorisation offenders shown


@dataclass
class Reference:
    """The run's data, reloaded and checked against dataset.json's fingerprint; normalised, (N, ...)."""

    train: np.ndarray  # the first MAX_REFERENCE training items
    holdout: np.ndarray
    train_user: np.ndarray  # the same items in the user's units (for pictures)
    modes: np.ndarray | None
    mode_std: float | None
    n_train_total: int


@dataclass
class Live:
    """What the model-based sections need; `notes` say what was skipped and why."""

    model: Model | None = None
    normaliser: Normaliser | None = None
    reference: Reference | None = None
    model_note: str | None = None
    data_note: str | None = None
    memo: dict[str, Any] | None = None
    diversity_ratio: float | None = None
    modes: dict[str, Any] | None = None  # mode statistics of the memorisation samples
    trajectory: dict[str, Any] | None = None
    eval_note: str | None = None  # why eval.json was not made before this report
    n_eval: int = N_EVAL
    seconds: float = 0.0


def load_normaliser(files: RunFiles) -> Normaliser | None:
    path = files.dir / "normaliser.json"
    if not path.is_file():
        return None
    return Normaliser.from_dict(json.loads(path.read_text()))


def load_model(files: RunFiles) -> tuple[Model | None, str | None]:
    if not files.checkpoints:
        return None, "no checkpoint yet: the sections that need the model are skipped until the first one is written"
    try:
        return load(files.dir, ema=True), None
    except (SteadydiffError, OSError, RuntimeError, KeyError, ValueError) as exc:
        return None, f"the last checkpoint could not be loaded ({type(exc).__name__}: {exc})"


def load_reference(files: RunFiles, norm: Normaliser) -> tuple[Reference | None, str | None]:
    """Reload the training data through data.load_data(config.data); None and why when that is impossible."""
    if files.config is None:
        return None, "the run's config could not be read, so its data cannot be reloaded"
    try:
        ds = load_data(files.config.data)
    except (SteadydiffError, OSError, ValueError) as exc:
        return None, (f"the training data (data.source = {files.config.data.source!r}) could not be reloaded "
                      f"({exc}); data given to steadydiff.train as an array or Dataset cannot be, give a path")
    fingerprint = ds.fingerprint
    expected = files.dataset.get("fingerprint")
    if expected is not None and expected != fingerprint:
        return None, (f"the data at {files.config.data.source!r} is not what the run was trained on "
                      f"(fingerprint {fingerprint}, the run's {expected})")
    ds, _ = ds.complete()  # distances are between complete items (data with missing values)
    train_user = ds.train[:MAX_REFERENCE]
    return Reference(train=np.asarray(norm.forward(train_user), dtype=np.float32),
                     holdout=np.asarray(norm.forward(ds.holdout), dtype=np.float32), train_user=train_user,
                     modes=None if ds.modes is None else np.asarray(ds.modes), mode_std=ds.mode_std,
                     n_train_total=len(ds.train)), None


def memorisation(samples: np.ndarray, ref: Reference) -> dict[str, Any] | None:
    """Near-copy fraction of samples and of held-out items against the training items, and the worst offenders."""
    if len(ref.train) < 2 or not np.isfinite(samples).all():
        return None
    cf = copy_fraction(samples, ref.train)
    sample_nn = nearest_distances(samples, ref.train)
    held_nn = nearest_distances(ref.holdout, ref.train) if len(ref.holdout) else None
    worst = np.argsort(sample_nn)[:WORST]
    flat_train = torch.as_tensor(ref.train.reshape(len(ref.train), -1), dtype=torch.float64)
    flat_worst = torch.as_tensor(samples[worst].reshape(len(worst), -1), dtype=torch.float64)
    nearest = torch.cdist(flat_worst, flat_train).argmin(1).numpy()
    return {"copy_fraction": cf["copy_fraction"], "threshold": cf["threshold"],
            "median_sample_nn": cf["median_sample_nn"], "median_train_nn": cf["median_train_nn"],
            "heldout_fraction": None if held_nn is None else float((held_nn < cf["threshold"]).mean()),
            "median_heldout_nn": None if held_nn is None else float(np.median(held_nn)),
            "sample_nn": sample_nn, "heldout_nn": held_nn, "worst": worst, "worst_nearest": nearest,
            "worst_distances": sample_nn[worst], "samples": samples, "n_samples": len(samples),
            "n_train": len(ref.train), "n_heldout": 0 if held_nn is None else len(held_nn)}


def diversity_ratio(samples: np.ndarray, real: np.ndarray) -> float | None:
    """Mean nearest-neighbour distance within the samples over that within as many real items."""
    k = min(len(samples), len(real))
    if k < 3 or not np.isfinite(samples).all():
        return None
    a = nearest_distances(samples[:k], samples[:k], exclude_self=True).mean()
    b = nearest_distances(real[:k], real[:k], exclude_self=True).mean()
    return float(a / b) if b > 0 else None


def trajectory(model: Model, *, n: int, seed: int = 0) -> dict[str, Any]:
    """The x0 prediction D(x; σ) and the state x after each step of the run's own sampler, in user units."""
    cfg = model.config.sample
    denoised, states, levels = [], [], []

    sigma_data = model.denoiser.sigma_data

    def record(info: dict[str, Any]) -> None:
        denoised.append(info["denoised"].detach().cpu().numpy())
        # The state scaled to the data's spread (as c_in scales the network's input), so the picture
        # shows the signal emerging from the noise rather than noise clipped to the value range.
        scale = sigma_data / math.sqrt(sigma_data ** 2 + float(info["sigma_next"]) ** 2)
        states.append(info["x"].detach().cpu().numpy() * scale)
        levels.append(float(info["sigma"]))

    model.sample(n, seed=seed, batch_size=n, normalised=True, callback=record)
    inv = model.normaliser.inverse
    return {"sampler": cfg.sampler, "steps": cfg.steps, "sigmas": levels,
            "denoised": np.stack([np.asarray(inv(d)) for d in denoised]),
            "states": np.stack([np.asarray(inv(s)) for s in states])}


def evaluated_samples(files: RunFiles, model: Model) -> np.ndarray | None:
    """Samples already drawn with the run's own sampler from the checkpoint shown (RUN/eval-samples.npy: by the
    end of training, or by `steadydiff eval`), in normalised units; None when there are none for it."""
    path = files.dir / SAMPLES_FILE
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    cfg = model.config.sample
    want = {"checkpoint": files.checkpoints[-1][1].name, "weights": "ema", "sampler": cfg.sampler,
            "steps": cfg.steps}
    if any(meta.get(k) != v for k, v in want.items()):
        return None
    x = np.load(path, allow_pickle=False)
    if x.shape[1:] != model.item_shape or len(x) < 10:
        return None
    return np.asarray(model.normaliser.forward(x), dtype=np.float32)


def compute(files: RunFiles, *, n: int = N_EVAL) -> Live:
    """Everything model- and data-based, each part skipped with a note when its inputs are missing."""
    t = time.perf_counter()
    live = Live(normaliser=load_normaliser(files), n_eval=n)
    if live.normaliser is None:
        live.model_note = live.data_note = "no normaliser.json yet: the run has not started"
        return live
    live.reference, live.data_note = load_reference(files, live.normaliser)
    ref = live.reference
    live.model, live.model_note = load_model(files)
    model = live.model
    if model is None:
        live.seconds = time.perf_counter() - t
        return live
    with torch.no_grad():
        live.trajectory = trajectory(model, n=8 if model.kind == "vector" else 1)
        if ref is not None:
            best = evaluated_samples(files, model)
            if best is None:
                best = model.sample(n, seed=0, normalised=True, cond=model.conditions(n, seed=0))
            live.memo = memorisation(best, ref)
            real = ref.holdout if len(ref.holdout) >= 3 else ref.train
            live.diversity_ratio = diversity_ratio(best, real)
            if ref.modes is not None and ref.mode_std is not None and np.isfinite(best).all():
                live.modes = mode_stats(np.asarray(model.normaliser.inverse(best)), ref.modes, ref.mode_std)
    live.seconds = time.perf_counter() - t
    return live
