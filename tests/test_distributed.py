"""Data-parallel training under torchrun (gloo, CPU): two processes follow one process's trajectory with the same
global batch, decide together, resume with the same or another number of processes, and end when one dies or
hangs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from steadydiff.cli import without_nproc
from steadydiff.train.distributed import World

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
GRID = ("toy:grid25", "data.toy_samples=2000", "net.mlp.width=64", "train.val_items=48")
# Two processes sum their gradients in another order than one: float32 rounding, amplified a little by Adam over
# the run; measured ~3e-7 of the weights' norm after 200 steps (grid25 and digits). A real divergence (a batch
# drawn differently, a gradient not averaged) moves the weights by ≳1e-2 within a few steps.
TOLERANCE = 1e-5


def run_worker(out: Path, case: str, data: str, steps: int, batch: int, *overrides: str, nproc: int = 2,
               timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return subprocess.run([*launcher, WORKER, str(out), case, data, str(steps), str(batch), *overrides], env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def relative_difference(a: Path, b: Path, name: str = "model") -> float:
    x, y = load_file(str(a / f"{name}.safetensors")), load_file(str(b / f"{name}.safetensors"))
    num = sum(float(((x[k] - y[k]).double() ** 2).sum()) for k in x) ** 0.5
    return num / sum(float((x[k].double() ** 2).sum()) for k in x) ** 0.5


def ranks(out: Path, n: int = 2) -> list[dict]:
    return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(n)]


def test_world_shares() -> None:
    w = [World(rank=r, size=3) for r in range(3)]
    assert [x.shard(12) for x in w] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    rows = [x.rows(10) for x in w]  # uneven: 4, 4, 2, covering every row once
    assert [i for r in rows for i in range(r.start, r.stop)] == list(range(10))
    assert without_nproc(["train", "--nproc", "2", "--data", "x", "--nproc=3", "--out", "o"]) == \
        ["train", "--data", "x", "--out", "o"]


@pytest.mark.parametrize("data, steps, batch, extra", [
    pytest.param(GRID[0], 120, 64, GRID[1:], id="grid25"),
    pytest.param("digits", 40, 32, (), id="digits", marks=pytest.mark.slow)])  # the U-Net, conditional, augmented
def test_two_processes_follow_one(tmp_path: Path, data: str, steps: int, batch: int, extra: tuple) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    ok(run_worker(one, "clean", data, steps, batch, *extra, nproc=1))
    ok(run_worker(two, "clean", data, steps, batch, *extra))
    last = f"checkpoints/step-{steps}"
    for name in ("model", "ema", "optimizer"):
        assert relative_difference(one / last, two / last, name) < TOLERANCE, name
    r0, r1 = ranks(two)
    assert r0 == r1  # every process holds the same weights
    # rank 0 alone writes: one log line per logged step, and the losses one process logged
    lines = [json.loads(ln) for ln in (two / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(ln) for ln in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [r["step"] for r in ref]
    assert [r["loss"] for r in lines] == pytest.approx([r["loss"] for r in ref], rel=1e-4)
    assert [r["val_loss"] for r in lines if "val_loss" in r] == \
        pytest.approx([r["val_loss"] for r in ref if "val_loss" in r], rel=1e-4)
    assert json.loads((two / "summary.json").read_text())["steps"] == steps


def test_nan_on_one_rank_is_skipped_on_both(tmp_path: Path) -> None:
    ok(run_worker(tmp_path / "two", "nan", *GRID[:1], 80, 64, *GRID[1:]))
    ok(run_worker(tmp_path / "one", "nan", *GRID[:1], 80, 64, *GRID[1:], nproc=1))
    r0, r1 = ranks(tmp_path / "two")
    assert r0["skipped"] == r1["skipped"] == [30] and r0["model"] == r1["model"]
    incidents = [json.loads(ln) for ln in (tmp_path / "two" / "incidents.jsonl").read_text().splitlines()]
    nan = [i for i in incidents if i["guard"] == "non_finite"]
    assert len(nan) == 1 and nan[0]["step"] == 30 and "corrupted after loading" in nan[0]["detail"]
    assert relative_difference(tmp_path / "one" / "checkpoints/step-80", tmp_path / "two" / "checkpoints/step-80") \
        < TOLERANCE


def test_dead_rank_ends_the_job_and_the_rerun_resumes(tmp_path: Path) -> None:
    """Rank 1 exits at step 60 (checkpoints at 25 and 50): the job ends non-zero; rerunning resumes from step 50,
    with two processes or with one, to what an unbroken run reaches."""
    killed = tmp_path / "killed"
    t0 = time.perf_counter()
    result = run_worker(killed, "die", *GRID[:1], 100, 64, *GRID[1:], timeout=300)
    assert result.returncode != 0 and time.perf_counter() - t0 < 240
    assert (killed / "checkpoints" / "step-50").is_dir() and not (killed / "checkpoints" / "step-75").exists()
    shutil.copytree(killed, tmp_path / "alone")
    ok(run_worker(tmp_path / "unbroken", "clean", *GRID[:1], 100, 64, *GRID[1:], nproc=1))
    ok(run_worker(killed, "clean", *GRID[:1], 100, 64, *GRID[1:]))  # the same world size
    ok(run_worker(tmp_path / "alone", "clean", *GRID[:1], 100, 64, *GRID[1:], nproc=1))  # another one
    end = "checkpoints/step-100"
    assert relative_difference(tmp_path / "unbroken" / end, killed / end) < TOLERANCE
    assert relative_difference(tmp_path / "unbroken" / end, tmp_path / "alone" / end) < TOLERANCE


def test_hung_rank_ends_the_job_with_a_message(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    result = run_worker(tmp_path / "hang", "hang", *GRID[:1], 100, 64, *GRID[1:], "train.dist_timeout_s=10",
                        timeout=300)
    assert result.returncode != 0 and time.perf_counter() - t0 < 150
    assert "another process died or stopped answering" in result.stderr


def test_batch_not_divisible_is_refused(tmp_path: Path) -> None:
    result = run_worker(tmp_path / "odd", "clean", *GRID[:1], 10, 63, *GRID[1:], timeout=300)
    assert result.returncode != 0 and "not divisible by 2" in result.stderr


def test_train_nproc_starts_torchrun(tmp_path: Path) -> None:
    """`steadydiff train --nproc 2`: torchrun started for the user; one summary printed, one log line per step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "steadydiff", "train", "--nproc", "2", "--data", "toy:grid25",
                             "--steps", "20", "--batch-size", "32", "--out", str(tmp_path / "run"), "--quiet",
                             "--set", "data.toy_samples=1000", "net.mlp.width=32", "train.log_every=5",
                             "train.sample_metrics_every=0", "train.sample_every=0"],
                            env=env, capture_output=True, text=True, timeout=600)
    ok(result)
    assert result.stdout.count("trained toy:grid25") == 1
    assert "distributed: 2 processes (gloo), 16 items each of the global batch 32" in result.stderr
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_two_streaming_processes_follow_one_in_memory(tmp_path: Path) -> None:
    """Two processes reading a .npy row by row (data.stream=on) train what one process holding it in memory does."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.integers(0, 5, (2000, 2)) * 2 - 4 + 0.05 * rng.standard_normal((2000, 2))).astype(np.float32)
    np.save(tmp_path / "grid.npy", x)
    one, two = tmp_path / "one", tmp_path / "two"
    ok(run_worker(one, "clean", str(tmp_path / "grid.npy"), 60, 64, *GRID[2:], "data.stream=off", nproc=1))
    streamed = ok(run_worker(two, "clean", str(tmp_path / "grid.npy"), 60, 64, *GRID[2:], "data.stream=on"))
    # each process reads its share of a batch from disk (rank 0's log; the other ranks do not log)
    assert "rank 0: data: streamed from disk, 0 DataLoader worker(s) reading ahead, this process's 32 of each " \
           "batch's 64 items" in streamed.stderr
    ahead = tmp_path / "ahead"  # the same, read ahead by a DataLoader worker in each process
    ok(run_worker(ahead, "clean", str(tmp_path / "grid.npy"), 60, 64, *GRID[2:], "data.stream=on", "data.workers=1"))
    for run in (two, ahead):
        for name in ("model", "ema"):
            assert relative_difference(one / "checkpoints/step-60", run / "checkpoints/step-60", name) < TOLERANCE, name
        assert ranks(run)[0] == ranks(run)[1]
    info = json.loads((two / "dataset.json").read_text())
    assert info["fingerprint"] == json.loads((one / "dataset.json").read_text())["fingerprint"]
    assert any("read row by row" in n for n in info["notes"])
