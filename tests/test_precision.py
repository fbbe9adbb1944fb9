"""fp16 training with a dynamic loss scale: overflows are the scaler's routine, never the guard's faults."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import from_dict
from steadydiff.train import loop
from steadydiff.train.scaler import MIN_SCALE, LossScaler


def fp16_config(steps, **train):
    return from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2}},
        "train": {"steps": steps, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 10,
                  "sample_every": 0, "sample_metrics_every": 0, "warmup_samples": 640, "val_items": 32,
                  "precision": "fp16", **train},
        "sample": {"steps": 4, "grid_n": 16}})


def test_scale_halves_on_overflow_and_grows_after_clean_steps():
    s = LossScaler(torch.device("cpu"), init=8.0, growth_interval=3)
    yes, no = torch.tensor(True), torch.tensor(False)
    s.update(yes)
    assert float(s.scale) == 4.0 and int(s.good) == 0
    for _ in range(2):
        s.update(no)
    assert float(s.scale) == 4.0
    s.update(no)  # the third clean step in a row
    assert float(s.scale) == 8.0 and int(s.good) == 0
    low = LossScaler(torch.device("cpu"), init=MIN_SCALE)
    low.update(yes)
    assert float(low.scale) == MIN_SCALE
    # an overflow is the scale's only on a finite loss, above the smallest scale
    assert bool(s.overflowed(torch.ones(4), torch.tensor(float("inf"))))
    assert not bool(s.overflowed(torch.tensor([1.0, float("nan")]), torch.tensor(float("inf"))))
    assert not bool(low.overflowed(torch.ones(4), torch.tensor(float("inf"))))


def test_fp16_backs_off_a_too_high_scale_without_guard_faults(tmp_path, monkeypatch):
    """Started at 2²⁴ the gradients overflow fp16: the first steps are not applied and the scale halves until
    they fit; the guard counts them as fp16 overflows, with no skipped step, rollback or other incident."""
    monkeypatch.setattr(loop, "LossScaler", lambda device: LossScaler(device, init=2.0 ** 24))
    run = steadydiff.train(fp16_config(30), out=tmp_path / "run", progress=False)
    stab = run.summary["stability"]
    assert stab["incidents"].get("fp16_overflow", 0) >= 3
    assert set(stab["incidents"]) == {"fp16_overflow"} and stab["skipped_steps"] == 0 and stab["rollbacks"] == 0
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-30" / "state.json").read_text())
    assert state["scaler"]["scale"] < 2.0 ** 24
    assert np.isfinite(run.summary["final_loss"])


def test_fp16_resume_is_exact(tmp_path):
    run = tmp_path / "run"
    steadydiff.train(fp16_config(20), out=run, progress=False)
    want = load_file(str(run / "checkpoints" / "step-20" / "model.safetensors"))
    shutil.rmtree(run / "checkpoints" / "step-20")
    steadydiff.train(fp16_config(20), out=run, progress=False)
    got = load_file(str(run / "checkpoints" / "step-20" / "model.safetensors"))
    assert all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.parametrize("guard", [True, False])
def test_fp16_trains_like_fp32(tmp_path, guard):
    """fp16 reaches a loss close to fp32's on the same run (the scale keeps small gradients alive)."""
    losses = {}
    for precision in ("fp32", "fp16"):
        cfg = fp16_config(60, precision=precision)
        cfg.guard.enabled = guard
        losses[precision] = steadydiff.train(cfg, out=tmp_path / precision, progress=False).summary["final_loss"]
    assert abs(losses["fp16"] - losses["fp32"]) < 0.2 * losses["fp32"]


def test_reduced_precision_is_flagged_slow_only_without_its_instructions(monkeypatch):
    from steadydiff import threads

    monkeypatch.setattr(threads, "cpu_flags", lambda: {"avx2", "fma"})
    assert threads.slow_reduced_precision("bf16") and threads.slow_reduced_precision("fp16")
    assert not threads.slow_reduced_precision("fp32")
    monkeypatch.setattr(threads, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert not threads.slow_reduced_precision("bf16") and threads.slow_reduced_precision("fp16")
    monkeypatch.setattr(threads, "cpu_flags", set)  # flags unknown: no claim
    assert not threads.slow_reduced_precision("bf16")
