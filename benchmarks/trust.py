"""trust — numbers that never contradict themselves: FD and KID of samples beside real data's floor at the same
number of items, the report's wall time, and the quality-vs-NFE ranking in a feature space that means something.

Three runs, as a new user would make them:
- `digits` with the defaults (3,000 × 128);
- a folder of 2,000 MNIST digits written as 16 × 16 PNG files (the shipped MNIST classifier scores them,
  resized), 300 steps with the defaults otherwise;
- scikit-learn's breast-cancer table as a CSV file (569 rows × 30 columns), the defaults.

For each, at 250, 500, 1,500 and all training items (as many as the split allows), real data's floor (training
items against the held-out ones, FD over 8 draws with its spread, KID with its standard error) and the run's
samples at the same size, each read against that floor; then `steadydiff report` timed from scratch (eval.json
and the report's samples drawn); then eval.json's quality-vs-NFE table of the MNIST folder, Euler against Heun.

    .venv/bin/python benchmarks/trust.py            # ~25 min on one busy core
    .venv/bin/python benchmarks/trust.py --quick    # a smoke run: tiny step counts, nothing written
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import OUT, parse_args, table, write_section

SIZES = (250, 500, 1500)
SAMPLER, STEPS = "dpmpp-2m", 10  # 10 NFE: within 1.05× of 35 NFE on digits, and a 16-px folder samples in minutes
ROOT_OUT = OUT / "trust"


def mnist_folder(root: Path, n: int = 2000, size: int = 16) -> Path:
    """n MNIST digits (the built-in set's 5,000, in a seeded order) as size × size grey PNG files."""
    from PIL import Image

    from steadydiff.data import DataConfig, load_data

    folder = root / f"mnist{size}-png"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ds = load_data(DataConfig(source="mnist", holdout=0))
    pick = np.random.default_rng(0).permutation(len(ds.train))[:n]
    for i, j in enumerate(pick):
        img = Image.fromarray(ds.train[j, 0].astype(np.uint8), "L").resize((size, size), Image.Resampling.LANCZOS)
        img.save(folder / f"{i:05d}.png")
    return folder


def cancer_csv(root: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    path = root / "breast-cancer.csv"
    if not path.is_file():
        data = load_breast_cancer()
        rows = [",".join(f"{v:.6g}" for v in row) for row in data.data]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(",".join(n.replace(" ", "_") for n in data.feature_names) + "\n" + "\n".join(rows) + "\n")
    return path


def train_run(name: str, source: str, steps: int | None, quick: bool) -> Path:
    import steadydiff

    out = ROOT_OUT / ("quick" if quick else "runs") / name
    cfg: dict = {"data": {"source": source}, "train": {}}
    if steps is not None:
        cfg["train"]["steps"] = steps
    if quick:
        cfg["train"].update({"steps": 20, "sample_metrics_every": 0})
    if not (out / "summary.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        steadydiff.train(cfg, out=out, progress=False)
    return out


def floor_rows(run: Path, quick: bool) -> tuple[list[list], int, str]:
    """Per size: floor and samples, FD and KID, with the verdict against the floor."""
    import steadydiff
    from steadydiff.data import load_data
    from steadydiff.metrics.reference import FEATURE_NET_FILE, Reference, against_floor

    model = steadydiff.load(run)
    ds = load_data(model.config.data)
    sizes = [n for n in SIZES if n < len(ds.train)] + [len(ds.train)]
    if quick:
        sizes = sizes[:1]
    ref = Reference(ds, model.normaliser, sizes[0], cache=run / FEATURE_NET_FILE)
    fd = ref.fd_key
    rows, below = [], 0
    # Sample i depends on (seed, i) alone: one draw of the largest size holds every smaller set as its prefix.
    top = sizes[-1]
    cond = model.conditions(top, seed=1)
    x_all = model.sample(top, seed=1, cond=cond, sampler=SAMPLER, steps=STEPS)
    for n in sizes:
        floor = ref.floor(n)
        scored = ref.score(x_all[:n], memorisation=False,
                           labels=cond[:n] if model.classes is not None else None)
        fd_where = against_floor(fd, scored.get(fd), floor)[0] if fd in scored else "—"
        kid_where = against_floor("kid", scored["kid"], floor, scored["kid_se"])[0]
        below += (fd_where == "below") + (kid_where == "below")
        sd = floor.get(f"{fd}_sd")
        rows.append([n, f"{floor[fd]:.4g}" + (f" ± {sd:.2g}" if sd else " (all items: no spread)"),
                     f"{scored[fd]:.4g}", fd_where, f"{floor['kid']:.3g} ± {floor['kid_se']:.2g}",
                     f"{scored['kid']:.3g} ± {scored['kid_se']:.2g}", kid_where])
    return rows, below, f"{ref.space} ({fd})"


def time_report(run: Path, quick: bool) -> float:
    """`steadydiff report` as after training: eval.json and any report removed first; the samples the end of
    training kept (RUN/eval-samples.npy) stay, as they do in every run directory."""
    for name in ("eval.json", "report.html"):
        (run / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    args = [sys.executable, "-m", "steadydiff", "report", str(run)] + (["--samples", "20"] if quick else [])
    subprocess.run(args, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def nfe_rows(run: Path, quick: bool) -> list[list]:
    """Euler against Heun at about equal NFE, in the run's default feature space: eval.json's table where the
    report drew it, else drawn here for those two solvers at 10 and 20 NFE."""
    import steadydiff.evaluate as ev_mod

    try:
        ev = json.loads((run / "eval.json").read_text())["quality_vs_nfe"]
    except (OSError, KeyError, ValueError):
        ev = ev_mod.evaluate(run, samplers=("heun", "euler"), nfe=(10, 20), n=20 if quick else 250)
    metric = ev["data"]["fd_metric"]
    rows = []
    for r in ev["table"]:
        m = r["metrics"]
        rows.append([r["solver"], r["steps"], r["nfe"], f"{m.get(metric, float('nan')):.4g}",
                     f"{m['kid']:.3g} ± {m['kid_se']:.2g}" if "kid" in m else "—"])
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    ROOT_OUT.mkdir(parents=True, exist_ok=True)
    runs = {"digits (defaults, 3,000 × 128)": train_run("digits", "digits", None, args.quick),
            "MNIST folder, 2,000 PNGs at 16 px (300 steps)": train_run(
                "mnist16", str(mnist_folder(ROOT_OUT)), 300, args.quick),
            "breast-cancer.csv (569 × 30)": train_run("cancer", str(cancer_csv(ROOT_OUT)), None, args.quick)}
    sections, total_below, times = [], 0, []
    for title, run in runs.items():
        rows, below, space = floor_rows(run, args.quick)
        total_below += below
        sections.append(f"**{title}**, scored in {space}:\n\n" + table(
            ["items", "floor FD", "samples FD", "against the floor", "floor KID", "samples KID",
             "against the floor"], rows))
        print(sections[-1], flush=True)
    for title, run in runs.items():
        seconds = time_report(run, args.quick)
        times.append([title, f"{seconds:.0f} s"])
        print(title, f"report {seconds:.0f} s", flush=True)
    mnist_rows = nfe_rows(runs["MNIST folder, 2,000 PNGs at 16 px (300 steps)"], args.quick)
    body = ("Samples: seed 1, DPM-Solver++(2M) with 10 steps (10 NFE), EMA weights, one draw of the largest size "
            "whose prefixes are the smaller sets (sample i depends on (seed, i) alone); conditional runs draw their "
            "conditions like the training items'. \"at\": within the floor's noise (2 × the FD's spread over 8 "
            "draws of real items; 2 standard errors of the KID difference); \"above\": worse than real data; "
            "\"below\": better than real "
            f"data beyond the noise, which no model can be. **Rows below the floor: {total_below}.**\n\n"
            + "\n\n".join(sections)
            + "\n\n### `steadydiff report` after training\n\nWith eval.json removed first (the samples training kept "
            "stay); the report draws eval.json's table itself when that takes at most 40 s here, else says how to "
            "get it.\n\n"
            + table(["run", "wall time"], times)
            + "\n\n### Quality against NFE on the MNIST folder (eval.json: 250 samples per setting, seed 0)\n\n"
            + table(["solver", "steps", "NFE", "FD", "KID"], mnist_rows))
    print(body)
    if not args.quick:
        write_section("trust", "Numbers a newcomer can trust (benchmarks/trust.py)", body)


if __name__ == "__main__":
    main()
