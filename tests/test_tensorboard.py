"""train.tensorboard: every number of metrics.jsonl lands in RUN/tensorboard/ at its step, read back with
TensorBoard's own EventAccumulator; steps a rollback or a resume abandoned disappear from the curves."""

import json
import math
import shutil
import sys

import pytest

import steadydiff
from steadydiff.config import from_dict, validate
from steadydiff.errors import ConfigError
from steadydiff.train.tensorboard import scalars

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def config(steps, **train):
    return from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2}},
        "train": {"steps": steps, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 20,
                  "sample_every": 0, "warmup_samples": 640, "val_items": 32, "tensorboard": True, **train},
        "guard": {"min_history": 20, "snapshot_every": 20, "skip_window": 10},
        "sample": {"steps": 6, "grid_n": 32},
    })


def events(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run_dir):
    """metrics.jsonl as TensorBoard should show it: tag → [(step, value)]."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for tag, value in scalars(record):
            out.setdefault(tag, []).append((record["step"], value))
    return out


def assert_mirrors(run_dir):
    want, got = expected(run_dir), events(run_dir)
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], f"{tag}: steps differ"
        for (_, a), (_, b) in zip(got[tag], points, strict=True):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-30) or (math.isnan(a) and math.isnan(b)), tag


def spikes(steps):
    def transform(step, x):
        return x * 1e6 if step in steps else x
    return transform


def test_every_logged_number_is_mirrored_and_a_rollback_is_purged(tmp_path):
    """Spikes make the guard skip most of a 10-step window (the weights stall) and roll back; the curves then hold
    the run as it stands, once per step."""
    run = tmp_path / "run"
    steadydiff.train(config(60, sample_metrics_every=10, sample_metrics_n=64, sample_metrics_steps=4,
                            eval_budget=1.0), out=run, progress=False, batch_transform=spikes(set(range(44, 50))))
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["guard"]["rollbacks"] >= 1, "the planted spikes must make the guard roll back"
    got = events(run)
    for tag in ("loss", "lr", "grad_norm", "samples_per_s", "update_ratio", "memory_mb", "val_loss", "val_loss_ema",
                "loss_bins/0", "loss_bins/7", "val_loss_ema_bins/3", "guard/rollbacks", "guard/lr_scale",
                "sample_metrics/fd_data", "sample_metrics/precision", "sample_metrics/seconds"):
        assert tag in got, tag
    assert_mirrors(run)


def test_resume_hides_the_abandoned_steps(tmp_path):
    """A 40-step run resumed from its step-20 checkpoint as a 30-step run: TensorBoard shows steps 5…30 once, with
    the resumed run's values (a cosine schedule over 30 steps gives other LRs than over 40)."""
    run = tmp_path / "run"
    steadydiff.train(config(40), out=run, progress=False)
    assert [s for s, _ in events(run)["loss"]] == list(range(5, 41, 5))
    shutil.rmtree(run / "checkpoints" / "step-40")
    lr_before = dict(events(run)["lr"])
    steadydiff.train(config(30), out=run, progress=False)
    assert [s for s, _ in events(run)["loss"]] == list(range(5, 31, 5))
    lr_after = dict(events(run)["lr"])
    assert lr_after[25] != pytest.approx(lr_before[25])
    assert_mirrors(run)


def test_missing_tensorboard_is_refused_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'steadydiff\[tensorboard\]'"):
        validate(config(10))
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        steadydiff.train(config(10), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before any work
