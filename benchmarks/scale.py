"""scale — data-parallel training under torchrun, and the CPU thread count, measured on this machine.

Three parts, each a set of real `steadydiff train` runs (subprocesses; torchrun for several processes):

- equivalence: `toy:grid25` (batch 64) and `digits` (batch 32, the conditional U-Net with augmentation), 200 steps,
  one process against two (gloo); the relative difference ‖w₂ − w₁‖ / ‖w₁‖ of the raw and EMA weights, and the
  largest relative difference of a logged loss.
- throughput: the default `digits` run (batch 128) for 150 steps as 1 process × 1 thread, 1 process × 2 threads and
  2 processes × 1 thread (DDP); samples/s is the median over the run's metrics.jsonl windows after the first,
  rounds taken in turn so a drift of the machine's load hits every configuration alike.
- threads: `toy:ring8` (MLP, batch 64) with 2 threads forced against the measured choice (train.threads=0), on a
  free CPU and with one other busy process (a spinning Python loop) beside it.
- precision: one training step (forward, backward, AdamW; `train.loop.measure_step`, the step `--dry-run` times)
  of the default `digits` (batch 128) and `mnist` (batch 32) networks at fp32, bf16 autocast and fp32 with
  torch.compile, one thread, median of 5 steps after a warm-up, configurations in turn over rounds.

The CPU must be otherwise idle; the load average at the start is printed with the figures.

    .venv/bin/python benchmarks/scale.py [--part equivalence throughput threads precision] [--rounds 2] [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from _common import LOAD_AT_START, OUT, load_results, parse_args, save_result, table, write_section

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
ROOT_OUT = OUT / "scale"
QUIET = ["train.sample_metrics_every=0", "train.sample_every=0", "train.log_every=10"]


def train(out: Path, data: str, steps: int, batch: int, *sets: str, nproc: int = 1, threads: int | None = None
          ) -> float:
    """One run from scratch; returns its wall seconds. threads=None leaves OMP_NUM_THREADS unset."""
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "steadydiff", "train", "--data", data, "--steps", str(steps), "--batch-size",
           str(batch), "--out", str(out), "--quiet", "--set", *QUIET, *sets]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - t0


def records(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def samples_per_s(run: Path) -> float:
    rates = [r["samples_per_s"] for r in records(run)[1:]]  # the first window holds start-up
    return statistics.median(rates)


def relative(a: Path, b: Path, name: str) -> float:
    x, y = load_file(str(a / f"{name}.safetensors")), load_file(str(b / f"{name}.safetensors"))
    num = sum(float(((x[k] - y[k]).double() ** 2).sum()) for k in x) ** 0.5
    return num / sum(float((x[k].double() ** 2).sum()) for k in x) ** 0.5


def equivalence(quick: bool) -> None:
    steps = 20 if quick else 200
    for data, batch in (("toy:grid25", 64), ("digits", 32)):
        one, two = ROOT_OUT / f"eq-{data.replace(':', '-')}-1", ROOT_OUT / f"eq-{data.replace(':', '-')}-2"
        w1 = train(one, data, steps, batch, threads=1)
        w2 = train(two, data, steps, batch, nproc=2, threads=1)
        last = f"checkpoints/step-{steps}"
        l1, l2 = records(one), records(two)
        loss = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(l1, l2, strict=True))
        r = {"data": data, "batch": batch, "steps": steps, "model": relative(one / last, two / last, "model"),
             "ema": relative(one / last, two / last, "ema"), "loss": loss, "wall_1": round(w1, 1),
             "wall_2": round(w2, 1)}
        print(json.dumps(r), flush=True)
        if not quick:
            save_result(RESULTS, f"equivalence/{data}", r)


def throughput(quick: bool, rounds: int) -> None:
    steps = 30 if quick else 150
    configs = {"1 process × 1 thread": (1, 1), "1 process × 2 threads": (1, 2), "2 processes × 1 thread": (2, 1)}
    rates: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(rounds):
        for name, (nproc, threads) in configs.items():
            run = ROOT_OUT / f"tp-{nproc}x{threads}"
            sets = [] if nproc > 1 else [f"train.threads={threads}"]
            train(run, "digits", steps, 128, *sets, nproc=nproc, threads=1 if nproc > 1 else None)
            rates[name].append(samples_per_s(run))
            print(name, round(rates[name][-1], 1), flush=True)
    if not quick:
        save_result(RESULTS, "throughput/digits", {"steps": steps, "batch": 128, "rates": rates,
                                                   "load_at_start": LOAD_AT_START})


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def threads_part(quick: bool, rounds: int) -> None:
    steps = 60 if quick else 400
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        for busy in (False, True):
            other = spinner() if busy else None
            try:
                for name, setting in (("2 threads (torch's default here)", 2), ("measured choice", 0)):
                    run = ROOT_OUT / f"thr-{setting}-{busy}"
                    train(run, "toy:ring8", steps, 64, f"train.threads={setting}")
                    chosen = json.loads((run / "checkpoints" / f"step-{steps}" / "state.json").read_text())["threads"]
                    key = f"{'one other busy process' if busy else 'free CPU'}|{name}"
                    out.setdefault(key, []).append(samples_per_s(run))
                    out.setdefault(key + "|threads", []).append(chosen)
                    print(key, round(out[key][-1], 1), "threads", chosen, flush=True)
            finally:
                if other is not None:
                    other.kill()
    if not quick:
        save_result(RESULTS, "threads/ring8", {"steps": steps, "batch": 64, "rates": out,
                                               "load_at_start": LOAD_AT_START})


def precision(quick: bool, rounds: int) -> None:
    from steadydiff.config import RunConfig, apply_overrides
    from steadydiff.train.loop import measure_step, plan

    configs = {"fp32": [], "bf16": ["train.precision=bf16"], "fp32 + compile": ["train.compile=true"]}
    out: dict[str, dict[str, list[float]]] = {}
    for data, batch in (("digits", 128), ("mnist", 32)):
        for _ in range(rounds):
            for name, sets in configs.items():
                cfg = RunConfig()
                apply_overrides(cfg, [f"data.source={data}", f"train.batch_size={batch}", "train.threads=1", *sets])
                resolved, ds, net = plan(cfg)
                m = measure_step(resolved, ds, net, repeats=2 if quick else 5)
                if "compile" in name and not m["compiled"]:
                    raise SystemExit("torch.compile failed: see the warning above")
                out.setdefault(f"{data}|{batch}", {}).setdefault(name, []).append(m["samples_per_s"])
                print(data, name, round(m["samples_per_s"], 1), flush=True)
    if not quick:
        save_result(RESULTS, "precision", {"rates": out, "load_at_start": LOAD_AT_START})


def report() -> str:
    res = load_results(RESULTS)
    parts = []
    eq = [v for k, v in res.items() if k.startswith("equivalence/")]
    if eq:
        parts.append("### One process against two (DDP, gloo)\n\n" + table(
            ["data", "batch", "steps", "‖Δw‖/‖w‖ raw", "EMA", "largest relative loss difference", "wall 1 / 2 proc"],
            [[r["data"], r["batch"], r["steps"], f"{r['model']:.1e}", f"{r['ema']:.1e}", f"{r['loss']:.1e}",
              f"{r['wall_1']:.0f} s / {r['wall_2']:.0f} s"] for r in eq]))
    tp = res.get("throughput/digits")
    if tp:
        base = statistics.median(tp["rates"]["1 process × 2 threads"])
        rows = [[k, " ".join(f"{v:.0f}" for v in vs), f"{statistics.median(vs):.0f}",
                 f"{statistics.median(vs) / base:.2f}×"] for k, vs in tp["rates"].items()]
        parts.append(f"### Throughput: default digits run (batch {tp['batch']}, {tp['steps']} steps)\n\n" + table(
            ["configuration", "samples/s per round", "median", "against 1 × 2 threads"], rows) +
            f"\n\nLoad average at the start: {tp['load_at_start']:.2f}.")
    th = res.get("threads/ring8")
    if th:
        rows = []
        for key, vs in th["rates"].items():
            if key.endswith("|threads"):
                continue
            where, name = key.split("|")
            rows.append([where, name, " ".join(str(t) for t in th["rates"][key + "|threads"]),
                         f"{statistics.median(vs):,.0f}"])
        parts.append(f"### Thread count: toy:ring8 (MLP, batch {th['batch']}, {th['steps']} steps)\n\n" + table(
            ["CPU", "setting", "threads used (per round)", "samples/s (median of rounds)"], rows))
    pr = res.get("precision")
    if pr:
        rows = []
        for key, by in pr["rates"].items():
            data, batch = key.split("|")
            base = statistics.median(by["fp32"])
            rows += [[data, batch, name, " ".join(f"{v:.0f}" for v in vs), f"{statistics.median(vs):.0f}",
                      f"{statistics.median(vs) / base:.2f}×"] for name, vs in by.items()]
        parts.append("### Precision and compile on this CPU (one training step, one thread)\n\n" + table(
            ["data", "batch", "setting", "samples/s per round", "median", "against fp32"], rows))
    return "\n\n".join(parts)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--part", {"nargs": "+", "default": ["equivalence", "throughput", "threads", "precision"],
                    "choices": ["equivalence", "throughput", "threads", "precision"]}),
        ("--rounds", {"type": int, "default": 2}),
        ("--report-only", {"action": "store_true"}),
    ])
    print(f"load average at start: {LOAD_AT_START:.2f}", flush=True)
    if not args.report_only:
        if "equivalence" in args.part:
            equivalence(args.quick)
        if "throughput" in args.part:
            throughput(args.quick, args.rounds)
        if "threads" in args.part:
            threads_part(args.quick, args.rounds)
        if "precision" in args.part:
            precision(args.quick, args.rounds)
    if not args.quick:
        text = report()
        print(text)
        write_section("scale", "Scale: torchrun/DDP and CPU threads (benchmarks/scale.py)", text)


if __name__ == "__main__":
    main()
