"""digits — sample quality as a Fréchet distance in a digit classifier's feature space, against its floor.

Trains the default U-Net on scikit-learn's 8×8 digits with 297 held out (1,500 train), 3,000 steps at
batch 128, every other setting default except that a checkpoint is kept every 500 steps (checkpointing
changes nothing in training). A small CNN (`steadydiff.metrics.features.DigitsFeatureNet`) is trained
once on the 1,500 training digits (seed 0) and its penultimate features stand in for Inception's in FID
(Heusel et al. 2017, Eq. 6).

Figures:
- FD(1,500 samples, 297 held-out digits) at 35 NFE (Heun 18 steps, Karras et al. 2022, Alg. 1), at 10 NFE
  (DPM-Solver++(2M) 10 steps, Lu et al. 2022) and at 9 NFE (Heun 5 steps), each the mean of two sampling
  seeds. Samples are clipped to the pixel range 0..16 (as saving them as images would) and mapped to
  [-1, 1] as x/8 − 1.
- The floor: FD(the 1,500 real training digits, the same 297 held-out digits), i.e. what a perfect model
  whose samples were fresh digits would score with sets of these sizes. Quality is reported as FD/floor.
- Memorisation: `steadydiff.metrics.copy_fraction` on flattened [-1, 1] pixels.
- Seed spread: the two goal settings again with seeds 2–7, to show how far the sampling seed alone moves
  the FD at 1,500 samples (the goals stay judged on seeds 0 and 1), and for 35 NFE where that comes from:
  the FD's mean term ||μ − μ_held||² and covariance term (`steadydiff.metrics.frechet_terms`) per seed, and
  the total-variation distance between the class mix the feature net predicts for the samples and for the
  held-out digits.
- Quality over training: FD at 35 NFE (seed 0) of every kept checkpoint's EMA weights, with the wall time
  the run had spent when it wrote that checkpoint (state.json), to read off when 1.70× the floor was reached.

    .venv/bin/python benchmarks/digits_quality.py [--quick] [--reuse]
"""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np

import steadydiff
from _common import OUT, fmt_s, parse_args, table, with_overrides, write_section
from steadydiff.data import DataConfig, load_data
from steadydiff.metrics import copy_fraction, frechet_terms
from steadydiff.metrics.features import (
    accuracy,
    class_balance,
    class_shares,
    extract_features,
    frechet_feature_distance,
    predict,
    save_feature_net,
    train_feature_net,
)

HOLDOUT = 297
SETTINGS = [("heun", 18), ("dpmpp-2m", 10), ("heun", 5)]  # 35, 10 and 9 NFE
SEEDS = (0, 1)
SPREAD_SEEDS = tuple(range(8))  # the goal is judged on SEEDS; these show how far a seed alone moves the FD
GOALS = {35: 1.00, 10: 1.15}  # FD / floor
GOAL_COPY, GOAL_PARAMS, GOAL_RATIO, GOAL_RATIO_WALL_S = 0.01, 701_000, 1.70, 750.0
REFERENCES = [
    "lucidrains' denoising-diffusion-pytorch defaults: 1.70× the floor at 50 NFE, 1.77× at 10 NFE (826k parameters)",
    "diffusers' unconditional training recipe: 5.3× at 50 NFE, 4.5× at 10 NFE (701k parameters)",
]


def to_unit(x: np.ndarray) -> np.ndarray:
    """Digits pixels 0..16 → [-1, 1], clipped to the valid range first."""
    return (np.clip(x, 0.0, 16.0) / 8.0 - 1.0).astype(np.float32)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [("--reuse", {
        "action": "store_true", "help": "evaluate the finished run in benchmarks/out instead of training afresh"})])
    steps, every, n = (40, 20, 200) if args.quick else (3000, 500, 1500)
    config = {"data": {"source": "digits", "holdout": HOLDOUT},
              "train": {"steps": steps, "batch_size": 128, "checkpoint_every": every, "keep_checkpoints": 10}}
    config, tag = with_overrides(config, args.set)
    out = OUT / (("digits-quick" if args.quick else "digits") + tag)

    # 1. The feature net, on the training split only (the same split the run uses: split_seed 0).
    ds = load_data(DataConfig(source="digits", holdout=HOLDOUT))
    train_u, held_u = to_unit(ds.train), to_unit(ds.holdout)
    t0 = time.perf_counter()
    net = train_feature_net(train_u, ds.train_labels, seed=0)
    net_s = time.perf_counter() - t0
    net_acc = accuracy(net, held_u, ds.holdout_labels)
    OUT.mkdir(parents=True, exist_ok=True)
    save_feature_net(net, OUT / "digits-features.safetensors", info={"seed": 0, "held_out_accuracy": net_acc})
    floor = frechet_feature_distance(net, train_u, held_u)
    print(f"feature net: {net_acc:.2%} held-out accuracy, trained in {net_s:.1f} s; floor FD = {floor:.3f}")

    # 2. The diffusion run (or the finished one, with --reuse).
    finished = out / "summary.json"
    if args.reuse and finished.exists() and json.loads(finished.read_text())["steps"] == steps:
        summary, train_call_s = json.loads(finished.read_text()), None
        print(f"reusing {out}")
    else:
        if out.exists():  # this script's own run directory: start afresh so the wall time is a whole run's
            shutil.rmtree(out)
        t0 = time.perf_counter()
        summary = steadydiff.train(config, out=out, progress=False).summary
        train_call_s = time.perf_counter() - t0
    info = json.loads((out / "dataset.json").read_text())
    if (info["n_train"], info["n_holdout"]) != (len(ds.train), len(ds.holdout)):
        raise RuntimeError(f"the run's split {info['n_train']}/{info['n_holdout']} differs from the feature net's")
    train_flat = train_u.reshape(len(train_u), -1)

    # 3. The final EMA weights: every setting, two seeds each.
    t_eval = time.perf_counter()
    model = steadydiff.load(out)
    rows, final, heun35 = [], {}, {}
    for sampler, k in SETTINGS:
        nfe = model.nfe(k, sampler)
        fds, copies = [], []
        for seed in SEEDS:
            x = to_unit(model.sample(n, steps=k, sampler=sampler, seed=seed))
            fds.append(frechet_feature_distance(net, x, held_u))
            if (sampler, k) == SETTINGS[0]:
                heun35[seed] = x
            copies.append(copy_fraction(x.reshape(n, -1), train_flat)["copy_fraction"])
        mean = float(np.mean(fds))
        final[(sampler, k)] = {"nfe": nfe, "fd": fds, "mean": mean, "copy": float(np.mean(copies))}
        goal = GOALS.get(nfe)
        rows.append([f"{sampler} {k} steps", nfe, *(f"{v:.3f}" for v in fds), f"{mean:.3f}", f"{mean / floor:.2f}×",
                     "—" if goal is None else f"≤ {goal:.2f}× ({'met' if mean / floor <= goal else 'NOT met'})",
                     f"{100 * np.mean(copies):.2f}%"])

    # 3b. Seed spread of the two goal settings: six more seeds beside the two above.
    spread = {}
    for sampler, k in SETTINGS[:2]:
        fds = list(final[(sampler, k)]["fd"])
        for seed in SPREAD_SEEDS[len(SEEDS):]:
            x = to_unit(model.sample(n, steps=k, sampler=sampler, seed=seed))
            fds.append(frechet_feature_distance(net, x, held_u))
            if (sampler, k) == SETTINGS[0]:
                heun35[seed] = x
        spread[(sampler, k)] = np.asarray(fds) / floor

    # 3c. Where the 35-NFE distance comes from, seed by seed, beside the floor's own split.
    held_f = extract_features(net, held_u)
    held_shares = class_shares(ds.holdout_labels, 10)

    def terms_row(name: str, x: np.ndarray) -> list:
        mean_term, cov_term = frechet_terms(extract_features(net, x), held_f)
        tv = class_balance(predict(net, x), held_shares)["tv_distance"]
        return [name, f"{mean_term:.2f}", f"{cov_term:.2f}", f"{mean_term + cov_term:.3f}", f"{tv:.3f}"]

    terms_rows = [terms_row(f"the {len(train_u):,} real training digits (the floor)", train_u)]
    terms_rows += [terms_row(f"{n:,} samples, seed {seed}", heun35[seed]) for seed in SPREAD_SEEDS]

    # 4. Quality over training: each kept checkpoint at 35 NFE, seed 0.
    ckpts = sorted((int(m.group(1)), p) for p in (out / "checkpoints").iterdir()
                   if (m := re.fullmatch(r"step-(\d+)", p.name)))
    curve = []
    for step, path in ckpts:
        wall = json.loads((path / "state.json").read_text())["wall_s"]
        if step == summary["steps"]:
            fd = final[("heun", 18)]["fd"][0]
        else:
            m = steadydiff.load(out, checkpoint=path.name)
            fd = frechet_feature_distance(net, to_unit(m.sample(n, steps=18, sampler="heun", seed=0)), held_u)
        curve.append((step, wall, fd))
    eval_s = time.perf_counter() - t_eval
    reached = next(((s, w, fd) for s, w, fd in curve if fd / floor <= GOAL_RATIO), None)

    # 5. Report.
    params, copy35 = summary["parameters"], final[("heun", 18)]["copy"]
    wall_line = f"Training wall time: {fmt_s(summary['wall_s'])} in the loop (incl. validation, checkpoints, grids)"
    if train_call_s is not None:
        wall_line += f"; {fmt_s(train_call_s)} for the whole `steadydiff.train` call"
    lines = [
        f"`digits`, config `{json.dumps(config)}` (everything else default): {summary['backbone']}, "
        f"{params:,} parameters, {summary['steps']:,} steps × batch {summary['batch_size']}. {wall_line}.",
        f"Feature net: DigitsFeatureNet trained on the 1,500 training digits (seed 0) in {net_s:.1f} s, "
        f"{net_acc:.1%} accuracy on the 297 held-out digits.",
        f"Floor: FD(1,500 real training digits, 297 held-out) = **{floor:.3f}**. Samples: {n:,} per seed, EMA weights, "
        "clipped to 0..16.",
        "",
        table(["sampler", "NFE", *(f"FD seed {s}" for s in SEEDS), "FD mean", "× floor", "goal",
               "copies of training digits"], rows),
        "",
        f"Seed spread (FD / floor of {n:,} samples from each of seeds {SPREAD_SEEDS[0]}–{SPREAD_SEEDS[-1]}; the goals "
        f"use seeds {SEEDS[0]} and {SEEDS[1]}, fixed before any of these runs):",
        "",
        table(["sampler", "NFE", *(f"seed {s}" for s in SPREAD_SEEDS), f"mean of {len(SPREAD_SEEDS)}", "std"],
              [[f"{sampler} {k} steps", final[(sampler, k)]["nfe"], *(f"{v:.2f}" for v in r), f"{r.mean():.3f}×",
                f"{r.std(ddof=1):.3f}"] for (sampler, k), r in spread.items()]),
        "",
        f"Where the distance comes from at {final[SETTINGS[0]]['nfe']} NFE: the FD's mean term ||μ − μ_held||² and "
        "covariance term Tr(Σ + Σ_held − 2 (Σ Σ_held)^½) in the feature net's space, and the total-variation "
        "distance between the class mix the feature net predicts for each set and the held-out digits' labels:",
        "",
        table(["set", "mean term", "covariance term", "FD", "class mix TV distance from held-out"],
              terms_rows),
        "",
        "Goals:",
        f"- ≤ 1.00× floor at 35 NFE: {final[('heun', 18)]['mean'] / floor:.2f}×",
        f"- ≤ 1.15× floor at 10 NFE: {final[('dpmpp-2m', 10)]['mean'] / floor:.2f}×",
        f"- ≤ 1% memorised (35 NFE): {100 * copy35:.2f}% ({'met' if copy35 <= GOAL_COPY else 'NOT met'})",
        f"- ≤ 701k parameters: {params:,} ({'met' if params <= GOAL_PARAMS else 'NOT met'})",
        f"- {GOAL_RATIO:.2f}× floor reached within {GOAL_RATIO_WALL_S:.0f} s of training: "
        + ("not reached by any checkpoint" if reached is None else
           f"first at step {reached[0]:,} after {reached[1]:.0f} s "
           f"({'met' if reached[1] <= GOAL_RATIO_WALL_S else 'NOT met'}; "
           f"resolution: one checkpoint per {every} steps)"),
        "",
        "Reference points (from the issue):",
        *(f"- {r}" for r in REFERENCES),
        "",
        "Quality over training (EMA weights of each checkpoint, heun 18 steps = 35 NFE, seed 0):",
        "",
        table(["step", "wall time at checkpoint", "FD", "× floor"],
              [[f"{s:,}", f"{w:.0f} s", f"{fd:.3f}", f"{fd / floor:.2f}×"] for s, w, fd in curve]),
        "",
        f"Evaluation took {fmt_s(eval_s)} (sampling dominates).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.quick and not args.set:
        write_section("digits_quality", "digits — Fréchet distance in a digit classifier's feature space", body)


if __name__ == "__main__":
    main()
