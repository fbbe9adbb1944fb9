"""few_step — how the sampling σ range and Karras ρ move few-step quality on `digits`, with no retraining.

Takes the finished run of benchmarks/digits_quality.py (benchmarks/out/digits) and its feature net, and samples
the final EMA weights with DPM-Solver++(2M) at 10 steps (10 network evaluations) and Heun at 18 steps (35) for
several step lists: EDM's (σ from 0.002 to 80 in units of 2σ_data, as EDM sets them for σ_data = 0.5, ρ = 7), the
defaults (σ_min from the data's value levels, `DiffusionConfig.resolved_sigma_min`: 0.0212 for digits' 17
levels; ρ = 10) and a narrower range. FD in the digit classifier's feature space of 1,500 samples against the 297
held-out digits, two sampling seeds, as digits_quality.py measures it.

    .venv/bin/python benchmarks/few_step.py [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import torch

import steadydiff
from _common import OUT, parse_args, table, write_section
from digits_quality import HOLDOUT, to_unit
from steadydiff.data import DataConfig, load_data
from steadydiff.metrics.features import frechet_feature_distance, load_feature_net

# (sampler, steps, σ_min, σ_max, ρ); σ in units of 2σ_data (DiffusionConfig.sigma_range); σ_min None: the run's
# own (resolved from the data's value levels when the run started)
VARIANTS = [("heun", 18, 0.002, 80.0, 7.0), ("heun", 18, None, 80.0, 10.0),
            ("dpmpp-2m", 10, 0.002, 80.0, 7.0), ("dpmpp-2m", 10, 0.002, 80.0, 10.0),
            ("dpmpp-2m", 10, None, 80.0, 7.0), ("dpmpp-2m", 10, None, 80.0, 10.0),
            ("dpmpp-2m", 10, 0.03, 20.0, 10.0), ("heun", 18, 0.03, 20.0, 10.0)]
SEEDS = (0, 1)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    run = OUT / ("digits-quick" if args.quick else "digits")
    if not (run / "summary.json").exists() or not (OUT / "digits-features.safetensors").exists():
        raise SystemExit(f"needs the finished run {run} and its feature net: run benchmarks/digits_quality.py"
                         f"{' --quick' if args.quick else ''} first")
    n = 200 if args.quick else 1500
    variants = VARIANTS[:3] if args.quick else VARIANTS
    net = load_feature_net(OUT / "digits-features.safetensors")
    ds = load_data(DataConfig(source="digits", holdout=HOLDOUT))
    held = to_unit(ds.holdout)
    floor = frechet_feature_distance(net, to_unit(ds.train), held)
    model = steadydiff.load(run)
    d = model.config.diffusion
    own = d.sigma_min
    rows = []
    for sampler, steps, smin, smax, rho in variants:
        smin = own if smin is None else smin
        d.sigma_min, d.sigma_max, model.config.sample.rho = smin, smax, rho
        t0 = time.perf_counter()
        fds = [frechet_feature_distance(net, to_unit(model.sample(n, steps=steps, sampler=sampler, seed=s)), held)
               for s in SEEDS]
        mean = float(np.mean(fds))
        which = "default" if (smin, smax, rho) == (own, 80.0, 10.0) else \
            "EDM's" if (smin, smax, rho) == (0.002, 80.0, 7.0) else ""
        rows.append([f"{sampler} {steps}", model.nfe(steps, sampler), which, f"{smin:g} … {smax:g}", f"{rho:g}",
                     *(f"{v:.2f}" for v in fds), f"{mean:.2f}", f"{mean / floor:.3f}×",
                     f"{time.perf_counter() - t0:.0f} s"])
        print(rows[-1], flush=True)
    body = (f"Run: `{run.relative_to(OUT.parent.parent)}` (digits_quality.py's, final EMA weights); {n:,} samples per "
            f"seed; floor FD = {floor:.3f}.\n\n"
            + table(["sampler, steps", "NFE", "step list", "σ range (× 2σ_data)", "ρ", "FD seed 0", "FD seed 1",
                     "FD mean", "× floor", "time"], rows))
    if not args.quick:
        write_section("few_step", "digits — few-step sampling against the step list (no retraining)", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
