"""Know your model: what the quality figures mean on `digits` and `mnist`, whether the report's verdict flags a
memorising run, and how the fixed validation loss behaves against the training loss.

1. Floor, ceiling, trained: the metrics of `steadydiff.evaluate` (Fréchet distance in the shipped classifier's
   feature space, precision / recall / density / coverage against the held-out items, the near-copy share) for
   real training items against the held-out items (the floor, `Reference.real_data`), for two kinds of noise
   (the ceiling: uniform noise over the data's pixel range; Gaussian noise with the training items' per-pixel
   mean and std, clipped to the pixel range), and for a trained run (EMA weights, heun 18 steps = 35 NFE,
   seed 0, as many samples as the floor has training items). `digits` reuses the run of
   benchmarks/digits_quality.py (benchmarks/out/digits; trained with its config when missing); `mnist` trains
   a short run sized to ~25 minutes on one thread (`MNIST_TRAIN`).
2. Memorisation: `digits` with 40 training items (the same 297 held-out digits as the digits run, written to
   an .npy file so the report can reload the data) trained for `MEMORISE_TRAIN`; `steadydiff.evaluate` and
   `steadydiff report` on it and on the healthy digits run: near-copy share of the samples against the
   held-out items' own share, nearest-neighbour distances, and the report's verdict.
3. Validation loss: from the healthy digits run's metrics.jsonl, how often the fixed validation loss and the
   raw training loss rose between successive logs. The fixed validation loss is deterministic for fixed
   weights; its noise is the standard deviation over K = 8 re-draws of the fixed noise
   (`FixedValidation.build(seed=...)`) at the final checkpoint. Per σ bin: the step at which the validation
   loss of the bin had made 90 % of its improvement between the first and the last validation.

    .venv/bin/python benchmarks/know_your_model.py [--quick] [--reuse]   # --reuse: keep finished runs
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import steadydiff
from _common import OUT, fmt_s, parse_args, table, write_section
from steadydiff.config import load_toml
from steadydiff.data import DataConfig, load_data, split_indices
from steadydiff.errors import TrainingStopped
from steadydiff.evaluate import Reference, evaluate
from steadydiff.metrics import copy_fraction
from steadydiff.metrics.features import SHIPPED_PIXEL_RANGE, extract_features, load_shipped_feature_net, to_net_input
from steadydiff.report import write_report
from steadydiff.report.live import N_EVAL
from steadydiff.train.loop import SIGMA_BINS, make_loss
from steadydiff.train.order import Stream, derive_seed
from steadydiff.train.validation import FixedValidation, sigma_grid

torch.set_num_threads(1)

DIGITS_HOLDOUT = 297
# benchmarks/digits_quality.py's run, reused here (trained with this, its config, when missing).
DIGITS_CONFIG = {"data": {"source": "digits", "holdout": DIGITS_HOLDOUT},
                 "train": {"steps": 3000, "batch_size": 128, "checkpoint_every": 500, "keep_checkpoints": 10}}
# 20 steps at batch 128 ran at 39–40 samples/s on one thread here (load average ~5.5 on 2 cores): 600 × 64 =
# 38,400 samples take ~16 min in the loop, plus validation and the final 500 summary samples (~4 min).
MNIST_TRAIN = {"steps": 600, "batch_size": 64}
MEMORISE_ITEMS = 40
MEMORISE_TRAIN = {"steps": 4000, "batch_size": MEMORISE_ITEMS}  # 4,000 passes over the 40 items
CALL_FILE = "train_call.json"  # this script's record of a run's `steadydiff.train` wall time, for --reuse
NOISE_SEEDS = tuple(range(1, 9))  # K = 8 re-draws of the fixed validation noise
IMPROVED = 0.9  # per-σ: the step at which a bin had made this share of its improvement
VERDICT_ITEM = re.compile(r'<li class="(\w+)"><b>(.*?)</b><span class="answer">(.*?)</span>(.*?)</li>', re.S)
METRICS = [("fd", "FD (classifier)"), ("precision", "precision"), ("recall", "recall"), ("density", "density"),
           ("coverage", "coverage"), ("copy_fraction", "near-copies")]


def f3(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def train_or_reuse(config: dict, out: Path, reuse: bool) -> tuple[dict, float | None]:
    """The run's summary and the wall time of the `steadydiff.train` call (None when a finished run was kept).
    A run the stability guard stopped counts as finished: its summary.json holds the diagnosis ("stopped")."""
    done, timing = out / "summary.json", out / CALL_FILE
    if reuse and done.exists():
        summary = json.loads(done.read_text())
        if "stopped" in summary or summary["steps"] == config["train"]["steps"]:
            print(f"reusing {out}")
            return summary, json.loads(timing.read_text())["train_call_s"] if timing.exists() else None
    if out.exists():  # this script's own run directory: start afresh so the wall time is a whole run's
        shutil.rmtree(out)
    t0 = time.perf_counter()
    try:
        summary = steadydiff.train(config, out=out, progress=False).summary
    except TrainingStopped:
        summary = json.loads(done.read_text())
    call_s = time.perf_counter() - t0
    timing.write_text(json.dumps({"train_call_s": round(call_s, 1)}))
    return summary, call_s


def run_line(name: str, out: Path, summary: dict, call_s: float | None) -> str:
    wall = f"{fmt_s(summary['wall_s'])} in the loop"
    wall += f", {fmt_s(call_s)} for the whole `steadydiff.train` call" if call_s is not None else ""
    return (f"- {name}: `{out.relative_to(OUT.parent.parent)}`, {summary['data']}; {summary['parameters']:,} "
            f"parameters, {summary['steps']:,} steps × batch {summary['batch_size']} "
            f"({summary['samples_seen']:,} samples seen); {wall}.")


def median_rate(out: Path) -> float:
    """The median of the training rates a run logged (samples/s)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(np.median([r["samples_per_s"] for r in records if "samples_per_s" in r]))


def stability(summary: dict) -> str:
    st = summary.get("stability") or {}
    incidents = ", ".join(f"{k} {v}" for k, v in sorted((st.get("incidents") or {}).items())) or "none"
    return (f"incidents {incidents}; {st.get('skipped_steps', 0)} skipped steps, {st.get('rollbacks', 0)} "
            f"rollbacks, LR × {st.get('lr_scale', 1.0):g} at the end")


def guarded_line(summary: dict, call_s: float | None, run: Path) -> str:
    """What the stability guard made of the memorising run (every guard at its defaults)."""
    took = "" if call_s is None else f" in {fmt_s(call_s)}"
    path = run / "incidents.jsonl"
    events = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
    warned = [e for e in events if e["guard"] == "overfitting"]
    if "stopped" in summary:
        return (f"- The memorising run, every guard at its defaults, was **stopped by the stability guard**{took} at "
                f"step {summary['steps']:,}: \"{summary['stopped']}\" ({stability(summary)}).")
    seen = (f"the guard reported overfitting at step {warned[0]['step']:,} (held-out loss {warned[0]['val_loss']:g} "
            f"against its best {warned[0]['best']:g}, training loss {warned[0]['train_loss']:g} against "
            f"{warned[0]['train_at_best']:g} then) and let it train on") if warned else "no overfitting warning"
    return (f"- The memorising run, every guard at its defaults, finished {summary['steps']:,} steps{took}: as it "
            f"memorises its {MEMORISE_ITEMS} items the fixed validation loss on held-out digits rises while the "
            f"training loss falls; {seen} ({stability(summary)}).")


# --------------------------------------------------------------------------------------------------
# 1. Floor, ceiling, trained.


def noise_samples(train: np.ndarray, n: int, lo: float, hi: float) -> dict[str, np.ndarray]:
    """The two ceilings, n items each (seed 0): uniform over the pixel range; per-pixel Gaussian, clipped."""
    rng = np.random.default_rng(0)
    shape = (n, *train.shape[1:])
    mean, std = train.mean(0, dtype=np.float64), train.std(0, dtype=np.float64)
    return {f"uniform noise on {lo:g}..{hi:g}": rng.uniform(lo, hi, shape).astype(np.float32),
            "Gaussian noise, per-pixel mean/std of the training items, clipped":
                np.clip(mean + std * rng.standard_normal(shape), lo, hi).astype(np.float32)}


def floor_ceiling(name: str, out: Path, n: int, steps: int) -> dict[str, Any]:
    """evaluate() on the trained run (floor and samples), the same Reference scoring the two noises."""
    t0 = time.perf_counter()
    res = evaluate(out, samplers=("heun",), nfe=(2 * steps - 1,), n=n, seed=0)
    eval_s = time.perf_counter() - t0
    row = res["table"][0]
    model = steadydiff.load(out)
    ds = load_data(load_toml(out / "config.toml").data)
    ref = Reference(ds, model.normaliser, n)
    for key, value in res["real_data"].items():  # the same reference as evaluate's own
        if isinstance(value, float) and not np.isclose(value, ref.real_data[key], rtol=1e-9, atol=1e-12):
            raise RuntimeError(f"{name}: the floor's {key} differs between evaluate and Reference")
    lo, hi = SHIPPED_PIXEL_RANGE[name]
    rows = [("real training items vs held-out (floor)", res["real_data"])]
    rows += [(label, ref.score(x)) for label, x in noise_samples(ds.train, n, lo, hi).items()]
    rows.append((f"trained run, EMA, {row['solver']} {row['steps']} steps = {row['nfe']} NFE, seed 0", row["metrics"]))
    return {"rows": rows, "n": n, "n_train": len(ds.train), "n_holdout": len(ds.holdout), "eval_s": eval_s,
            "sample_s": row["sample_s"], "result": res}


def floor_table(fc: dict[str, Any]) -> str:
    body = []
    for label, m in fc["rows"]:
        fd = m.get("fd_classifier")
        body.append([label, *(f3(fd) if k == "fd" else pct(m.get(k)) if k == "copy_fraction" else f3(m.get(k))
                              for k, _ in METRICS)])
    return table(["", *(h for _, h in METRICS)], body)


# --------------------------------------------------------------------------------------------------
# 2. Memorisation.


def memorise_data(path: Path) -> None:
    """MEMORISE_ITEMS digits training items and the digits run's held-out items, placed so that the run's own
    split (data.holdout = 297, split_seed 0) holds out exactly those."""
    ds = load_data(DataConfig(source="digits", holdout=DIGITS_HOLDOUT))
    n = MEMORISE_ITEMS + len(ds.holdout)
    train_idx, hold_idx = split_indices(n, DIGITS_HOLDOUT, DataConfig.split_seed)
    arr = np.zeros((n, *ds.item_shape), np.float32)
    arr[train_idx], arr[hold_idx] = ds.train[:MEMORISE_ITEMS], ds.holdout
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def digits_features() -> Callable[[np.ndarray], np.ndarray]:
    """The shipped digits classifier's features, for a run whose data is not called `digits`."""
    net = load_shipped_feature_net("digits")
    if net is None:
        raise RuntimeError("the shipped digits classifier is missing from this installation")
    return lambda x: extract_features(net, to_net_input(x, "digits"))


def verdict_of(report: Path) -> list[tuple[str, str, str]]:
    """(question, answer, text) of each line of the verdict of a written report."""
    text = report.read_text(encoding="utf-8")
    block = text.split('<ul class="verdict">', 1)[1].split("</ul>", 1)[0]
    return [(html.unescape(q), html.unescape(a), html.unescape(t)) for _, q, a, t in VERDICT_ITEM.findall(block)]


def memorisation_row(label: str, out: Path, res: dict[str, Any], n_eval: int) -> dict[str, Any]:
    """evaluate's memorisation figures, the median distances of real items, and the report's verdict."""
    t0 = time.perf_counter()
    report = write_report(out, n_eval=n_eval)
    report_s = time.perf_counter() - t0
    verdict = verdict_of(report)
    model = steadydiff.load(out)
    ds = load_data(load_toml(out / "config.toml").data)
    norm = lambda x: np.asarray(model.normaliser.forward(x), np.float64).reshape(len(x), -1)  # noqa: E731
    real = copy_fraction(norm(ds.holdout), norm(ds.train[:5000]))
    m = res["table"][0]["metrics"]
    return {"label": label, "n_train": len(ds.train), "metrics": m, "baseline": res["real_data"]["copy_fraction"],
            "held_nn": real["median_sample_nn"], "train_nn": real["median_train_nn"], "threshold": real["threshold"],
            "fd": m.get("fd_classifier", m.get("fd_user")), "verdict": verdict, "report_s": report_s,
            "memorising": next((v for v in verdict if v[0] == "Memorising?"), ("Memorising?", "missing", ""))}


# --------------------------------------------------------------------------------------------------
# 3. Validation loss.


def validation_redraws(out: Path, seeds: tuple[int, ...], *, ema: bool) -> dict[str, Any]:
    """The fixed validation loss of the final checkpoint with the run's own noise and with each of `seeds`."""
    cfg = load_toml(out / "config.toml")
    model = steadydiff.load(out, ema=ema)
    ds = load_data(cfg.data)
    source = ds.holdout if len(ds.holdout) else ds.train
    items = torch.as_tensor(np.asarray(model.normaliser.forward(source[:cfg.train.val_items]), np.float32))
    loss_fn = make_loss(cfg)

    def at(seed: int) -> dict:
        return FixedValidation.build(items, loss_fn, cfg.diffusion.sigma_data, bins=SIGMA_BINS,
                                     seed=seed).evaluate(model.denoiser, loss_fn)

    own = at(derive_seed(cfg.data.split_seed, Stream.VALIDATION))  # the noise the run validated with
    redraws = [at(s) for s in seeds]
    losses = np.array([r["loss"] for r in redraws])
    bins = np.array([r["bins"] for r in redraws])
    centres, _ = sigma_grid(loss_fn, cfg.diffusion.sigma_data, SIGMA_BINS)
    return {"own": own, "losses": losses, "std": float(losses.std(ddof=1)), "bin_std": bins.std(0, ddof=1),
            "centres": centres.tolist(), "step": model.step}


def rises(values: list[float], threshold: float = 0.0) -> int:
    return int((np.diff(np.asarray(values)) > threshold).sum())


def improved_at(steps: list[int], values: list[float], share: float) -> int | None:
    """The first step at which `values` had made `share` of its change from the first to the last value."""
    first, last = values[0], values[-1]
    if not last < first:
        return None
    target = first - share * (first - last)
    return next(s for s, v in zip(steps, values, strict=True) if v <= target)


def validation_study(out: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in records if "val_loss" in r]
    logged = [r for r in records if "loss" in r]
    t0 = time.perf_counter()
    raw, ema = validation_redraws(out, seeds, ema=False), validation_redraws(out, seeds, ema=True)
    seconds = time.perf_counter() - t0
    final = val[-1]
    if final["step"] != raw["step"]:
        raise RuntimeError(f"the last validation (step {final['step']}) is not at the final checkpoint")
    steps = [r["step"] for r in val]
    val_steps = set(steps)
    curves = [
        ("fixed validation loss, raw weights (`val_loss`)", [r["val_loss"] for r in val], raw["std"]),
        ("fixed validation loss, EMA weights (`val_loss_ema`)", [r["val_loss_ema"] for r in val], ema["std"]),
        (f"training loss, every {logged[1]['step'] - logged[0]['step']} steps (`loss`)",
         [r["loss"] for r in logged], None),
        ("training loss at the validation steps", [r["loss"] for r in logged if r["step"] in val_steps], None),
    ]
    per_bin = []
    for b in range(SIGMA_BINS):
        v = [r["val_loss_bins"][b] for r in val]
        t = [r["loss_bins"][b] for r in logged]
        per_bin.append({"bin": b + 1, "sigma": raw["centres"][b], "first": v[0], "last": v[-1],
                        "noise": float(raw["bin_std"][b]), "step": improved_at(steps, v, IMPROVED),
                        "train_step": improved_at([r["step"] for r in logged], t, IMPROVED),
                        "rises": rises(v, float(raw["bin_std"][b]))})
    return {"curves": curves, "raw": raw, "ema": ema, "final": final, "first_step": steps[0], "n_val": len(val),
            "per_bin": per_bin, "seconds": seconds, "seeds": seeds,
            "val_items": load_toml(out / "config.toml").train.val_items,
            "log_every": logged[1]["step"] - logged[0]["step"]}


def validation_text(vs: dict[str, Any]) -> list[str]:
    raw, ema, final, seeds = vs["raw"], vs["ema"], vs["final"], vs["seeds"]
    rows = []
    for label, values, noise in vs["curves"]:
        rows.append([label, len(values), f"{rises(values)} of {len(values) - 1}",
                     "—" if noise is None else f"{rises(values, noise)} of {len(values) - 1}",
                     "—" if noise is None else f"{rises(values, 2 * noise)} of {len(values) - 1}",
                     "—" if noise is None else f"{noise:.5f} ({100 * noise / values[-1]:.2f}%)"])
    bins = [[p["bin"], f"{p['sigma']:.3g}", f"{p['first']:.4f}", f"{p['last']:.4f}",
             f"{100 * (p['first'] - p['last']) / p['first']:.1f}%", f"{p['noise']:.4f}",
             "—" if p["step"] is None else f"{p['step']:,}", f"{p['rises']} of {vs['n_val'] - 1}",
             "—" if p["train_step"] is None else f"{p['train_step']:,}"] for p in vs["per_bin"]]
    order = sorted((p for p in vs["per_bin"] if p["step"] is not None), key=lambda p: (p["step"], p["bin"]))
    last = [p for p in order if p["step"] == order[-1]["step"]] if order else []
    by_train = sorted((p for p in vs["per_bin"] if p["train_step"] is not None),
                      key=lambda p: (p["train_step"], p["bin"]))
    trained = ", ".join(f"bin {p['bin']} (σ ≈ {p['sigma']:.3g}) at step {p['train_step']:,}" for p in by_train)
    return [
        f"The fixed validation loss uses the first {vs['val_items']} held-out digits, each at the {SIGMA_BINS} σ-bin "
        "centres, with noise "
        f"drawn once from a fixed seed: for fixed weights it is deterministic. Re-evaluated at the final checkpoint "
        f"(step {raw['step']:,}) with the run's own noise it gives {raw['own']['loss']:.6f} (raw weights; logged: "
        f"{final['val_loss']:.6f}) and {ema['own']['loss']:.6f} (EMA; logged: {final['val_loss_ema']:.6f}). "
        f"With K = {len(seeds)} other noise seeds ({seeds[0]}..{seeds[-1]}) it ranges "
        f"{raw['losses'].min():.5f}..{raw['losses'].max():.5f} (raw), std **{raw['std']:.5f}**; EMA std "
        f"**{ema['std']:.5f}**. That std is the noise used below: a rise larger than it is more than a different "
        "draw of the fixed noise could explain. It measures how much the level depends on the draw; successive "
        "validations share one draw, so as a threshold for calling a rise noise it is on the generous side. "
        f"({fmt_s(vs['seconds'])} for the 2 × {len(seeds) + 1} "
        "evaluations.)",
        "",
        table(["curve", "points", "rises", "rises > noise (1 std)", "rises > 2 std",
               f"noise (std over K = {len(seeds)})"], rows),
        "",
        f"Per σ bin (8 equal-probability bins of the training σ distribution, bin 1 the lowest σ): the fixed "
        f"validation loss (raw weights) at the first validation (step {vs['first_step']:,}) and the last, and the "
        f"step at which the bin had made {100 * IMPROVED:.0f}% of that improvement; the same for the training "
        f"loss of the bin (logged every {vs['log_every']} steps from step {vs['log_every']}, so its improvement is "
        "counted from there).",
        "",
        table(["bin", "σ centre", f"val loss, step {vs['first_step']:,}", f"step {raw['step']:,}", "improvement",
               "noise (std)", f"{100 * IMPROVED:.0f}% reached at step", "rises > noise",
               f"training loss: {100 * IMPROVED:.0f}% at step"], bins),
        "",
        "Learnt last by the fixed validation loss (the latest step to reach 90 % of its improvement after step "
        f"{vs['first_step']:,}): "
        + (", ".join(f"bin {p['bin']} (σ ≈ {p['sigma']:.3g})" for p in last) + f", at step {order[-1]['step']:,}."
           if last else "no bin improved."),
        "",
        f"By the training loss per bin, counted from step {vs['log_every']}, the order is: "
        + (trained + "." if by_train else "no bin improved."),
    ]


# --------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [("--reuse", {
        "action": "store_true", "help": "keep finished runs in benchmarks/out instead of training them afresh"})])
    t_all = time.perf_counter()
    if args.quick:
        n, steps, n_report, seeds = 40, 3, 10, NOISE_SEEDS[:2]
        toy = {"val_every": 5, "log_every": 5, "val_items": 16, "sample_metrics_every": 0}
        cheap = {"sampler": "euler", "steps": 1, "grid_n": 4}  # the 500 summary samples at the end of training
        digits_cfg = {"data": {"source": "digits", "holdout": DIGITS_HOLDOUT},
                      "train": {"steps": 20, "batch_size": 16, **toy}, "sample": cheap}
        mnist_cfg = {"data": {"source": "mnist"}, "train": {"steps": 3, "batch_size": 8, **toy}, "sample": cheap}
        mem_train = {"steps": 20, "batch_size": MEMORISE_ITEMS, **toy}
        digits_out, mnist_out, mem_out = OUT / "kym-digits-quick", OUT / "kym-mnist-quick", OUT / "kym-memorise-quick"
    else:
        n, steps, n_report, seeds = 500, 18, N_EVAL, NOISE_SEEDS
        digits_cfg, mnist_cfg = DIGITS_CONFIG, {"data": {"source": "mnist"}, "train": dict(MNIST_TRAIN)}
        mem_train = dict(MEMORISE_TRAIN)
        digits_out, mnist_out, mem_out = OUT / "digits", OUT / "kym-mnist", OUT / "kym-memorise"
    mem_path = mem_out.with_name(mem_out.name + "-data.npy")
    mem_cfg = {"data": {"source": str(mem_path), "holdout": DIGITS_HOLDOUT}, "train": mem_train,
               **({"sample": cheap} if args.quick else {})}

    # The runs: the healthy digits run is digits_quality.py's, kept whenever it is finished.
    digits_sum, digits_s = train_or_reuse(digits_cfg, digits_out, reuse=args.reuse or not args.quick)
    mnist_sum, mnist_s = train_or_reuse(mnist_cfg, mnist_out, reuse=args.reuse)
    memorise_data(mem_path)
    # Every guard at its defaults: a held-out loss that rises while the training loss falls is overfitting.
    mem_sum, mem_s = train_or_reuse(mem_cfg, mem_out, reuse=args.reuse)

    # 1. Floor, ceiling, trained.
    fcs = {name: floor_ceiling(name, out, n, steps) for name, out in (("digits", digits_out), ("mnist", mnist_out))}

    # 2. Memorisation: evaluate (the healthy run's result is section 1's) and the report's verdict.
    t0 = time.perf_counter()
    mem_res = evaluate(mem_out, samplers=("heun",), nfe=(2 * steps - 1,), n=n, seed=0, features=digits_features())
    mem_eval_s = time.perf_counter() - t0
    memo = [memorisation_row("healthy: digits run", digits_out, fcs["digits"]["result"], n_report),
            memorisation_row(f"memorising: {MEMORISE_ITEMS} training digits", mem_out, mem_res, n_report)]

    # 3. Validation loss of the healthy digits run.
    vs = validation_study(digits_out, seeds)
    total_s = time.perf_counter() - t_all

    # Report.
    lines = [
        "Runs (EMA weights everywhere):",
        run_line("digits (healthy)", digits_out, digits_sum, digits_s)
        + ("" if args.quick else " The run of `benchmarks/digits_quality.py`, reused as it is."),
        run_line("mnist", mnist_out, mnist_sum, mnist_s)
        + f" Config `{json.dumps(mnist_cfg)}`, everything else default: a short run sized to ~25 minutes on one "
          f"thread here (it trained at {median_rate(mnist_out):.0f} samples/s, the median of its logged rates), far "
          "shorter than a default run (3,000 × 128), so its samples are not the model's best.",
        run_line(f"memorising digits ({MEMORISE_ITEMS} training items)", mem_out, mem_sum, mem_s)
        + f" Config `{json.dumps({'train': mem_cfg['train']})}`; the data file holds "
          f"{MEMORISE_ITEMS} training digits and the same {DIGITS_HOLDOUT} held-out digits as the digits run. "
          f"Stability: {stability(mem_sum)}.",
        guarded_line(mem_sum, mem_s, mem_out),
        "",
        "### Floor, ceiling and trained runs",
        "",
        f"`steadydiff.evaluate(run, samplers=('heun',), nfe=({2 * steps - 1},), n={n}, seed=0)` gives the floor and "
        f"the trained row; the noise rows are scored by the same `steadydiff.evaluate.Reference` (n = {n}). FD: "
        "Fréchet distance in the penultimate features of the shipped classifier, against the held-out items; "
        "precision / recall / density / coverage (k = 5) in the same features; near-copies: the share of items "
        "closer (normalised pixels) to a training item than 1/3 of the median training-set nearest-neighbour "
        "distance — for the floor row, the held-out items' own share. Noise and samples are clipped to the pixel "
        "range, as saving them as images would. Precision and density only ask whether items land inside the "
        "real items' k-nearest-neighbour balls, however few of the real items they cover; recall, coverage and FD "
        "see the rest.",
    ]
    for name, fc in fcs.items():
        lines += ["", f"**{name}** ({fc['n_train']:,} training / {fc['n_holdout']:,} held-out items; floor: {fc['n']} "
                      f"training items against the held-out ones; samples: {fc['n']}):", "",
                  floor_table(fc), "",
                  f"evaluate: {fmt_s(fc['eval_s'])} ({fmt_s(fc['sample_s'])} of it sampling)."]
    mem_rows = []
    for r in memo:
        m = r["metrics"]
        mem_rows.append([r["label"], f"{r['n_train']:,}", pct(m["copy_fraction"]), pct(r["baseline"]),
                         f"{m['median_nn_distance']:.3f}", f"{r['held_nn']:.3f}", f"{r['train_nn']:.3f}",
                         f"{r['threshold']:.3f}", f3(r["fd"]), f3(m.get("recall")),
                         f"{r['memorising'][1]}: {r['memorising'][2]}"])
    lines += [
        "",
        "### Memorisation: flagged or not",
        "",
        f"`steadydiff.evaluate` (heun {steps} steps, {n} samples, seed 0; the memorising run with `features=` the "
        "shipped digits classifier, since its data is a file, so FD and recall are in the same space) and "
        f"`steadydiff report` (its own {n_report} samples at 35 NFE) on both runs. Distances are in "
        "normalised pixels ([-1, 1]), medians of nearest-neighbour distances to the training items.",
        "",
        table(["run", "training items", "near-copies (samples)", "held-out items' own (baseline)",
               "median NN, sample → train", "median NN, held-out → train", "median NN, train → train",
               "near-copy threshold", "FD (classifier)", "recall", "report verdict: Memorising?"], mem_rows),
        "",
        "The whole verdict of each report:",
        "",
    ]
    for r in memo:
        lines.append(f"- {r['label']}: " + "; ".join(f"**{q}** {a} ({t})" for q, a, t in r["verdict"]))
    lines += ["", f"evaluate of the memorising run: {fmt_s(mem_eval_s)}; reports: {fmt_s(memo[0]['report_s'])} "
                  f"(healthy), {fmt_s(memo[1]['report_s'])} (memorising).",
              "", "### Validation loss against training loss (healthy digits run)", "", *validation_text(vs),
              "", f"Whole script: {fmt_s(total_s)}."]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("know_your_model", "Know your model: floor, ceiling, trained runs, memorisation, validation loss",
                      body)


if __name__ == "__main__":
    main()
