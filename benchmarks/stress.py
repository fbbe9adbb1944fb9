"""stress — the stability guard against planted faults and learning rates far too high, with the guard on and off.

Cases (each trained with `guard.enabled` true and false, everything else default unless the case says so):
- `clean`: the default run, the reference for quality;
- `lr1e-3`, `lr1e-2`, `lr5e-2`: AdamW at that peak learning rate;
- `nan`: one value of one item of the batch at step 500 set to NaN, after the data scan (`batch_transform`);
- `scale`: the whole batch at step 500 multiplied by 1e6;
- `bf16`: bf16 autocast for the backbone.
Data: `digits` (3,000 steps × 128, quality = Fréchet distance of 1,500 EMA samples at 35 NFE to the 297 held-out
digits in the feature space of the classifier of benchmarks/digits_quality.py, seed 0) and `toy:grid25` (5,000 steps
× 256, quality = modes covered and the fraction of 2,500 samples within 3 std of a mode centre, 35 NFE).
`--overhead` times the loop with the guard on and off on clean runs (alternating, three times each).

Each run's result is kept in benchmarks/out/stress/results.json, so the matrix can be filled over several calls;
the BENCHMARKS.md section is written from everything measured so far (never by --quick).

    .venv/bin/python benchmarks/stress.py [--quick] [--data digits toy:grid25] [--cases clean nan ...]
                                          [--guard on off] [--overhead] [--fresh]
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import steadydiff
from _common import OUT, fmt_s, parse_args, table, write_section
from steadydiff.data import DataConfig, load_data
from steadydiff.errors import TrainingStopped
from steadydiff.metrics import mode_stats
from steadydiff.metrics.features import frechet_feature_distance, train_feature_net

CASES = ["clean", "lr1e-3", "lr1e-2", "lr5e-2", "nan", "scale", "bf16"]
DATA = {"digits": {"data": {"source": "digits", "holdout": 297}, "train": {"steps": 3000, "batch_size": 128}},
        "toy:grid25": {"data": {"source": "toy:grid25"}, "train": {"steps": 5000, "batch_size": 256}}}
QUICK = {"toy:grid25": {"data": {"source": "toy:grid25", "toy_samples": 4000},
                        "net": {"mlp": {"width": 128, "blocks": 2}},
                        "train": {"steps": 150, "batch_size": 128, "warmup_samples": 2560, "val_every": 50}}}
FAULT_STEP, QUICK_FAULT_STEP = 500, 100
GOAL_RATIO = 1.5  # guard on: final quality within 1.5× the clean run's
RESULTS = OUT / "stress" / "results.json"


def case_config(base: dict, case: str, guard: bool) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg.setdefault("train", {})["sample_every"] = 0
    cfg["guard"] = {"enabled": guard}
    if case.startswith("lr"):
        cfg["train"]["lr"] = float(case[2:])
    if case == "bf16":
        cfg["train"]["precision"] = "bf16"
    return cfg


def fault(case: str, at: int):
    """The planted fault: a batch corrupted after loading, past every check the data went through."""
    def transform(step: int, x: torch.Tensor) -> torch.Tensor:
        if step != at or case not in ("nan", "scale"):
            return x
        if case == "nan":
            x = x.clone()
            x[0].view(-1)[0] = float("nan")
            return x
        return x * 1e6
    return transform


def finite(run: Path, ema: bool) -> bool:
    model = steadydiff.load(run, ema=ema)
    return all(bool(torch.isfinite(p).all()) for p in model.denoiser.parameters())


class Judge:
    """Quality of a run's EMA weights: classifier FD for digits, mode statistics for the 2-D mixture."""

    def __init__(self, data: str, quick: bool):
        self.data, self.quick = data, quick
        if data == "digits":
            ds = load_data(DataConfig(source="digits", holdout=297))
            self.to_unit = lambda x: (np.clip(x, 0.0, 16.0) / 8.0 - 1.0).astype(np.float32)
            self.held = self.to_unit(ds.holdout)
            self.net = train_feature_net(self.to_unit(ds.train), ds.train_labels, seed=0)
            self.floor = frechet_feature_distance(self.net, self.to_unit(ds.train), self.held)

    def __call__(self, run: Path) -> dict:
        model = steadydiff.load(run)
        if self.data == "digits":
            x = model.sample(200 if self.quick else 1500, steps=18, sampler="heun", seed=0)
            if not np.isfinite(x).all():
                return {"fd": None}
            return {"fd": round(frechet_feature_distance(self.net, self.to_unit(x), self.held), 4)}
        x = model.sample(500 if self.quick else 2500, steps=18, sampler="heun", seed=0)
        if not np.isfinite(x).all():
            return {"modes": 0, "high_quality": None}
        info = json.loads((run / "dataset.json").read_text())
        s = mode_stats(x, np.asarray(info["modes"]), info["mode_std"])
        return {"modes": s["modes_covered"], "high_quality": round(s["high_quality"], 4)}


def run_case(data: str, case: str, guard: bool, judge: Judge, quick: bool) -> dict:
    base = QUICK[data] if quick else DATA[data]
    out = OUT / ("stress-quick" if quick else "stress") / f"{data.replace(':', '_')}-{case}-{'on' if guard else 'off'}"
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    stopped = None
    try:
        summary = steadydiff.train(case_config(base, case, guard), out=out, progress=False,
                                   batch_transform=fault(case, QUICK_FAULT_STEP if quick else FAULT_STEP)).summary
    except TrainingStopped as exc:
        summary, stopped = json.loads((out / "summary.json").read_text()), str(exc)
    wall = time.perf_counter() - t0
    result = {"data": data, "case": case, "guard": guard, "wall_s": round(wall, 1), "stopped": stopped,
              "finite_raw": finite(out, ema=False), "finite_ema": finite(out, ema=True),
              "stability": summary.get("stability"), **judge(out)}
    incidents = out / "incidents.jsonl"
    result["incident_kinds"] = sorted({json.loads(ln)["guard"] for ln in incidents.read_text().splitlines()}) \
        if incidents.exists() else []
    print(json.dumps(result))
    return result


def overhead(data: str, quick: bool) -> dict:
    """Loop wall time with the guard on and off, alternating, on clean runs without sample grids or sample metrics."""
    base = json.loads(json.dumps(QUICK[data] if quick else DATA[data]))
    base["train"]["steps"] = 60 if quick else (400 if data == "digits" else 1500)
    base["train"]["sample_metrics_every"] = 0  # evaluation has its own budget (train.eval_budget); not the guard's
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(1 if quick else 3):
        for guard in (False, True):
            out = OUT / "stress-overhead" / f"{data.replace(':', '_')}-{guard}"
            shutil.rmtree(out, ignore_errors=True)
            summary = steadydiff.train(case_config(base, "clean", guard), out=out, progress=False).summary
            times[guard].append(summary["wall_s"])
    on, off = statistics.median(times[True]), statistics.median(times[False])
    result = {"data": data, "steps": base["train"]["steps"], "on_s": times[True], "off_s": times[False],
              "overhead": round(on / off - 1, 4)}
    print(json.dumps(result))
    return result


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}, "overhead": {}}


def quality_text(r: dict) -> str:
    if r["data"] == "digits":
        return "non-finite samples" if r.get("fd") is None else f"FD {r['fd']:.3f}"
    return "non-finite samples" if r.get("high_quality") is None else \
        f"{r['modes']}/25 modes, {100 * r['high_quality']:.1f}%"


def ratio(r: dict, clean: dict | None) -> float | None:
    """How many times worse than the clean guarded run (1.0 = as good)."""
    if clean is None:
        return None
    if r["data"] == "digits":
        return None if r.get("fd") is None else r["fd"] / clean["fd"]
    if r.get("high_quality") is None or r["high_quality"] == 0:
        return None
    return clean["high_quality"] / r["high_quality"]


def report(results: dict, floor: float | None) -> str:
    lines = ["Rows may come from separate calls (results kept in benchmarks/out/stress/results.json); each row is "
             "reproduced by `.venv/bin/python benchmarks/stress.py --data D --cases C --guard G`.", ""]
    for data in DATA:
        runs = {(r["case"], r["guard"]): r for r in results["runs"].values() if r["data"] == data}
        if not runs:
            continue
        clean = runs.get(("clean", True))
        rows = []
        for case in CASES:
            for guard in (True, False):
                r = runs.get((case, guard))
                if r is None:
                    continue
                q = ratio(r, clean)
                st = r.get("stability") or {}
                events = ", ".join(f"{k} {v}" for k, v in (st.get("incidents") or {}).items()) or "—"
                goal = "" if not guard else ("—" if case == "clean" else
                                             ("met" if q is not None and q <= GOAL_RATIO and r["finite_raw"] else
                                              "NOT met"))
                rows.append([case, "on" if guard else "off", "yes" if r["finite_raw"] and r["finite_ema"] else "**no**",
                             quality_text(r), "—" if q is None else f"{q:.2f}×", events if guard else "",
                             "stopped" if r.get("stopped") else "", fmt_s(r["wall_s"]), goal])
        unit = "FD / clean FD" if data == "digits" else "clean HQ / HQ"
        lines += [f"**{data}** ({DATA[data]['train']['steps']:,} steps × {DATA[data]['train']['batch_size']}, "
                  f"faults at step {FAULT_STEP})"
                  + (f"; real-data floor FD {floor:.3f}" if data == "digits" and floor else ""), "",
                  table(["case", "guard", "finite weights", "quality", unit, "guard events", "", "wall",
                         f"goal ≤ {GOAL_RATIO}×"], rows), ""]
    if results["overhead"]:
        rows = [[o["data"], o["steps"], " / ".join(f"{t:.1f}" for t in o["off_s"]),
                 " / ".join(f"{t:.1f}" for t in o["on_s"]), f"{100 * o['overhead']:+.1f}%"]
                for o in results["overhead"].values()]
        lines += ["Guard overhead on clean runs (loop wall time incl. validation and checkpoints, no grids; "
                  "medians of alternating runs; goal ≤ 3 %):", "",
                  table(["data", "steps", "guard off (s)", "guard on (s)", "overhead"], rows), ""]
    return "\n".join(lines)


def save_result(results: dict, group: str, key: str) -> dict:
    """Add one result to results.json as it is on disk now (another stress.py may have added some meanwhile)."""
    on_disk = load_results()
    on_disk.setdefault(group, {})[key] = results[group][key]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(on_disk, indent=1))
    tmp.replace(RESULTS)
    return on_disk


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--data", {"nargs": "+", "default": list(DATA), "choices": list(DATA)}),
        ("--cases", {"nargs": "+", "default": CASES, "choices": CASES}),
        ("--guard", {"nargs": "+", "default": ["on", "off"], "choices": ["on", "off"]}),
        ("--overhead", {"action": "store_true", "help": "time the guard on clean runs instead of the matrix"}),
        ("--fresh", {"action": "store_true", "help": "forget earlier results"}),
    ])
    if args.quick:
        args.data = ["toy:grid25"]
    results = {"runs": {}, "overhead": {}} if (args.fresh or args.quick) else load_results()
    floor = None
    for data in args.data:
        if args.overhead:
            results["overhead"][data] = overhead(data, args.quick)
            if not args.quick:
                results = save_result(results, "overhead", data)
            continue
        judge = Judge(data, args.quick)
        floor = getattr(judge, "floor", floor)
        for case in args.cases:
            for g in args.guard:
                r = run_case(data, case, g == "on", judge, args.quick)
                results["runs"][f"{data}/{case}/{g}"] = r
                if not args.quick:
                    results = save_result(results, "runs", f"{data}/{case}/{g}")
    if floor is None and "digits" in {r["data"] for r in results["runs"].values()}:
        floor = Judge("digits", False).floor
    text = report(results, floor)
    print(text if not args.quick else json.dumps(results["runs"] or results["overhead"]))
    if not args.quick:
        write_section("stress", "Stress matrix: the stability guard on and off (benchmarks/stress.py)", text)


if __name__ == "__main__":
    main()
