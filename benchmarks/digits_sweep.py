"""digits_sweep — one setting changed at a time on digits, scored like digits_quality.py but over more seeds.

Trains the digits run of benchmarks/digits_quality.py (297 held out, 3,000 steps × 128, defaults) with the
`--set` overrides given, into benchmarks/out/sweep/NAME, and prints FD / floor in the digit classifier's feature
space (1,500 samples against the 297 held-out digits) for the final EMA weights at Heun 18 steps (35 NFE) and
DPM-Solver++(2M) 10 steps (10 NFE), sampling seeds 0–3 (the goals use 0 and 1; 2 and 3 show the seed noise),
and optionally for post-hoc EMA lengths (`--stds`, Karras et al. 2024). `--agree RUN ...` also prints how
often the same noise (sampling seed 0, 35 NFE) gives a digit of the same predicted class under this run and
under each other run directory named, a measure of how much a sampling seed's class mix is shared between
independently trained models. Each result is appended to benchmarks/out/sweep/results.jsonl. Nothing is
written to BENCHMARKS.md: the exploratory table there quotes these lines.

    .venv/bin/python benchmarks/digits_sweep.py NAME [--set KEY=VALUE ...] [--stds 0.05,0.10] [--eval-only]
                                                [--agree RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import steadydiff
from _common import OUT, with_overrides
from digits_quality import HOLDOUT, to_unit
from steadydiff.data import DataConfig, load_data
from steadydiff.metrics.features import frechet_feature_distance, load_feature_net, predict
from steadydiff.train.phema import read_snapshots, reconstruct

SETTINGS = [("heun", 18), ("dpmpp-2m", 10)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="run name under benchmarks/out/sweep/")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--stds", default="", help="post-hoc EMA lengths (σ_rel) to score, comma-separated")
    p.add_argument("--seeds", type=int, default=4, help="sampling seeds for the final EMA weights")
    p.add_argument("--eval-only", action="store_true", help="score the finished run again, no training")
    p.add_argument("--agree", nargs="*", default=[], metavar="RUN_DIR",
                   help="other finished runs: share of noises (seed 0, Heun 18) given the same class by both")
    a = p.parse_args()
    if not (OUT / "digits-features.safetensors").exists():
        raise SystemExit("needs the feature net: run benchmarks/digits_quality.py first")
    out = OUT / "sweep" / a.name
    config, _ = with_overrides({"data": {"source": "digits", "holdout": HOLDOUT},
                                "train": {"steps": 3000, "batch_size": 128}}, a.set)
    if not a.eval_only:
        t0 = time.perf_counter()
        steadydiff.train(config, out=out, progress=False)
        print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    net = load_feature_net(OUT / "digits-features.safetensors")
    ds = load_data(DataConfig(source="digits", holdout=HOLDOUT))
    held = to_unit(ds.holdout)
    floor = frechet_feature_distance(net, to_unit(ds.train), held)
    model = steadydiff.load(out)
    result: dict = {"name": a.name, "set": a.set}

    def score(tag: str, seeds: int) -> None:
        for sampler, k in SETTINGS:
            r = [frechet_feature_distance(net, to_unit(model.sample(1500, steps=k, sampler=sampler, seed=s)), held)
                 / floor for s in range(seeds)]
            result[f"{tag} {sampler} {k}"] = r
            print(f"{a.name} {tag} {sampler} {k}: seeds 0,1 {np.mean(r[:2]):.3f}× ({', '.join(f'{v:.3f}' for v in r)}"
                  f"; mean of {len(r)} {np.mean(r):.3f}×)", flush=True)

    if a.agree:
        def classes(m: steadydiff.Model) -> np.ndarray:
            return predict(net, to_unit(m.sample(1500, steps=18, sampler="heun", seed=0)))

        mine = classes(model)
        for other in a.agree:
            same = float((classes(steadydiff.load(other)) == mine).mean())
            result[f"same class as {other}"] = same
            print(f"{a.name}: the same noise gives the same class as {other} for {same:.1%} of 1,500 samples",
                  flush=True)
    score("ema", a.seeds)
    if a.stds:
        snaps = sorted(read_snapshots(out / "phema"), key=lambda s: s.step)
        for std in (float(v) for v in a.stds.split(",")):
            model.denoiser.load_state_dict(reconstruct(snaps, std))
            score(f"phema {std:g}", a.seeds)
    with open(OUT / "sweep" / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
