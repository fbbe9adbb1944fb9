"""train.max_epochs: a small data set is not trained over more passes than the cap (it would be memorised); the
lowered step count is what the run records, resumes to and what an ensemble counts as finished."""

from __future__ import annotations

import json

import numpy as np
import pytest

import steadydiff
from steadydiff.config import from_dict
from steadydiff.errors import ConfigError
from steadydiff.train.loop import VECTOR_MAX_EPOCHS, epoch_capped_steps, plan


def small_table(tmp_path, n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[:, 2] = x[:, 0] + 0.1 * x[:, 2]
    np.save(tmp_path / "small.npy", x)
    return str(tmp_path / "small.npy")


def config(source, **train):
    return from_dict({
        "data": {"source": source, "holdout": 0.0},
        "net": {"mlp": {"width": 32, "blocks": 1}},
        "train": {"steps": 400, "batch_size": 16, "sample_every": 0, "sample_metrics_every": 0, "val_every": 10,
                  "log_every": 10, "checkpoint_every": 20, **train},
        "sample": {"steps": 4, "grid_n": 4},
    })


def test_the_cap_in_steps():
    assert epoch_capped_steps(3000, 400, 178, 128) == 557  # wine: ⌈400 · 178 / 128⌉
    assert epoch_capped_steps(3000, 400, 1297, 128) == 3000  # digits: 296 epochs, under the cap
    assert epoch_capped_steps(3000, 400, 100, 128) == 400  # fewer items than a batch: one batch is one epoch
    assert epoch_capped_steps(3000, 0, 10, 128) == 3000  # 0: no cap
    with pytest.raises(ConfigError, match="train.max_epochs is the most passes"):
        config("toy:ring8", max_epochs=-1).train.check()


def test_a_small_table_trains_at_most_max_epochs_and_resumes_there(tmp_path):
    source = small_table(tmp_path)
    out = tmp_path / "run"
    run = steadydiff.train(config(source, max_epochs=5), out=out, progress=False)
    # 60 items in batches of 16: 5 epochs are ⌈5 · 60 / 16⌉ = 19 steps, not the 400 asked for
    assert run.summary["steps"] == 19 and run.config.train.steps == 19
    saved = (out / "config.toml").read_text()
    assert "steps = 19" in saved and "max_epochs = 5" in saved
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 19
    again = steadydiff.train(config(source, max_epochs=5), out=out, progress=False)  # the same command: done
    assert again.summary["steps"] == 19
    uncapped = steadydiff.train(config(source, steps=30, max_epochs=0), out=tmp_path / "all", progress=False)
    assert uncapped.summary["steps"] == 30


def test_the_default_cap_is_for_vectors_and_series_not_images(tmp_path):
    vectors, _, _ = plan(config(small_table(tmp_path), steps=3000))
    assert vectors.train.max_epochs == VECTOR_MAX_EPOCHS  # --dry-run's plan counts the steps the run will train
    assert vectors.train.steps == 400 * 60 // 16
    images, _, _ = plan(from_dict({"data": {"source": "digits"}, "train": {"steps": 3000}}))
    assert images.train.max_epochs == 0
    windows = tmp_path / "windows.npy"  # 40 series windows of 2 channels × 32 steps
    np.save(windows, np.random.default_rng(0).normal(size=(40, 2, 32)).astype(np.float32))
    series, _, _ = plan(from_dict({"data": {"source": str(windows), "holdout": 0}, "train": {"steps": 3000}}))
    assert series.train.max_epochs == VECTOR_MAX_EPOCHS
    assert series.train.steps == 400


def test_an_ensemble_of_capped_members_counts_them_finished(tmp_path):
    source = small_table(tmp_path)
    out = tmp_path / "ens"
    run = steadydiff.train(config(source, max_epochs=4, ensemble=2), out=out, progress=False)
    assert [s["steps"] for s in run.summary["member_summaries"]] == [15, 15]
    kept = (out / "members" / "1" / "metrics.jsonl").read_text()
    steadydiff.train(config(source, max_epochs=4, ensemble=2), out=out, progress=False)
    assert (out / "members" / "1" / "metrics.jsonl").read_text() == kept  # passed over, not trained again
    info = json.loads((out / "ensemble.json").read_text())
    assert all(m["finished"] for m in info["members"])
