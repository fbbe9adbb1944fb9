"""Sample metrics during training: logged at validation points, improving as the model learns, held to the
evaluation budget, invisible to the training trajectory (exact resume), the best evaluation in summary.json."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import from_dict
from steadydiff.errors import ConfigError
from steadydiff.train.sample_metrics import is_due, within_budget

TIMING = ("samples_per_s", "wall_s", "memory_mb")


def records(run_dir):
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def ring_config(steps, **train):
    return from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2, "dropout": 0.1}},
        "train": {"steps": steps, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 20,
                  "sample_every": 0, "warmup_samples": 640, "val_items": 32, "sample_metrics_every": 10,
                  "sample_metrics_n": 64, "sample_metrics_steps": 4, "eval_budget": 1.0, **train},
        "sample": {"steps": 6, "grid_n": 32},
    })


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """toy:grid25 trained for 600 steps, scored every 150 steps with no budget limit."""
    cfg = from_dict({
        "data": {"source": "toy:grid25", "toy_samples": 4000},
        "net": {"mlp": {"width": 128, "blocks": 3}},
        "train": {"steps": 600, "batch_size": 256, "warmup_samples": 5000, "log_every": 50, "val_every": 100,
                  "checkpoint_every": 300, "sample_every": 0, "ema_halflife_samples": 10_000,
                  "sample_metrics_every": 150, "sample_metrics_sampler": "dpmpp-2m", "sample_metrics_steps": 12,
                  "eval_budget": 1.0},
        "sample": {"steps": 10, "grid_n": 16},
        "guard": {"enabled": False},
    })
    return steadydiff.train(cfg, out=tmp_path_factory.mktemp("grid") / "run", progress=False)


def test_toy_run_logs_sample_metrics_that_improve(grid_run):
    lines = records(grid_run.dir)
    scored = [r for r in lines if "sample_metrics" in r]
    # The first validation at or after each multiple of 150 steps (validations every 100).
    assert [r["step"] for r in scored] == [200, 300, 500, 600]
    for r in scored:
        m = r["sample_metrics"]
        assert {"fd_data", "mmd", "precision", "recall", "coverage", "copy_fraction", "high_quality",
                "modes_covered", "seconds"} <= m.keys()
        assert m["modes_total"] == 25 and 0 <= m["precision"] <= 1 and 0 <= m["high_quality"] <= 1
        assert 0 < m["seconds"] < 30
    first, last = scored[0]["sample_metrics"], scored[-1]["sample_metrics"]
    assert last["fd_data"] < 0.7 * first["fd_data"]  # measured 0.030 → 0.015
    assert last["modes_covered"] > first["modes_covered"]  # measured 4 → 11


def test_summary_records_the_best_evaluation(grid_run):
    s = grid_run.summary
    info = s["sample_metrics"]
    assert info["metric"] == "high_quality" and info["higher_is_better"] is True  # known modes: evaluate's default
    assert info["evaluations"] == 4 and info["skipped"] == 0 and info["nfe"] == 12
    assert info["real_data"]["high_quality"] > 0.9  # real items sit on their modes: the floor to compare with
    values = {r["step"]: r["sample_metrics"]["high_quality"] for r in records(grid_run.dir) if "sample_metrics" in r}
    best = s["best_sample_metric"]
    assert best["metric"] == "high_quality" and best["value"] == max(values.values())
    assert values[best["step"]] == best["value"]
    # train.keep_best (the default): the best evaluation's checkpoint survives rotation and loads as "best"
    assert best["checkpoint"] == f"step-{best['step']}"
    assert (grid_run.dir / "checkpoints" / best["checkpoint"]).is_dir()
    assert steadydiff.load(grid_run.dir, checkpoint="best").step == best["step"]


def test_keep_best_survives_rotation_and_a_resume_recomputes_it(tmp_path):
    # One checkpoint kept: without keep_best the best evaluation's would be rotated out at once.
    run = tmp_path / "run"
    steadydiff.train(ring_config(40, keep_checkpoints=1, checkpoint_every=10), out=run, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    best = summary["best_sample_metric"]
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert names == sorted({"step-40", best["checkpoint"]})
    assert steadydiff.load(run, checkpoint="best").step == best["step"]
    # Resumed from step 20 (as if the later checkpoints were lost), a best recorded beyond it is forgotten
    # and found again: the run ends with the same best, kept, as the unbroken one.
    many = tmp_path / "many"
    steadydiff.train(ring_config(40, checkpoint_every=10), out=many, progress=False)
    unbroken = json.loads((many / "summary.json").read_text())["best_sample_metric"]
    assert unbroken["step"] > 20  # so the resume has a best to forget
    for name in ("step-30", "step-40"):
        shutil.rmtree(many / "checkpoints" / name)
    steadydiff.train(ring_config(40, checkpoint_every=10), out=many, progress=False)
    again = json.loads((many / "summary.json").read_text())["best_sample_metric"]
    assert again == unbroken and (many / "checkpoints" / again["checkpoint"]).is_dir()
    off = tmp_path / "off"
    steadydiff.train(ring_config(40, keep_checkpoints=1, checkpoint_every=10, keep_best=False), out=off,
                     progress=False)
    assert [p.name for p in (off / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-40"]
    assert not (off / "checkpoints" / "best.json").exists()


def test_budget_skips_evaluations_and_holds_the_share(tmp_path):
    """Each evaluation (1024 samples) costs most of the training time between two of them (25 steps), so with all of
    them evaluation takes ~45 % of the run; a budget of 25 % lets a few run, skips the rest and holds to it."""
    cfg = ring_config(300, batch_size=256, val_every=25, log_every=25, checkpoint_every=300, sample_metrics_every=25,
                      sample_metrics_n=1024, sample_metrics_steps=12, eval_budget=0.25)
    cfg.net.mlp.width, cfg.net.mlp.blocks, cfg.net.mlp.dropout = 128, 3, 0.0
    run = steadydiff.train(cfg, out=tmp_path / "run", progress=False)
    lines = records(run.dir)
    done = [r["step"] for r in lines if "sample_metrics" in r]
    skipped = [r["step"] for r in lines if "sample_metrics_skipped" in r]
    assert skipped and all(r["sample_metrics_skipped"] == "eval_budget" for r in lines if r["step"] in skipped)
    assert done, "an evaluation that fits the budget runs"  # measured: 3 of 12
    assert sorted(done + skipped) == list(range(25, 301, 25))  # every due point either ran or was skipped
    s = run.summary
    assert s["sample_metrics"]["skipped"] == len(skipped) and s["sample_metrics"]["evaluations"] == len(done)
    assert s["evaluation_share_during_training"] <= 0.25 + 0.05  # measured 0.23


def test_sample_metrics_do_not_change_training_and_resume_exactly(tmp_path):
    """With sample metrics at every validation: the weights equal those of the same run without them, and a run
    resumed from its step-20 checkpoint logs and ends exactly like the unbroken one."""
    on, off = tmp_path / "on", tmp_path / "off"
    steadydiff.train(ring_config(40), out=on, progress=False)
    steadydiff.train(ring_config(40, sample_metrics_every=0), out=off, progress=False)
    straight = load_file(str(on / "checkpoints" / "step-40" / "model.safetensors"))
    plain = load_file(str(off / "checkpoints" / "step-40" / "model.safetensors"))
    assert all(torch.equal(straight[k], plain[k]) for k in straight)
    assert not any("sample_metrics" in r for r in records(off))

    def strip(lines):
        out = []
        for r in lines:
            r = {k: v for k, v in r.items() if k not in TIMING}
            if "sample_metrics" in r:
                r["sample_metrics"] = {k: v for k, v in r["sample_metrics"].items() if k != "seconds"}
            out.append(r)
        return out

    before = strip(records(on))
    assert [r["step"] for r in before if "sample_metrics" in r] == [10, 20, 30, 40]
    shutil.rmtree(on / "checkpoints" / "step-40")
    steadydiff.train(ring_config(40), out=on, progress=False)
    assert strip(records(on)) == before  # the same samples from the same weights: the same scores
    resumed = load_file(str(on / "checkpoints" / "step-40" / "model.safetensors"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_data_without_enough_held_out_items_logs_no_sample_metrics(tmp_path, caplog):
    data = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)  # 10 % held out: 4 items
    with caplog.at_level(logging.INFO, logger="steadydiff"):
        run = steadydiff.train(ring_config(20, batch_size=16), data=data, out=tmp_path / "run", progress=False)
    assert not any("sample_metrics" in r or "sample_metrics_skipped" in r for r in records(run.dir))
    notes = [m for m in caplog.messages if "sample metrics during training are off" in m]
    assert len(notes) == 1 and "held-out" in notes[0]
    assert "unavailable" in run.summary["sample_metrics"] and "best_sample_metric" not in run.summary


def test_due_points_depend_on_the_step_alone():
    due = [s for s in range(100, 1001, 100) if is_due(s, 1000, 250, 100)]
    assert due == [300, 500, 800, 1000]  # the first validation at or after 250, 500, 750, 1000
    # The last step validates too, and scores samples when it passed a multiple since the validation before it.
    assert is_due(1030, 1030, 1020, 100) and not is_due(1030, 1030, 250, 100)
    assert not any(is_due(s, 1000, 0, 100) for s in range(100, 1001, 100))
    assert within_budget(eval_s=5.0, elapsed_s=100.0, cost_s=4.0, budget=0.1)
    assert not within_budget(eval_s=9.0, elapsed_s=100.0, cost_s=4.0, budget=0.1)


@pytest.mark.parametrize("key,value,message", [("train.eval_budget", 0.0, "eval_budget"),
                                               ("train.sample_metrics_n", 3, "sample_metrics_n"),
                                               ("train.sample_metrics_sampler", "hune", "heun")])
def test_bad_settings_are_refused(key, value, message):
    from steadydiff.config import set_value, validate

    cfg = from_dict({})
    with pytest.raises(ConfigError, match=message):
        set_value(cfg, key, value)
        validate(cfg)


def test_report_draws_the_sample_metrics_and_judges_the_best(grid_run, tmp_path):
    from steadydiff.report import write_report

    html = write_report(grid_run.dir, tmp_path / "r.html", n_eval=60).read_text()
    metrics = html.split('<section id="metrics">', 1)[1].split("</section>", 1)[0]
    during = metrics.split("During training: sample metrics", 1)[1]
    assert "<img" in during.split("<h3>", 1)[0] and "dpmpp-2m" in during
    best = grid_run.summary["best_sample_metric"]
    assert "Best by high_quality" in during and f"step {best['step']:,}" in during
    assert "Best sample metric" in html.split('<section id="overview">', 1)[1].split("</section>", 1)[0]
    verdicts = html.split('<section id="verdict">', 1)[1].split("</section>", 1)[0]
    assert "Past its best?" in verdicts and "high_quality" in verdicts


def test_past_best_verdict():
    from steadydiff.report.verdict import past_best

    steps = [250, 500, 750, 1000, 1250, 1500, 1750]
    worse = past_best(steps, [60.0, 40.0, 41.0, 40.5, 39.8, 41.0, 55.0], metric="fd_classifier",
                      higher_is_better=False, checkpoint=None)
    assert worse.answer == "yes" and worse.alarm and "step 1,250" in worse.text and "15.2 worse" in worse.text
    # 25 % off its best, but the curve jumps by 5 between evaluations: jitter, not a worse model.
    jumpy = past_best(steps[:4], [60.0, 40.0, 45.0, 50.0], metric="fd_classifier", higher_is_better=False)
    assert jumpy.answer == "no" and "jitter" in jumpy.text
    assert past_best(steps[:3], [60.0, 40.0, 42.0], metric="fd_classifier", higher_is_better=False).answer == "no"
    assert past_best(steps, [0.2, 0.85, 0.9, 0.89, 0.9, 0.88, 0.6], metric="high_quality",
                     higher_is_better=True).answer == "yes"
    assert past_best(steps[:3], [0.2, 0.7, 0.9], metric="high_quality", higher_is_better=True).answer == "no"
    assert past_best(steps[:2], [60.0, 40.0], metric="fd_classifier", higher_is_better=False).answer == "unclear"
