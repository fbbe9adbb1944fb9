"""defaults — the defaults picked by a quality figure, chosen again on a validation split that quality is never
reported on.

Digits (1,797 items) are split twice. The report split: the 297 held out by data.split_seed 0, the digits that
digits_quality.py and conditional.py report FD on; this script never reads them. The remaining 1,500 training digits
are split again (297 validation digits by split_seed 0 of those, 1,203 that train): they go to
benchmarks/out/defaults/digits-train.npz (x: the images, y: their classes) and every run here trains on that file
with data.holdout=297, so its held-out split is the validation split.

Every default chosen by a quality figure is judged on the validation digits, one at a time around the defaults:
- without retraining, on the default run: the EMA length (the training EMA of train.ema_rampup, against post-hoc
  EMA profiles of Karras et al. 2024 at σ_rel 0.03–0.15), sample.rho (10 against Karras et al.'s 7) and the
  classifier-free guidance (sample.guidance at sample.guidance_interval, and everywhere);
- by training once more each: train.cond_dropout 0.2 (then 0.1; seeds 0 and 1), net.unet.dropout 0.1 (default 0),
  train.conditional=off (the unconditional reference of the conditional run's unconditional samples), and the
  default config with training seed 1, whose distance from seed 0 is the yardstick for the others.
Score: FD in the penultimate features of a DigitsFeatureNet trained on the 1,203 training digits (seed 0) between
1,203 samples (the training items' classes, in order) and the 297 validation digits, divided by the floor
FD(the 1,203 training digits, the 297 validation digits), at Heun 18 steps (35 NFE) and DPM-Solver++(2M) 10 steps
(10 NFE), sampling seeds 0–3; the class agreement is the share of samples the feature net puts in the requested
class.
Rules, fixed before any run: a sampling-time candidate replaces the default only when its mean FD/floor (over both
NFE and the 4 sampling seeds) is lower by more than twice the standard error of the paired per-seed differences,
and then the lowest such candidate is chosen; a guidance must also keep ≥ 99 % agreement at both NFE (the
conditional issue's goal); a trained variant replaces the default only when it beats the default's seed 0 by more
than the seed-0/seed-1 gap of the default config.

Runs go to benchmarks/out/defaults/, results to benchmarks/results/defaults.json (kept, so calls can fill it in
turn; `--redo NAME` trains a run again). `--workers N` trains N runs at once, each on one thread.

    .venv/bin/python benchmarks/defaults.py [--quick] [--workers 2] [--report-only] [--redo NAME ...]
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import time

import numpy as np

from _common import OUT, ROOT, load_results, parse_args, save_result, table, write_section

RESULTS = ROOT / "benchmarks" / "results" / "defaults.json"
HOLDOUT = 297  # the report split (digits_quality.py) and, of the remaining 1,500, the validation split
NFE_SETTINGS = [("heun", 18), ("dpmpp-2m", 10)]  # 35 and 10 NFE
SEEDS = (0, 1, 2, 3)
PHEMA_STDS = (0.03, 0.05, 0.07, 0.10, 0.15)
GUIDANCE = (1.0, 1.25, 1.5, 2.0)
AGREEMENT = 0.99
# The defaults as this benchmark judged them (it changed three: train.cond_dropout 0.1 → 0.2, sample.rho 10 → 7,
# sample.guidance 1.5 in σ [0.28, 2.9] → 1.25 at every σ); pinned so that a rerun judges the same starting point.
JUDGED = {"train": {"cond_dropout": 0.1}, "sample": {"rho": 10.0, "guidance": 1.5, "guidance_interval": [0.28, 2.9]}}
# Trained runs: name → config overrides on top of JUDGED ({}: the judged defaults).
RUNS = {"default": {}, "default-seed1": {"train": {"seed": 1}}, "cond_dropout-0.2": {"train": {"cond_dropout": 0.2}},
        "cond_dropout-0.2-seed1": {"train": {"cond_dropout": 0.2, "seed": 1}},
        "dropout-0.1": {"net": {"unet": {"dropout": 0.1}}}, "unconditional": {"train": {"conditional": "off"}}}


def to_unit(x: np.ndarray) -> np.ndarray:
    """Digits pixels 0..16 → [-1, 1], clipped to the valid range first (as digits_quality.py)."""
    return (np.clip(x, 0.0, 16.0) / 8.0 - 1.0).astype(np.float32)


def write_split(quick: bool) -> tuple:
    """The 1,500 training digits of the report split as an .npz (x, y); the validation data set read back from it."""
    from steadydiff.data import DataConfig, load_data

    report = load_data(DataConfig(source="digits", holdout=HOLDOUT))
    folder = OUT / ("defaults-quick" if quick else "defaults")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits-train.npz"
    if not path.exists():
        np.savez(path, x=report.train, y=report.train_labels)
    val = load_data(DataConfig(source=str(path), holdout=HOLDOUT))
    assert len(val.train) + len(val.holdout) == len(report.train) and val.holdout_labels is not None
    return folder, path, val


def deep_merge(base: dict, extra: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in extra.items():
        out[k] = deep_merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def settings_of(name: str, conditional: bool) -> list[tuple[str, dict]]:
    """What is scored on a run: (label, change) — the default run gets every sampling-time candidate."""
    plain = [("as trained", {})]
    if not conditional:
        return plain
    if name != "default":
        return plain + [("unconditional (w 0)", {"guidance": 0.0})]
    out = plain + [(f"post-hoc EMA σ_rel {s:g}", {"phema": s}) for s in PHEMA_STDS] + [("rho 7", {"rho": 7.0})]
    out += [(f"w {w:g} in the interval", {"guidance": w}) for w in GUIDANCE if w != 1.5]
    out += [(f"w {w:g} everywhere", {"guidance": w, "everywhere": True}) for w in GUIDANCE if w != 1.0]
    return out + [("unconditional (w 0)", {"guidance": 0.0})]


def train_and_score(name: str, overrides: dict, quick: bool) -> dict:
    """Train one run (or reuse its finished directory) and score its settings on the validation digits."""
    import torch

    torch.set_num_threads(1)
    import steadydiff
    from steadydiff.metrics.features import frechet_feature_distance, load_feature_net, predict
    from steadydiff.train.phema import read_snapshots, reconstruct

    folder, path, val = write_split(quick)
    steps, n = (60, 200) if quick else (3000, len(val.train))
    out = folder / name
    config = deep_merge({"data": {"source": str(path), "holdout": HOLDOUT},
                         "train": {"steps": steps, "batch_size": 128, "threads": 1}},
                        deep_merge(JUDGED, overrides))
    done = out / "summary.json"
    t0 = time.perf_counter()
    if not (done.exists() and json.loads(done.read_text())["steps"] == steps):
        if out.exists():
            import shutil

            shutil.rmtree(out)
        steadydiff.train(config, out=out, progress=False)
    train_s = time.perf_counter() - t0
    net = load_feature_net(folder / "features.safetensors")
    held = to_unit(val.holdout)
    floor = frechet_feature_distance(net, to_unit(val.train), held)
    model = steadydiff.load(out)
    conditional = model.cond is not None
    labels = np.resize(val.train_labels, n)  # the training items' classes, in order
    ema_state = {k: v.clone() for k, v in model.denoiser.state_dict().items()}
    sample_cfg = model.config.sample
    defaults = (sample_cfg.rho, sample_cfg.guidance_interval)
    scores: dict = {}
    t1 = time.perf_counter()
    for label, change in settings_of(name, conditional):
        if "phema" in change:
            model.denoiser.load_state_dict(reconstruct(sorted(read_snapshots(out / "phema"), key=lambda s: s.step),
                                                       change["phema"]))
        sample_cfg.rho = change.get("rho", defaults[0])
        sample_cfg.guidance_interval = (0.0, math.inf) if change.get("everywhere") else defaults[1]
        row: dict = {}
        for sampler, k in NFE_SETTINGS:
            fds, agree = [], []
            for seed in SEEDS:
                kw = {"cond": labels, "guidance": change.get("guidance")} if conditional else {}
                x = to_unit(model.sample(n, steps=k, sampler=sampler, seed=seed, **kw))
                fds.append(frechet_feature_distance(net, x, held) / floor)
                agree.append(float((predict(net, x) == labels).mean()))
            row[str(model.nfe(k, sampler))] = {"fd": fds, "agreement": agree if conditional else None}
        scores[label] = row
        model.denoiser.load_state_dict(ema_state)
        print(f"{name} / {label}: " + ", ".join(f"{nfe} NFE {np.mean(r['fd']):.3f}×" for nfe, r in row.items()),
              flush=True)
    summary = json.loads(done.read_text())
    return {"name": name, "overrides": overrides, "steps": steps, "n": n, "floor": floor, "scores": scores,
            "conditional": conditional, "ema_rampup": model.config.train.ema_rampup,
            "rho": defaults[0], "guidance": sample_cfg.guidance, "interval": list(defaults[1]),
            "train_wall_s": summary.get("wall_s"), "score_s": time.perf_counter() - t1, "call_s": train_s,
            "parameters": summary.get("parameters")}


def mean_fd(row: dict) -> float:
    return float(np.mean([np.mean(r["fd"]) for r in row.values()]))


def per_seed(row: dict) -> np.ndarray:
    """FD/floor per sampling seed, averaged over the NFE settings."""
    return np.mean([r["fd"] for r in row.values()], axis=0)


def cells(row: dict, conditional: bool) -> list[str]:
    out = [f"{np.mean(r['fd']):.3f}×" for r in row.values()] + [f"{mean_fd(row):.3f}×"]
    if conditional:
        out.append(" / ".join(f"{100 * np.mean(r['agreement']):.1f} %" for r in row.values()))
    return out


def report(results: dict) -> tuple[str, list[str]]:
    """The section's text and the defaults the rules would change (empty: every default stands)."""
    from steadydiff.train.phema import exp_to_std

    d = results["default"]
    s = d["scores"]
    heads = ["setting", "35 NFE", "10 NFE", "mean", "class agreement 35 / 10 NFE"]
    changes: list[str] = []
    trained_std = exp_to_std(math.log(2) / d["ema_rampup"] - 1)
    lines = [f"Floor FD(1,203 training digits, 297 validation digits) = **{d['floor']:.3f}**; every figure is FD / "
             f"floor, the mean of sampling seeds 0–{len(SEEDS) - 1}, {d['n']:,} samples each. Default run: "
             f"{d['parameters']:,} parameters, {d['steps']:,} steps × 128, {d['train_wall_s']:.0f} s of training.", ""]

    def pick(title: str, rows: list[tuple[str, str, dict]], default_label: str, note: str, guided: bool = False
             ) -> None:
        ref = next(r for lab, _, r in rows if lab == default_label)

        def gain(r: dict) -> tuple[float, float]:  # paired per-seed improvement over the default, and 2 SE of it
            d = per_seed(ref) - per_seed(r)
            return float(d.mean()), float(2 * d.std(ddof=1) / math.sqrt(len(d)))

        ok = [(lab, key, r) for lab, key, r in rows if lab != default_label and gain(r)[0] > gain(r)[1]
              and (not guided or all(np.mean(v["agreement"]) >= AGREEMENT for v in r.values()))]
        best = min(ok, key=lambda t: mean_fd(t[2])) if ok else None
        lines.extend([f"### {title}", "", table(heads + ["better than the default by (± 2 SE)", "chosen"], [
            [lab + (" (default)" if lab == default_label else ""), *cells(r, True),
             "—" if lab == default_label else "{:+.3f} ± {:.3f}".format(*gain(r)),
             "←" if (best and lab == best[0]) or (not best and lab == default_label) else ""]
            for lab, _, r in rows]), "",
            note.format(best=best[0]) if best else "No candidate beats the default by more than 2 SE"
            + (f" with ≥ {AGREEMENT:.0%} agreement" if guided else "") + ": the default stands.", ""])
        if best:
            changes.append(f"{title}: {best[0]} (default: {default_label})")

    ema_rows = [(f"training EMA, ema_rampup {d['ema_rampup']:g} (σ_rel ≈ {trained_std:.3f})", "as trained",
                 s["as trained"])]
    ema_rows += [(lab, lab, s[lab]) for lab in s if lab.startswith("post-hoc")]
    pick("EMA length", ema_rows, ema_rows[0][0],
         "Chosen: {best}. Post-hoc profiles are reconstructed from the run's snapshots (train.phema_every 500).")
    pick("Karras ρ of the step list", [(f"rho {d['rho']:g}", "as trained", s["as trained"]),
                                       ("rho 7", "rho 7", s["rho 7"])], f"rho {d['rho']:g}", "Chosen: {best}.")
    lo, hi = d["interval"]
    g_rows = [(f"w {d['guidance']:g} in σ [{lo:g}, {hi:g}]", "as trained", s["as trained"])]
    g_rows += [(lab.replace("in the interval", f"in σ [{lo:g}, {hi:g}]"), lab, s[lab]) for lab in s
               if lab.startswith("w ")]
    g_rows.sort(key=lambda t: (t[0].endswith("everywhere"), float(t[0].split()[1])))
    pick("Classifier-free guidance", g_rows, g_rows[[t[1] for t in g_rows].index("as trained")][0],
         "Chosen: {best}.", guided=True)

    # Trained variants against the default of the same training seed, with the default's own seed-to-seed gap.
    defaults_by_seed = {0: results["default"], 1: results.get("default-seed1")}
    unc = results.get("unconditional", {}).get("scores", {}).get("as trained")

    def seed_of(r: dict) -> int:
        return int(r["overrides"].get("train", {}).get("seed", 0))

    def gap_of(label: str) -> float:
        a, b = (defaults_by_seed[k] and defaults_by_seed[k]["scores"].get(label) for k in (0, 1))
        return abs(mean_fd(a) - mean_fd(b)) if a and b else float("nan")

    gap, gap_w0 = gap_of("as trained"), gap_of("unconditional (w 0)")
    rows = []
    for name, r in results.items():
        row, w0 = r["scores"]["as trained"], r["scores"].get("unconditional (w 0)")
        base = defaults_by_seed.get(seed_of(r))
        branch = "—" if w0 is None else f"{mean_fd(w0):.3f}×" + ("" if unc is None else
                                                                 f" ({mean_fd(w0) / mean_fd(unc):.2f}×)")
        verdict = ""
        if not name.startswith("default") and name != "unconditional" and base is not None:
            better = mean_fd(base["scores"]["as trained"]) - mean_fd(row)
            verdict = f"guided {better:+.3f} (gap {gap:.3f})"
            if w0 is not None and "unconditional (w 0)" in base["scores"]:
                verdict += f"; w 0 {mean_fd(base['scores']['unconditional (w 0)']) - mean_fd(w0):+.3f} " \
                           f"(gap {gap_w0:.3f})"
            if better > gap:
                changes.append(f"{name}: guided mean {mean_fd(row):.3f}× against the default's "
                               f"{mean_fd(base['scores']['as trained']):.3f}×")
        rows.append([name, json.dumps(r["overrides"]) if r["overrides"] else "—", *cells(row, r["conditional"])[:3],
                     cells(row, True)[3] if r["conditional"] else "—", branch, verdict])
    lines.extend(["### Trained variants", "", table(
        ["run", "overrides", "35 NFE", "10 NFE", "mean", "class agreement 35 / 10 NFE",
         "unconditional samples (w 0), mean (× the unconditional run's)",
         "better than the default of the same seed by"], rows), "",
        f"Seed gaps of the default config (|seed 1 − seed 0| of the mean): {gap:.3f} guided, {gap_w0:.3f} at w 0. "
        "A variant replaces the default only when its guided samples are better by more than that.", ""])
    for name in [n for n in results if f"{n}-seed1" in results and n != "default" and "default-seed1" in results]:
        pair, ref = (results[name], results[f"{name}-seed1"]), (results["default"], results["default-seed1"])

        def both(runs: tuple, label: str) -> float:
            return float(np.mean([mean_fd(r["scores"][label]) for r in runs]))

        w0 = "unconditional (w 0)"
        lower = sum(both((a,), w0) < both((b,), w0) for a, b in zip(pair, ref, strict=True))
        lines.append(f"{name} over training seeds 0 and 1: guided {both(pair, 'as trained'):.3f}× against the "
                     f"default's {both(ref, 'as trained'):.3f}×, unconditional samples (w 0) "
                     f"{both(pair, 'unconditional (w 0)'):.3f}× against {both(ref, 'unconditional (w 0)'):.3f}× "
                     f"(lower at w 0 on {lower} of 2 seeds).")
        lines.append("")
    lines.append("Defaults the rules would change: " + ("; ".join(changes) if changes else "none — every default "
                                                          "stands on the validation split."))
    return "\n".join(lines), changes


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--workers", {"type": int, "default": 1, "help": "runs trained at once, one thread each"}),
        ("--report-only", {"action": "store_true", "help": "write the section from the kept results"}),
        ("--redo", {"nargs": "*", "default": [], "help": "runs to train and score again"})])
    from steadydiff.metrics.features import accuracy, save_feature_net, train_feature_net

    folder, _, val = write_split(args.quick)
    if not (folder / "features.safetensors").exists():
        net = train_feature_net(to_unit(val.train), val.train_labels, seed=0)
        save_feature_net(net, folder / "features.safetensors",
                         info={"seed": 0, "validation_accuracy": accuracy(net, to_unit(val.holdout),
                                                                          val.holdout_labels)})
    results_path = folder / "results.json" if args.quick else RESULTS  # a smoke run keeps nothing tracked
    done = load_results(results_path)
    todo = [n for n in RUNS if not args.report_only and (n not in done or n in args.redo)]
    print(f"{len(todo)} runs to train and score ({len(RUNS) - len(todo)} kept)", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=max(1, args.workers), mp_context=ctx) as pool:
        futures = {pool.submit(train_and_score, n, RUNS[n], args.quick): n for n in todo}
        for fut in cf.as_completed(futures):
            save_result(results_path, futures[fut], fut.result())
    results = load_results(results_path)
    results = {n: results[n] for n in RUNS if n in results}
    if "default" not in results:
        raise SystemExit("defaults: the default run has not been scored yet")
    text, _ = report(results)
    print(text)
    if not args.quick:
        write_section("defaults", "Defaults chosen on a validation split (benchmarks/defaults.py)",
                      "Results kept in benchmarks/results/defaults.json (measured 2026-12-02 15:01–17:08 UTC by "
                      "`defaults.py --workers 2`, the seed-1 run of cond_dropout 0.2 added alone; CPU shared with 2–3 "
                      "other jobs; the unconditional run added 2026-12-03 00:00–00:22 UTC by `defaults.py "
                      "--workers 1`, beside one other benchmark, its feature net trained again from the same seed). "
                      "The report split (297 held-out digits of data.split_seed 0) is never read "
                      "here.\n\n" + text)


if __name__ == "__main__":
    main()
