"""gpu_smoke — the GPU path in at most five minutes, on any machine with a CUDA GPU (run by gpu_smoke.sh).

Trains the built-in `mnist` (28×28, class-conditional U-Net) for a few hundred steps with bf16 autocast and
torch.compile on one GPU, and with `--nproc 2` when two GPUs exist; samples 256 images; prints samples/s, peak
GPU memory, FLOPs per training item (torch's FlopCounterMode, forward + backward) and the achieved fraction of the
GPU's dense bf16 peak; then ensembles of 4 on `toy:grid25` (MLP) and `digits` (U-Net), 300 steps each, trained
batched (`train.ensemble_batched=true`, members vmapped) and one after another (the default): member-samples/s of
each, which decides whether batching should be the default on GPUs. Figures go to stdout and to OUT/gpu_smoke.json;
copy them into BENCHMARKS.md by hand with the machine's name (this script never runs in CI).

    .venv/bin/python benchmarks/gpu_smoke.py [--out DIR] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for the fraction achieved.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


def peak_of(name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value * 1e12
    return None


def train(out: Path, steps: int, nproc: int) -> dict:
    cmd = [sys.executable, "-m", "steadydiff", "train", "--data", "mnist", "--steps", str(steps), "--batch-size",
           "256", "--out", str(out), "--quiet", "--set", "train.precision=bf16", "train.compile=true",
           "train.sample_metrics_every=0", "train.sample_every=0", "train.log_every=25",
           "train.checkpoint_every=100000"]
    if nproc > 1:
        cmd[4:4] = ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return {"processes": nproc, "wall_s": round(wall, 1),
            "samples_per_s": statistics.median(r["samples_per_s"] for r in records[2:]),
            "peak_memory_mb": max(r["memory_mb"] for r in records),
            "compiled": "the model is compiled" in result.stderr, "log": result.stderr[-1500:]}


def ensemble_speed(out: Path, data: str, mode: str, k: int = 4, steps: int = 300) -> dict:
    batched = "true" if mode == "on" else "false"
    cmd = [sys.executable, "-m", "steadydiff", "train", "--data", data, "--steps", str(steps), "--batch-size",
           "256", "--out", str(out), "--quiet", "--set", f"train.ensemble={k}", f"train.ensemble_batched={batched}",
           "train.sample_metrics_every=0", "train.sample_every=0", "train.log_every=25"]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    spans = []
    for i in range(k):
        recs = [json.loads(ln) for ln in (out / "members" / str(i) / "metrics.jsonl").read_text().splitlines() if ln]
        spans.append((recs[-1]["wall_s"] - recs[0]["wall_s"], recs[-1]["step"] - recs[0]["step"]))
    loop = max(s for s, _ in spans) if mode == "on" else sum(s for s, _ in spans)
    return {"data": data, "mode": mode, "members": k, "wall_s": round(time.perf_counter() - t0, 1),
            "member_samples_per_s": round(k * spans[0][1] * 256 / loop, 1),
            "training": json.loads((out / "ensemble.json").read_text())["training"]}


def flops_per_item() -> float:
    from steadydiff.config import RunConfig, apply_overrides
    from steadydiff.train.loop import measure_step, plan

    cfg = RunConfig()
    apply_overrides(cfg, ["data.source=mnist", "train.batch_size=256", "train.precision=bf16"])
    resolved, ds, net = plan(cfg)
    return measure_step(resolved, ds, net)["flops_per_sample"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/steadydiff-gpu-smoke")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_smoke: no CUDA GPU here; this script measures the GPU path only")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0)
    flops = flops_per_item()
    report = {"gpu": name, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
              "flops_per_item": flops, "runs": []}
    for nproc in [1, 2] if torch.cuda.device_count() >= 2 else [1]:
        r = train(out / f"mnist-{nproc}", args.steps, nproc)
        peak = peak_of(name)
        r["fraction_of_bf16_peak"] = None if peak is None else r["samples_per_s"] * flops / (peak * nproc)
        report["runs"].append(r)
        print(f"{nproc} GPU(s): {r['samples_per_s']:,.0f} items/s, peak memory {r['peak_memory_mb']:,.0f} MB, "
              f"compiled: {r['compiled']}, "
              + ("bf16 peak fraction unknown for this GPU" if peak is None else
                 f"{100 * r['fraction_of_bf16_peak']:.1f} % of the GPU's dense bf16 peak"), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(out / "mnist-1"), "--n", "256", "--out",
                    str(out / "samples.png")], check=True, capture_output=True)
    report["sample_256_s"] = round(time.perf_counter() - t0, 1)
    print(f"FLOPs per training item (forward + backward): {flops / 1e9:.2f} GFLOP; 256 samples (heun, 35 NFE) in "
          f"{report['sample_256_s']} s including start-up")
    report["ensemble"] = []
    for data in ("toy:grid25", "digits"):
        pair = [ensemble_speed(out / f"ensemble-{data.replace(':', '-')}-{mode}", data, mode) for mode in ("off", "on")]
        report["ensemble"] += pair
        off, on = (r["member_samples_per_s"] for r in pair)
        print(f"ensemble of 4, {data}: {off:,.0f} member-samples/s one after another, {on:,.0f} batched "
              f"({on / off:.2f}×)", flush=True)
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'gpu_smoke.json'}; machine: {name}, {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
