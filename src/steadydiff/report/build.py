"""The report's sections, one function each: run files (and live figures) in, an HTML <section> out.

Section ids, in page order: overview, verdict, loss, gradients, samples, metrics, incidents, quality-nfe,
memorisation, trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics.reference import RANKED, against_floor, own_error
from . import html as h
from . import plots, verdict
from .files import RunFiles
from .live import MAX_REFERENCE, Live

SECTION_IDS = ("overview", "verdict", "loss", "gradients", "samples", "metrics", "incidents", "quality-nfe",
               "memorisation", "trajectory")
MAX_GRIDS = 12  # sample grids shown; more are thinned evenly (the first and last always shown)
MAX_INCIDENT_ROWS = 200
# metrics.jsonl fields drawn elsewhere; any other number logged there is drawn under "Metric curves".
_KNOWN_FIELDS = {"step", "samples_seen", "loss", "lr", "grad_norm", "wall_s", "loss_bins", "val_loss",
                 "val_loss_bins", "val_loss_ema", "val_loss_ema_bins", "guard.lr_scale", "guard.rollbacks",
                 "guard.skipped", "update_ratio"}
_KNOWN_PREFIXES = ("weight_norms.", "sample_metrics.")
# In-training sample metrics, in the order they are drawn (after the run's main metric); evaluate.default_metric
# picks the main one in this order of preference when summary.json does not name it yet.
_SAMPLE_METRICS = ("fd_classifier", "high_quality", "modes_covered", "fd_data", "kid", "mmd", "precision",
                   "recall", "density", "coverage", "copy_fraction")
_MAIN_METRICS = ("fd_classifier", "high_quality", "fd_data", "mmd")
MAX_SAMPLE_PANELS = 9
# Scores shown beside the main distance in the quality-against-NFE table where eval computed them (series; tables)
_EXTRA_QUALITY = ("discriminative", "predictive", "acf_distance", "spectrum_distance", "column_shapes",
                  "pair_trends")
FLOOR_WORDS = {"at": "at the floor (within its noise)", "above": "above", "below": "below: misleading here"}


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s} s"
    hours, m = divmod(m, 60)
    return f"{hours} h {m} min"


def sample_metric_series(metrics: Sequence[Mapping[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(steps, values) of each number in metrics.jsonl's `sample_metrics`, known metrics first."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for r in metrics:
        sm = r.get("sample_metrics")
        if not isinstance(sm, Mapping) or "step" not in r:
            continue
        for k, v in sm.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("seconds", "modes_total"):
                xs, ys = found.setdefault(k, ([], []))
                xs.append(float(r["step"]))
                ys.append(float(v))
    order = [k for k in _SAMPLE_METRICS if k in found] + sorted(k for k in found if k not in _SAMPLE_METRICS)
    return {k: (np.asarray(found[k][0]), np.asarray(found[k][1])) for k in order}


def main_sample_metric(files: RunFiles, series: Mapping[str, Any]) -> str | None:
    """The metric the run's best evaluation is chosen by: summary.json's, else the first available of
    evaluate.default_metric's order."""
    named = ((files.summary or {}).get("sample_metrics") or {}).get("metric")
    if named in series:
        return named
    return next((m for m in _MAIN_METRICS if m in series), None)


def last_with(metrics: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    for r in reversed(metrics):
        if key in r:
            return r
    return None


def _x(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float], list[int]]:
    rows = [r for r in records if isinstance(r.get(key), int | float) and "samples_seen" in r]
    return ([float(r["samples_seen"]) for r in rows], [float(r[key]) for r in rows],
            [int(r.get("step", 0)) for r in rows])


# 1. Overview -------------------------------------------------------------------------------------------
def status(files: RunFiles) -> tuple[str, str]:
    """(label, css class) of the run's state."""
    if files.stopped:
        return "stopped by the stability guard", "stopped"
    if files.in_progress:
        return "in progress", "progress"
    return "finished", "done"


def overview(files: RunFiles, live: Live) -> str:
    s, cfg, last = files.summary or {}, files.config, files.metrics[-1] if files.metrics else {}
    label, _ = status(files)
    planned = cfg.train.steps if cfg is not None else None
    step = s.get("steps", last.get("step", 0))
    model = live.model
    backbone = s.get("backbone") or (type(model.denoiser.backbone).__name__ if model is not None else None) \
        or (f"net.kind = {cfg.net.kind}" if cfg is not None else "—")
    params = s.get("parameters")
    if params is None and model is not None:
        params = sum(p.numel() for p in model.denoiser.backbone.parameters())
    sampler = s.get("sampler") or ({"name": cfg.sample.sampler, "steps": cfg.sample.steps} if cfg else None)
    sampler_text = "—" if not sampler else (f"{sampler['name']}, {sampler['steps']} steps"
                                            + (f" ({sampler['nfe']} NFE)" if "nfe" in sampler else ""))
    rows = [
        ("Status", label + ("" if not files.in_progress else
                            f": last logged step {last.get('step', 0):,}" + (f" of {planned:,}" if planned else ""))),
        ("Data", s.get("data") or files.dataset.get("description") or (cfg.data.source if cfg else "—")),
        ("Backbone", backbone),
        ("Parameters", h.fmt(params) if params is not None else "—"),
        ("Steps", f"{step:,}" + (f" of {planned:,}" if planned and planned != step else "")),
        ("Samples seen", h.fmt(s.get("samples_seen", last.get("samples_seen")))),
        ("Batch size", h.fmt(s.get("batch_size", cfg.train.batch_size if cfg else None))),
        ("Wall time", duration(s.get("wall_s", last.get("wall_s")))),
        ("Sampler", sampler_text),
    ]
    if cfg is not None:
        rows.append(("Diffusion", f"{cfg.diffusion.parameterization} parameterisation, σ_data "
                                  f"{h.fmt(cfg.diffusion.sigma_data)}, {cfg.diffusion.noise} σ, "
                                  f"{cfg.diffusion.weighting} weighting"))
        rows.append(("Optimiser", f"{cfg.train.optimizer}, lr {h.fmt(cfg.train.lr)}, {cfg.train.lr_schedule} "
                                  f"schedule, EMA half-life {h.fmt(cfg.train.ema_halflife_samples)} samples"))
    val = last_with(files.metrics, "val_loss_ema")
    if val is not None:
        rows.append(("Validation loss", f"{h.fmt(val['val_loss_ema'])} (EMA), {h.fmt(val.get('val_loss'))} (raw) "
                                        f"at step {val.get('step', 0):,}"))
    best = (files.summary or {}).get("best_sample_metric")
    if isinstance(best, dict) and "step" in best:
        rows.append(("Best sample metric", f"{best.get('metric')} {h.fmt(best.get('value'))} at step {best['step']:,}"
                                           + (f" (checkpoint {best['checkpoint']})" if best.get("checkpoint")
                                              else " (no checkpoint of that step kept)")))
    ckpts = ", ".join(p.name for _, p in files.checkpoints) or "none yet"
    rows.append(("Checkpoints", ckpts))
    body = h.key_values(rows)
    if files.stopped:
        body += h.note(f"The stability guard stopped this run: {files.stopped}")
    if files.in_progress:
        body += h.note("The run is still going (no summary.json yet): figures use the metrics logged so far.")
    for n in files.notes:
        body += h.note(n)
    return h.section("overview", "1. Overview", body)


# 2. Verdict --------------------------------------------------------------------------------------------
def verdicts(files: RunFiles, live: Live) -> list[verdict.Verdict]:
    m = files.metrics
    x_ema, v_ema, _ = _x(m, "val_loss_ema")
    x_raw, v_raw, st_raw = _x(m, "val_loss")
    x_tr, v_tr, _ = _x(m, "loss")
    conv = verdict.converged(x_ema, v_ema, what="fixed validation loss (EMA weights)") if v_ema else \
        verdict.converged(x_raw, v_raw)
    last_loss = m[-1].get("loss") if m else None
    div = verdict.diverging(x_raw, v_raw, steps=st_raw, last_step=int(m[-1].get("step", 0)) if m else 0,
                            incidents=files.incidents, stopped=files.stopped,
                            last_loss=float(last_loss) if isinstance(last_loss, int | float) else None,
                            train_x=x_tr, train_loss=v_tr)
    q = (files.summary or {}).get("quality", {})
    if live.memo is not None:
        mem = verdict.memorising(live.memo["copy_fraction"], live.memo["heldout_fraction"],
                                 n_samples=live.memo["n_samples"])
    else:
        mem = verdict.memorising(q.get("copy_fraction"), (q.get("real_data") or {}).get("copy_fraction"),
                                 n_samples=q.get("n_samples"))
    modes = live.modes or (q if "modes_covered" in q else None)
    if modes is not None:
        col = verdict.mode_collapse(modes_covered=modes["modes_covered"], modes_total=modes["modes_total"],
                                    high_quality=modes.get("high_quality"),
                                    smallest_share=modes.get("smallest_mode_share"))
    else:
        col = verdict.mode_collapse(diversity_ratio=live.diversity_ratio)
    return [conv, div, mem, col, verdict.close_to_real(q), past_best_verdict(files)]


def past_best_verdict(files: RunFiles) -> verdict.Verdict:
    series = sample_metric_series(files.metrics)
    metric = main_sample_metric(files, series)
    if metric is None:
        return verdict.past_best([], [], metric="the sample metric", higher_is_better=False)
    best = (files.summary or {}).get("best_sample_metric") or {}
    steps, values = series[metric]
    return verdict.past_best(steps.astype(int).tolist(), values.tolist(), metric=metric,
                             higher_is_better=RANKED.get(metric, False),
                             checkpoint=best.get("checkpoint") if best.get("metric") == metric else None)


def verdict_section(files: RunFiles, live: Live) -> str:
    items = []
    for v in verdicts(files, live):
        cls = "unclear" if v.answer == "unclear" else "alarm" if v.alarm else "ok"
        items.append((v.question, v.answer, v.text, cls))
    body = h.verdict_list(items)
    body += h.para("How each answer is decided: converged = the fixed validation loss (EMA weights) moves no more "
                   "than max(2 standard errors of a straight-line fit, 1%) over the last 20% of training; "
                   "diverging = the guard stopped the run, a rollback in the last 20% of steps, or the raw "
                   "validation loss ends ≥ 1.5× its best (or ≥ 1.1× and still rising); memorising = near-copies "
                   "≥ 2× held-out real data's share and ≥ 5 points above it; mode collapse = known modes without "
                   "samples while most samples sit on a mode, or sample diversity below 0.5× the data's; close to real "
                   "data = the main distance within the noise of real data's floor at the same number of items (2× "
                   "its spread over draws of real items; 2 standard errors for KID), an alarm beyond 2× the floor; "
                   "past its best = the sample metric measured during training ends worse than its best by more than "
                   "max(20%, 3× its median change between evaluations).")
    if files.in_progress:
        body += h.note("The run is still going: these answers describe it as of the last logged step.")
    return h.section("verdict", "2. Verdict", body)


# 3. Loss curves ----------------------------------------------------------------------------------------
def loss_section(files: RunFiles) -> str:
    m = files.metrics
    if not m:
        return h.section("loss", "3. Loss curves", h.note("no metrics logged yet (metrics.jsonl is empty or missing)"))
    body = ""
    png = plots.loss_curves(m)
    if png:
        body += h.figure(png, "Training loss (fresh σ and noise every step) and the fixed validation loss (fixed "
                              "held-out items, noise and σ grid: it moves only when the model does); log scale.")
        _, v_ema, st_ema = _x(m, "val_loss_ema")
        if v_ema:
            body += h.para(verdict.loss_reading(st_ema, v_ema))
    png = plots.bin_curves(m)
    if png:
        body += h.heading("Per noise level")
        body += h.figure(png, "Loss per σ bin: 8 equal-probability bins of the training σ distribution, bin 1 "
                              "the lowest σ (fine detail), bin 8 the highest (global structure); log scale.")
        first, last = next((r for r in m if "val_loss_ema_bins" in r), None), last_with(m, "val_loss_ema_bins")
        if first is not None and last is not None and first is not last:
            rows = []
            for b, (a, z) in enumerate(zip(first["val_loss_ema_bins"], last["val_loss_ema_bins"], strict=False)):
                change = 100 * (z - a) / a if a else float("nan")
                rows.append((f"bin {b + 1}", float(a), float(z), f"{change:+.1f}%"))
            body += h.para(f"Validation loss (EMA) per σ bin, first validation (step {first['step']:,}) against "
                           f"the last (step {last['step']:,}): the bins that moved least are learnt last.")
            body += h.table(["σ bin (1 = lowest)", "first", "last", "change"], rows)
    if "val_loss" not in {k for r in m for k in r}:
        body += h.note("no validation loss logged yet (it is logged every train.val_every steps)")
    body += condition_html(m)
    return h.section("loss", "3. Loss curves", body)


def condition_html(m: Sequence[Mapping[str, Any]]) -> str:
    """A conditional run: how much the network uses its condition, and the validation loss per class."""
    png = plots.condition_curves(m)
    if png is None:
        return ""
    last = last_with(m, "cond_gain")
    body = h.heading("Condition")
    body += h.figure(png, "Fixed validation loss with each item's own condition, with none and with another item's. "
                          "A network that uses its condition sits clearly below the other two; one that ignores it "
                          "(labels shuffled by a data bug, an embedding never read) lies on them.")
    body += h.para(f"At step {last['step']:,} another item's condition raises the loss by "
                   f"{100 * last['cond_gain']:.1f} % (cond_gain; the guard's canary fires below guard.cond_min_gain).")
    classes = last.get("val_loss_classes") if last is not None else None
    if classes:
        mean = float(np.mean(list(classes.values())))
        rows = sorted(((name, float(v), f"{100 * (v - mean) / mean:+.1f}%") for name, v in classes.items()),
                      key=lambda r: -r[1])
        body += h.para("Validation loss per class at that step, hardest first:")
        body += h.table(["class", "loss", "vs the mean"], rows)
    return body


# 4. Gradients and LR -----------------------------------------------------------------------------------
def gradient_section(files: RunFiles) -> str:
    png = plots.grad_lr(files.metrics)
    if png is None:
        return h.section("gradients", "4. Gradient norm and learning rate", h.note("no metrics logged yet"))
    body = h.figure(png, "Gradient norm before clipping (the last step of each log window) and the learning rate "
                         "applied; the guard's LR scale is drawn in red when a rollback lowered it; the update/weight "
                         "ratio and weight norms per block where the run logs them.")
    grads = [(r["step"], r["grad_norm"]) for r in files.metrics if isinstance(r.get("grad_norm"), int | float)
             and "step" in r]
    if grads:
        clip = files.config.train.grad_clip if files.config is not None else None
        body += h.para(verdict.gradient_reading([s for s, _ in grads], [g for _, g in grads], clip))
    g = last_with(files.metrics, "guard")
    st = (files.summary or {}).get("stability")
    if isinstance(st, dict):  # the final word; metrics.jsonl ends before the steps a rollback undid
        body += h.para(f"Stability guard, whole run: {st.get('skipped_steps', 0)} steps skipped, "
                       f"{st.get('rollbacks', 0)} rollbacks, LR scale {h.fmt(st.get('lr_scale', 1.0))}.")
    elif g is not None and isinstance(g["guard"], dict):
        gd = g["guard"]
        body += h.para(f"Stability guard at step {g.get('step', 0):,}: {gd.get('skipped', 0)} steps skipped, "
                       f"{gd.get('rollbacks', 0)} rollbacks, LR scale {h.fmt(gd.get('lr_scale', 1.0))}.")
    if files.config is not None:
        clip = files.config.train.grad_clip
        body += h.para(f"Gradient clipping: {'off' if clip <= 0 else f'at norm {h.fmt(clip)}'}.")
    return h.section("gradients", "4. Gradient norm and learning rate", body)


# 5. Sample grids ---------------------------------------------------------------------------------------
def thin(items: Sequence[Any], k: int) -> list[Any]:
    """At most k items, evenly spaced, the first and last kept."""
    if len(items) <= k:
        return list(items)
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def samples_section(files: RunFiles) -> str:
    grids = files.sample_grids
    if not grids:
        return h.section("samples", "5. Samples across training",
                         h.note("no sample grids yet (written every train.sample_every steps and at the end)"))
    shown = thin(grids, MAX_GRIDS)
    figs = []
    seen = {int(r["step"]): r.get("samples_seen") for r in files.metrics if "step" in r}
    for step, path in shown:
        png = path.read_bytes()
        if not png.startswith(h.PNG_SIGNATURE):
            continue
        at = f" ({seen[step]:,} samples seen)" if isinstance(seen.get(step), int) else ""
        figs.append(h.figure(png, f"step {step:,}{at}"))
    body = f'<div class="grids{"" if files.kind == "image" else " wide"}">' + "".join(figs) + "</div>"
    what = "EMA weights, fixed seeds" + (f", {files.config.sample.sampler} with {files.config.sample.steps} steps"
                                        if files.config is not None else "")
    body = h.para(f"Samples from the {what}, so grids differ only because the model does.") + body
    if len(shown) < len(grids):
        body += h.note(f"{len(shown)} of {len(grids)} grids shown, evenly spaced")
    return h.section("samples", "5. Samples across training", body)


# 6. Metric curves --------------------------------------------------------------------------------------
def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def other_series(metrics: Sequence[Mapping[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numbers in metrics.jsonl that the other sections do not draw (logged at least twice), by name."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for r in metrics:
        if "samples_seen" not in r:
            continue
        for k, v in _flatten(r).items():
            if k not in _KNOWN_FIELDS and not k.startswith(_KNOWN_PREFIXES):
                xs, ys = found.setdefault(k, ([], []))
                xs.append(float(r["samples_seen"]))
                ys.append(v)
    return {k: (np.asarray(x), np.asarray(y)) for k, (x, y) in sorted(found.items()) if len(x) >= 2}


def _key_values(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        rows = []
        for k, v in obj.items():
            rows.extend(_key_values(v, f"{prefix}{k}."))
        return rows
    if isinstance(obj, list) and obj and all(isinstance(v, int | float) for v in obj):
        return [(prefix.rstrip("."), ", ".join(h.fmt(v) for v in obj))]
    if isinstance(obj, list):
        return [(prefix.rstrip("."), f"{len(obj)} entries")]
    return [(prefix.rstrip("."), obj)]


def evaluation_html(ev: Any) -> str:
    """eval.json of whatever shape: lists of flat records become tables, the rest key/value rows."""
    body = ""
    tables = {k: v for k, v in ev.items() if isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v)} \
        if isinstance(ev, Mapping) else ({"results": ev} if isinstance(ev, list) else {})
    for name, rows in tables.items():
        cols = list(dict.fromkeys(k for r in rows for k in r if not isinstance(r[k], Mapping | list)))
        body += h.heading(f"eval.json: {name}")
        body += h.table(cols, [[r.get(c) for c in cols] for r in rows[:200]])
    if isinstance(ev, Mapping):
        rest = {k: v for k, v in ev.items() if k not in tables}
        if rest:
            body += h.heading("eval.json")
            body += h.table(["figure", "value"], _key_values(rest)[:200])
    return body


def sample_metrics_html(files: RunFiles) -> str:
    """The in-training sample metrics: curves with the real-data floor, the best evaluation, what was skipped."""
    series = sample_metric_series(files.metrics)
    skipped = sum(1 for r in files.metrics if "sample_metrics_skipped" in r)
    info = (files.summary or {}).get("sample_metrics") or {}
    if not series:
        if skipped:
            return h.heading("During training: sample metrics") + h.note(
                f"{skipped} sample-metric evaluation(s) were due and all were skipped to keep evaluation within "
                "train.eval_budget of the wall time")
        return h.note(f"no sample metrics during training: {info['unavailable']}") if info.get("unavailable") else ""
    main = main_sample_metric(files, series)
    shown = dict(list({**({main: series[main]} if main else {}), **series}.items())[:MAX_SAMPLE_PANELS])
    best = files.summary.get("best_sample_metric") if files.summary else None
    best_mark = (best["metric"], float(best["step"]), float(best["value"])) \
        if isinstance(best, dict) and isinstance(best.get("value"), int | float) else None
    floors = {k: v for k, v in (info.get("real_data") or {}).items() if isinstance(v, int | float)}
    body = h.heading("During training: sample metrics")
    cfg = files.config.train if files.config is not None else None
    setting = (f"{info.get('n', cfg.sample_metrics_n if cfg else '?')} samples of the EMA weights "
               f"({info.get('sampler', cfg.sample_metrics_sampler if cfg else '?')}, "
               f"{info.get('steps', cfg.sample_metrics_steps if cfg else '?')} steps)")
    body += h.para(f"At validation points, {setting} from the same seeds every time, scored against the held-out "
                   "data as steadydiff eval does: the curves move because the model does, not because fresh noise "
                   "was drawn, though their level keeps the offset of this one set of seeds. "
                   + (f"The run's main metric is {main}." if main else ""))
    png = plots.sample_metric_curves(shown, floors=floors, best=best_mark)
    if png:
        body += h.figure(png, "Sample metrics over training; dashed: what real training items score against the "
                              "held-out items (the floor, from summary.json); star: the best evaluation by the main "
                              "metric.")
    if main:
        body += h.para(verdict.sample_metric_reading(main, *series[main], higher_is_better=RANKED.get(main, False),
                                                     floor=floors.get(main)))
    if best_mark is not None:
        body += h.para(f"Best by {best['metric']}: {h.fmt(best['value'])} at step {best['step']:,}"
                       + (f" (checkpoint {best['checkpoint']})." if best.get("checkpoint")
                          else " (no checkpoint of that step is kept)."))
    if skipped:
        body += h.note(f"{skipped} evaluation(s) skipped to keep evaluation within train.eval_budget of the wall time")
    return body


def metrics_section(files: RunFiles, live: Live) -> str:
    body = ""
    q = (files.summary or {}).get("quality")
    if q:
        body += h.heading("At the end of training (summary.json)")
        body += h.table(["figure", "value"], _key_values(q))
    body += sample_metrics_html(files)
    extra = other_series(files.metrics)
    if extra:
        png = plots.small_multiples(dict(list(extra.items())[:12]))
        if png:
            body += h.heading("Other figures logged in metrics.jsonl")
            body += h.figure(png, ", ".join(list(extra)[:12]) + (f" (and {len(extra) - 12} more)"
                                                                 if len(extra) > 12 else ""))
    if files.evaluation is not None:
        body += evaluation_html(files.evaluation)
    if not body:
        body = h.note("no quality figures yet: summary.json is written at the end of training, eval.json by "
                      "`steadydiff eval`" + (f"; {live.data_note}" if live.data_note else ""))
    return h.section("metrics", "6. Metric curves", body)


# 7. Incidents ------------------------------------------------------------------------------------------
def _short(value: Any, limit: int = 6) -> str:
    """A value for a table cell; long lists (e.g. the items of a batch) are cut with their length."""
    if isinstance(value, list) and len(value) > limit:
        return "[" + ", ".join(map(str, value[:limit])) + f", … ({len(value)} in all)]"
    return str(value)


def _detail(r: Mapping[str, Any]) -> str:
    parts = [str(r[k]) for k in ("outcome", "detail", "message") if r.get(k)]
    rest = [f"{k}={_short(v)}" for k, v in r.items()
            if k not in ("step", "guard", "action", "outcome", "detail", "message", "wall_s")]
    return "; ".join(parts + rest)


def incidents_section(files: RunFiles) -> str:
    inc = files.incidents
    if not inc:
        return h.section("incidents", "7. Incident timeline",
                         h.para("No incidents: the stability guard never fired" +
                                (" (so far)." if files.in_progress else ".")))
    last_step = max([int(r.get("step", 0)) for r in files.metrics] + [int(r.get("step", 0)) for r in inc])
    counts: dict[str, int] = {}
    for r in inc:
        counts[str(r.get("guard", "?"))] = counts.get(str(r.get("guard", "?")), 0) + 1
    body = h.para(f"{len(inc)} incident(s): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".")
    png = plots.incident_timeline(inc, last_step)
    if png:
        body += h.figure(png, "Stability events over the steps, one row per guard; crosses are rollbacks and stops.")
    rows = [(int(r.get("step", 0)), str(r.get("guard", "?")), str(r.get("action", "?")), _detail(r))
            for r in inc[:MAX_INCIDENT_ROWS]]
    body += h.table(["step", "guard", "action", "outcome / detail"], rows)
    if len(inc) > MAX_INCIDENT_ROWS:
        body += h.note(f"the first {MAX_INCIDENT_ROWS} of {len(inc)} incidents are listed; all are in incidents.jsonl")
    return h.section("incidents", "7. Incident timeline", body)


# 8. Quality against NFE --------------------------------------------------------------------------------
def _skipped(live: Live) -> str:
    return h.note(live.model_note or live.data_note or "skipped")


def quality_section(files: RunFiles, live: Live) -> str:
    """Quality against network evaluations, as `steadydiff eval` scored it (eval.json's quality_vs_nfe): the same
    Reference, feature space and real-data floor as the sample metrics during training and summary.json."""
    title = "8. Quality against network evaluations"
    ev = files.evaluation.get("quality_vs_nfe") if isinstance(files.evaluation, Mapping) else None
    if not isinstance(ev, Mapping) or not ev.get("table"):
        return h.section("quality-nfe", title, h.note(
            "no eval.json yet: `steadydiff eval RUN` scores samples of every solver at 10, 20 and 35 network "
            "evaluations (`steadydiff report` runs it first when it can)"
            + (f"; {live.eval_note}" if live.eval_note else "")))
    data = ev.get("data") or {}
    metric = data.get("fd_metric") or "mmd"
    rows_in = list(ev["table"])
    modes = any("modes_covered" in (r.get("metrics") or {}) for r in rows_in)
    # the series and table scores beside the main distance, where eval computed them (real data's in brackets)
    extra = [k for k in _EXTRA_QUALITY if any(k in (r.get("metrics") or {}) for r in rows_in)]
    real_all = ev.get("real_data") or {}
    header = ["solver", "NFE", "steps", metric] + (["modes covered", "samples on a mode"] if modes else []) + \
        [k + (f" (real {h.fmt(real_all[k])})" if isinstance(real_all.get(k), int | float) else "") for k in extra] + \
        ["seconds", "against the floor"]
    rows, points = [], []
    for r in rows_in:
        m = r.get("metrics") or {}
        row = [r.get("solver"), r.get("nfe"), r.get("steps"),
               "non-finite samples" if "non_finite_samples" in m else m.get(metric, "—")]
        if modes:
            row += [f"{m.get('modes_covered', '—')}/{m.get('modes_total', '—')}",
                    f"{100 * m['high_quality']:.1f}%" if "high_quality" in m else "—"]
        row += [h.fmt(m[k]) if isinstance(m.get(k), int | float) else "—" for k in extra]
        where, _ = against_floor(metric, m.get(metric), ev.get("real_data") or {}, own_error(m, metric))
        rows.append(row + [r.get("sample_s"), FLOOR_WORDS.get(where, "—")])
        points.append({"solver": r.get("solver"), "nfe": r.get("nfe"), metric: m.get(metric)})
    body = h.para(f"From eval.json (`steadydiff eval`), for the {ev.get('weights', 'ema')} weights of checkpoint "
                  f"{ev.get('checkpoint')} (step {ev.get('step')}): {ev.get('n_samples')} samples per setting "
                  f"(seed {ev.get('seed')}), scored against the {data.get('n_holdout', '?')} held-out items in "
                  f"{data.get('space', '?')}. Lower is better for distances.")
    body += h.table(header, rows)
    missing = [x for x in ("heun", "dpmpp-2m", "euler") if x not in {r.get("solver") for r in rows_in}]
    if missing:
        body += h.note(f"a reduced table ({', '.join(sorted({str(r.get('solver')) for r in rows_in}))} only; the "
                       f"report draws the largest table that takes under a minute here): `steadydiff eval "
                       f"{files.dir}` adds {', '.join(missing)}")
    real = ev.get("real_data") or {}
    floor = real.get(metric)
    if isinstance(floor, int | float):
        sd = real.get(f"{metric}_sd")
        body += h.para(f"Floor: {real.get('n_train_items', 'as many')} real training items (as many as samples, "
                       f"so both carry the same small-sample bias) against the held-out items score {metric} "
                       f"{h.fmt(floor)}" + (f" ± {h.fmt(sd)} over {real.get('floor_draws')} draws" if sd else "")
                       + ". Each row is read against it in the last column.")
    png = plots.quality_vs_nfe(points, metric, metric)
    if png:
        body += h.figure(png, f"{metric} against NFE per solver.")
    latest = files.checkpoints[-1][1].name if files.checkpoints else None
    if latest is not None and ev.get("checkpoint") != latest:
        body += h.note(f"eval.json scored {ev.get('checkpoint')}; the newest checkpoint is {latest}: run "
                       "`steadydiff eval RUN` again for it")
    return h.section("quality-nfe", title, body)


# 9. Memorisation ---------------------------------------------------------------------------------------
def likelihood_para(files: RunFiles) -> str:
    """eval.json's likelihood (`steadydiff eval --nll`), when there is one: training against held-out items."""
    ev = files.evaluation if isinstance(files.evaluation, dict) else {}
    nll = ev.get("nll")
    if not nll or "train" not in nll:
        return h.note("`steadydiff eval RUN --nll` adds the likelihood of training and held-out items here: a "
                      "model that memorises assigns its training items more likelihood than new ones.")
    text = (f"Likelihood (`steadydiff eval --nll`, {nll['checkpoint']}, {nll['weights']} weights, {nll['unit']}, "
            f"lower is better): training items {nll['train']['mean']:.4f} ± {nll['train']['se']:.4f}")
    if "holdout" in nll:
        text += f", held-out items {nll['holdout']['mean']:.4f} ± {nll['holdout']['se']:.4f}"
    if "gap" in nll:
        text += f"; {nll['gap']['reading']}"
    return h.para(text + ".")


def memorisation_section(files: RunFiles, live: Live) -> str:
    title = "9. Memorisation"
    memo, ref = live.memo, live.reference
    if memo is None or ref is None:
        q = (files.summary or {}).get("quality", {})
        body = _skipped(live)
        if "copy_fraction" in q:
            held = (q.get("real_data") or {}).get("copy_fraction")
            body += h.para(f"From summary.json: {100 * q['copy_fraction']:.1f}% of samples are near-copies"
                           + (f" (held-out real items: {100 * held:.1f}%)" if held is not None else "") + ".")
        return h.section("memorisation", title, body + likelihood_para(files))
    held = memo["heldout_fraction"]
    rows = [("samples that are near-copies of a training item", f"{100 * memo['copy_fraction']:.1f}%"),
            ("held-out real items that are (the baseline)", "—" if held is None else f"{100 * held:.1f}%"),
            ("near-copy threshold: 1/3 of the median training-set nearest-neighbour distance", memo["threshold"]),
            ("median distance, sample → nearest training item", memo["median_sample_nn"]),
            ("median distance, held-out item → nearest training item",
             "—" if memo["median_heldout_nn"] is None else memo["median_heldout_nn"]),
            ("median distance, training item → its nearest other training item", memo["median_train_nn"])]
    cap = f" (the first {MAX_REFERENCE:,})" if ref.n_train_total > len(ref.train) else ""
    body = h.para(f"{memo['n_samples']} samples (heun, 35 NFE, EMA weights) and {memo['n_heldout']} held-out real "
                  f"items against {memo['n_train']:,} training items{cap}, in normalised units. Fresh real data "
                  "also lands near a training item now and then (often, in 2-D): the held-out share is the "
                  "baseline to read the samples' share against.")
    body += h.table(["figure", "value"], rows)
    body += h.para(verdict.nearest_reading(memo["median_sample_nn"], memo["median_heldout_nn"]))
    body += likelihood_para(files)
    body += h.figure(plots.nn_histogram(memo["sample_nn"], memo["heldout_nn"], memo["threshold"]),
                     "Distance to the nearest training item: samples against held-out real items.")
    worst, nearest, dist = memo["worst"], memo["worst_nearest"], memo["worst_distances"]
    model = live.model
    inv = model.normaliser.inverse if model is not None else (lambda a: a)
    body += h.heading(f"The {len(worst)} samples closest to a training item")
    if files.kind == "image":
        samples_user = np.asarray(inv(memo["samples"][worst]))
        png = plots.image_pairs(samples_user, ref.train_user[nearest], list(dist), memo["threshold"],
                                model.normaliser.value_range if model is not None else (0.0, 1.0))
        if png:
            body += h.figure(png, "Top: sample; bottom: its nearest training item; d = distance (red: a near-copy).",
                             cls="pixelated")
    else:
        samples_user = np.asarray(inv(memo["samples"][worst]))
        if files.kind == "series":
            png = plots.series_pairs(samples_user, ref.train_user[nearest], list(dist), memo["threshold"])
            caption = "Each closest sample (coloured, one line per channel) over its nearest training item (grey)."
        else:
            png = plots.vector_pairs(ref.train_user, samples_user, ref.train_user[nearest],
                                     columns=files.dataset.get("columns"))
            caption = "The closest samples (×) and their nearest training items (○), first two features."
        if png:
            body += h.figure(png, caption)
        flat = samples_user.reshape(len(samples_user), -1)
        near = ref.train_user[nearest].reshape(len(nearest), -1)
        rows = [(int(i), ", ".join(f"{v:.4g}" for v in s[:6]), ", ".join(f"{v:.4g}" for v in t[:6]), float(d),
                 "yes" if d < memo["threshold"] else "no")
                for i, s, t, d in zip(worst, flat, near, dist, strict=True)]
        body += h.table(["sample", "sample (user units)", "nearest training item", "distance", "near-copy"], rows)
    return h.section("memorisation", title, body)


# 10. Denoising trajectory ------------------------------------------------------------------------------
def trajectory_section(files: RunFiles, live: Live) -> str:
    title = "10. Denoising trajectory"
    tr = live.trajectory
    if tr is None:
        return h.section("trajectory", title, h.note(live.model_note or "skipped"))
    n_steps = len(tr["sigmas"])
    body = h.para(f"The prediction of the clean sample, D(x; σ), at each of the {n_steps} steps of the run's own "
                  f"sampler ({tr['sampler']}, EMA weights), read through the solver's callback: coarse structure "
                  "is decided at high σ, detail at low σ.")
    if files.kind == "image":
        idx = thin(list(range(n_steps)), 10)
        png = plots.trajectory_images(tr["denoised"][idx, 0], tr["states"][idx, 0],
                                      [tr["sigmas"][i] for i in idx],
                                      live.model.normaliser.value_range if live.model is not None else (0.0, 1.0))
        if png:
            body += h.figure(png, "One sample (seed 0)" + (f", {len(idx)} of {n_steps} steps" if len(idx) < n_steps
                                                           else "") + ".", cls="pixelated")
    elif files.kind == "series":
        idx = thin(list(range(n_steps)), 8)
        png = plots.trajectory_series(tr["denoised"][idx, 0], [tr["sigmas"][i] for i in idx])
        if png:
            body += h.figure(png, "One sample (seed 0), one line per channel, at " + (
                f"{len(idx)} of {n_steps} steps." if len(idx) < n_steps else "every step."))
    else:
        ref = live.reference.train_user if live.reference is not None else None
        png = plots.trajectory_paths(tr["denoised"], tr["sigmas"], ref, columns=files.dataset.get("columns"))
        if png:
            body += h.figure(png, f"{tr['denoised'].shape[1]} samples (seeds 0–{tr['denoised'].shape[1] - 1}): "
                                  "the x0 prediction at every step, coloured by step; the final samples circled.")
    return h.section("trajectory", title, body)
