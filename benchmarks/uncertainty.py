"""uncertainty — diversity options measured against the defaults (issue "Diversity and uncertainty").

`--part mmd`: `toy:grid25-imbalanced` (25 modes, weights falling geometrically from 1 to 1/50), trained with the
defaults and with the MMD diversity term (`train.mmd_weight`), seeds 0–2, 3,000 steps × 256; 5,000 samples
(heun, 35 NFE) per run: modes covered, share within 3 std of a mode, the five rarest modes' recall (how many of
them get a sample within 3 std) and their sampled share against their true weight; the term's cost per step
(median samples/s of the run's log windows). Results accumulate in benchmarks/results/uncertainty.json.

`--part mcdropout`: `toy:grid25` trained with MLP dropout 0.1 (3,000 × 256, seeds 0–1); 5,000 samples with plain
sampling and with MC dropout (4 passes per step): modes covered, share within 3 std, the mean spread of the
estimate, and sampling time.

`--part nll`: the default `digits` run (3,000 × 128, a checkpoint every 500 steps) and at each checkpoint the
likelihood (`steadydiff eval --nll`: EMA weights, 200 training and 200 held-out digits, 64 Heun steps, Hutchinson
with 4 probes) in bits/dim: where memorisation starts, and the runtime per 1,000 items.

    .venv/bin/python benchmarks/uncertainty.py [--part mmd mcdropout nll] [--weights 0 1] [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np

from _common import OUT, load_results, parse_args, save_result, table, write_section
from steadydiff import load, train
from steadydiff.data.sources import GRID25_CENTRES, GRID25_STD, grid25_imbalanced_weights

RESULTS = Path(__file__).resolve().parent / "results" / "uncertainty.json"
ROOT_OUT = OUT / "uncertainty"
N_SAMPLES = 5000
RARE = 5


def mode_shares(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's nearest centre and whether it lies within 3 std of it."""
    d = np.sqrt(((samples[:, None, :] - GRID25_CENTRES[None]) ** 2).sum(-1))
    nearest = d.argmin(1)
    return nearest, d[np.arange(len(samples)), nearest] <= 3 * GRID25_STD


def run_mmd(weight: float, seed: int, steps: int) -> dict:
    out = ROOT_OUT / f"mmd-{weight:g}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"data": {"source": "toy:grid25-imbalanced"},
           "train": {"steps": steps, "batch_size": 256, "seed": seed, "mmd_weight": weight,
                     "sample_metrics_every": 0, "sample_every": 0}}
    run = train(cfg, out=out, progress=False)
    samples = load(out).sample(N_SAMPLES, seed=0)
    nearest, good = mode_shares(samples)
    w = grid25_imbalanced_weights()
    rare = np.argsort(w)[:RARE]
    counts = np.bincount(nearest[good], minlength=25)
    rates = [r["samples_per_s"] for r in
             (json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip())][1:]
    return {"weight": weight, "seed": seed, "steps": steps,
            "modes_covered": int((counts > 0).sum()), "high_quality": float(good.mean()),
            "rare_covered": int((counts[rare] > 0).sum()),
            "rare_share_ratio": [float(counts[k] / N_SAMPLES / w[k]) for k in rare],
            "share_tv": float(0.5 * np.abs(counts / max(counts.sum(), 1) - w).sum()),
            "samples_per_s": statistics.median(rates), "wall_s": run.summary["wall_s"]}


def run_mcdropout(seed: int, steps: int) -> dict:
    import time

    out = ROOT_OUT / f"mcdrop-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"data": {"source": "toy:grid25"}, "net": {"mlp": {"dropout": 0.1}},
           "train": {"steps": steps, "batch_size": 256, "seed": seed, "sample_metrics_every": 0, "sample_every": 0}}
    train(cfg, out=out, progress=False)
    model = load(out)
    rows = {}
    for passes in (0, 4):
        t0 = time.perf_counter()
        got = model.sample(N_SAMPLES, seed=0, mc_dropout=passes, uncertainty=passes > 1)
        seconds = time.perf_counter() - t0
        samples, spread = got if passes > 1 else (got, None)
        nearest, good = mode_shares(samples)
        counts = np.bincount(nearest[good], minlength=25)
        rows[str(passes)] = {"modes_covered": int((counts > 0).sum()), "high_quality": float(good.mean()),
                             "share_tv": float(0.5 * np.abs(counts / max(counts.sum(), 1) - 1 / 25).sum()),
                             "spread": None if spread is None else float(spread.mean()), "seconds": round(seconds, 1)}
    return {"seed": seed, "steps": steps, "rows": rows}


def run_nll(quick: bool) -> dict:
    from steadydiff.evaluate import likelihood

    out = ROOT_OUT / "nll-digits"
    shutil.rmtree(out, ignore_errors=True)
    steps = 200 if quick else 3000
    cfg = {"data": {"source": "digits"},
           "train": {"steps": steps, "checkpoint_every": steps // 6, "keep_checkpoints": 10, "keep_best": False,
                     "sample_metrics_every": 0, "sample_every": 0}}
    train(cfg, out=out, progress=False)
    rows = []
    for ckpt in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1])):
        r = likelihood(out, checkpoint=ckpt.name, n=20 if quick else 200, steps=8 if quick else 64)
        rows.append({"step": r["step"], "train": r["train"], "holdout": r["holdout"], "gap": r["gap"],
                     "seconds_per_1000_items": r["seconds_per_1000_items"]})
        print(json.dumps(rows[-1]), flush=True)
    return {"steps": steps, "rows": rows}


def nll_report(res: dict) -> str:
    r = res.get("nll/digits")
    if not r:
        return ""
    lines = [[x["step"], f"{x['train']['mean']:.3f} ± {x['train']['se']:.3f}",
              f"{x['holdout']['mean']:.3f} ± {x['holdout']['se']:.3f}",
              f"{x['gap']['value']:+.3f} ± {x['gap']['se']:.3f}", f"{x['seconds_per_1000_items']:.0f} s"]
             for x in r["rows"]]
    first = r["rows"][0]
    return (f"### Likelihood over training: digits (3,000 × 128, EMA weights, bits/dim, {first['train']['n']} training "
            f"and {first['holdout']['n']} held-out digits, 64 Heun steps, Hutchinson 4 probes)\n\n"
            + table(["step", "training digits", "held-out digits", "held-out − training", "time per 1,000 items"],
                    lines)
            + "\n\nA uniform distribution over digits' 17 value levels scores log₂ 17 = 4.09 bits/dim. The held-out "
            "digits stay within about one standard error of the training digits at every checkpoint: no sign of "
            "memorisation in 3,000 steps (the near-copy check agrees, section \"Know your model\"). The likelihood "
            "itself worsens after step 1,000 while sample quality improves; a likely reading (not tested here) is "
            "that the model concentrates its density on the 17 levels, where uniform dequantisation spreads the "
            "test points across whole levels. Time: one core shared with another benchmark.")


def report() -> str:
    res = load_results(RESULTS)
    parts = [mmd_report(res), mcdropout_report(res), nll_report(res)]
    return "\n\n".join(p for p in parts if p)


def mcdropout_report(res: dict) -> str:
    runs = [v for k, v in sorted(res.items()) if k.startswith("mcdropout/")]
    if not runs:
        return ""
    lines = []
    for r in runs:
        for passes, v in r["rows"].items():
            lines.append([r["seed"], "plain" if passes == "0" else f"MC dropout, {passes} passes",
                          f"{v['modes_covered']}/25", f"{100 * v['high_quality']:.1f} %", f"{v['share_tv']:.3f}",
                          "—" if v["spread"] is None else f"{v['spread']:.4f}", f"{v['seconds']:.0f} s"])
    return (f"### MC dropout on toy:grid25 (MLP dropout 0.1, {runs[0]['steps']:,} × 256, {N_SAMPLES:,} samples)\n\n"
            + table(["seed", "sampling", "modes covered", "within 3 std", "share TV from uniform",
                     "mean spread (normalised units)", "sampling time"], lines))


def mmd_report(res: dict) -> str:
    rows = [v for k, v in sorted(res.items()) if k.startswith("mmd/")]
    if not rows:
        return ""
    by_weight: dict[float, list[dict]] = {}
    for r in rows:
        by_weight.setdefault(r["weight"], []).append(r)
    lines = []
    for w, rs in sorted(by_weight.items()):
        for r in sorted(rs, key=lambda r: r["seed"]):
            lines.append([f"{w:g}", r["seed"], f"{r['modes_covered']}/25", f"{100 * r['high_quality']:.1f} %",
                          f"{r['rare_covered']}/{RARE}", " ".join(f"{v:.2f}" for v in r["rare_share_ratio"]),
                          f"{r['share_tv']:.3f}", f"{r['samples_per_s']:,.0f}"])
    summary = []
    for w, rs in sorted(by_weight.items()):
        summary.append([f"{w:g}", len(rs), f"{statistics.mean(r['modes_covered'] for r in rs):.1f}",
                        f"{statistics.mean(r['rare_covered'] for r in rs):.1f}/{RARE}",
                        f"{statistics.mean(r['share_tv'] for r in rs):.3f}",
                        f"{100 * statistics.mean(r['high_quality'] for r in rs):.1f} %",
                        f"{statistics.median(r['samples_per_s'] for r in rs):,.0f}"])
    return ("### MMD diversity term on toy:grid25-imbalanced (3,000 × 256 per run)\n\n" + table(
        ["mmd_weight", "seed", "modes covered", "within 3 std", "rarest 5 covered",
         "rarest 5: sampled share / weight", "share TV distance", "samples/s"], lines) + "\n\nMeans over seeds:\n\n"
        + table(["mmd_weight", "runs", "modes covered", "rarest 5 covered", "share TV distance", "within 3 std",
                 "samples/s (median)"], summary))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--part", {"nargs": "+", "default": ["mmd", "mcdropout", "nll"], "choices": ["mmd", "mcdropout", "nll"]}),
        ("--weights", {"nargs": "+", "type": float, "default": [0.0, 1.0]}),
        ("--seeds", {"nargs": "+", "type": int, "default": [0, 1, 2]}),
        ("--report-only", {"action": "store_true"}),
    ])
    if not args.report_only and "mmd" in args.part:
        for seed in args.seeds:
            for w in args.weights:
                r = run_mmd(w, seed, 200 if args.quick else 3000)
                print(json.dumps(r), flush=True)
                if not args.quick:
                    save_result(RESULTS, f"mmd/{w:g}/s{seed}", r)
    if not args.report_only and "mcdropout" in args.part:
        for seed in args.seeds[:2]:
            r = run_mcdropout(seed, 200 if args.quick else 3000)
            print(json.dumps(r), flush=True)
            if not args.quick:
                save_result(RESULTS, f"mcdropout/s{seed}", r)
    if not args.report_only and "nll" in args.part:
        r = run_nll(args.quick)
        if not args.quick:
            save_result(RESULTS, "nll/digits", r)
    if not args.quick:
        text = report()
        print(text)
        write_section("uncertainty", "Diversity and uncertainty (benchmarks/uncertainty.py)", text)


if __name__ == "__main__":
    main()
