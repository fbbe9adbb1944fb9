"""The training loop: exact resume, end-to-end toy training, run-directory contracts."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import RunConfig, from_dict
from steadydiff.errors import SteadydiffError
from steadydiff.train.order import batch_indices


def tiny_config(steps: int, **train) -> RunConfig:
    cfg = from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2, "dropout": 0.1}},
        "train": {"steps": steps, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 10,
                  "sample_every": 0, "warmup_samples": 640, "val_items": 32, **train},
        "sample": {"steps": 6, "grid_n": 32},
    })
    return cfg


def load_weights(run_dir, step):
    d = run_dir / "checkpoints" / f"step-{step}"
    return {name: load_file(str(d / f"{name}.safetensors")) for name in ("model", "ema", "optimizer")}


def test_resume_gives_identical_weights(tmp_path):
    """40 steps straight, and the same run stopped after its step-20 checkpoint and resumed, end with
    bit-identical model, EMA and optimiser state, and the same log."""
    run = tmp_path / "run"
    steadydiff.train(tiny_config(40, checkpoint_every=20), out=run, progress=False)
    straight = load_weights(run, 40)
    straight_log = (run / "metrics.jsonl").read_text()
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-40")  # as if the process died just before step 40's checkpoint
    steadydiff.train(tiny_config(40, checkpoint_every=20), out=run, progress=False)
    resumed = load_weights(run, 40)
    for part in straight:
        assert straight[part].keys() == resumed[part].keys()
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), f"{part}.{k} differs after resume"
    strip = [{k: v for k, v in json.loads(ln).items() if k not in ("samples_per_s", "wall_s", "memory_mb")}
             for ln in straight_log.splitlines()]
    again = [{k: v for k, v in json.loads(ln).items() if k not in ("samples_per_s", "wall_s", "memory_mb")}
             for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert again == strip  # each step logged once, with the same values


def test_training_longer_continues_the_same_run(tmp_path):
    """With a schedule that does not depend on the run length, 20 steps + 20 more equal 40 straight."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    steadydiff.train(tiny_config(40, lr_schedule="constant"), out=straight, progress=False)
    steadydiff.train(tiny_config(20, lr_schedule="constant"), out=split, progress=False)
    steadydiff.train(tiny_config(40, lr_schedule="constant"), out=split, progress=False)
    a, b = load_weights(straight, 40), load_weights(split, 40)
    for part in a:
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"


def test_other_runs_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    steadydiff.train(tiny_config(5), out=run, progress=False)
    other = tiny_config(5, lr=5e-4)
    with pytest.raises(SteadydiffError, match=r"(?s)different run.*train\.lr"):
        steadydiff.train(other, out=run, progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(SteadydiffError, match="not empty"):
        steadydiff.train(tiny_config(5), out=tmp_path / "junk", progress=False)
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_run_directory_layout_and_samples_in_user_units(tmp_path):
    run = steadydiff.train(tiny_config(20), out=tmp_path / "run", progress=False)
    d = run.dir
    for name in ("config.toml", "metrics.jsonl", "normaliser.json", "dataset.json", "summary.json"):
        assert (d / name).is_file(), name
    assert (d / "samples" / "step-20.png").is_file()
    lines = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "grad_norm", "samples_per_s", "loss_bins"} <= lines[0].keys()
    assert "val_loss_ema" in lines[1]
    assert not list((d / "checkpoints").glob(".tmp*"))
    model = steadydiff.load(d)
    x = model.sample(50, steps=6, seed=3)
    # ring8 lies on a circle of radius 2 in user units; the normalised space is ~unit scale.
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert 0.5 < np.abs(x).max() < 10


def test_small_data_set_trains_with_smaller_batch_and_warns(tmp_path, caplog):
    data = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    cfg = tiny_config(4, batch_size=64)
    with caplog.at_level(logging.WARNING, logger="steadydiff"):
        run = steadydiff.train(cfg, data=data, out=tmp_path / "run", progress=False)
    assert "fewer than one batch" in caplog.text
    assert run.summary["batch_size"] == 18  # 20 items, 10% held out


def test_sample_seed_not_batch_size(tmp_path):
    run = steadydiff.train(tiny_config(10), out=tmp_path / "run", progress=False)
    model = run.load()
    a = model.sample(12, steps=5, seed=7, batch_size=12)
    b = model.sample(12, steps=5, seed=7, batch_size=5)
    c = model.sample(5, steps=5, seed=7)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[:5], c, atol=1e-5)
    assert not np.allclose(a, model.sample(12, steps=5, seed=8), atol=1e-3)


def test_batch_order_is_a_pure_function_of_samples_seen():
    full = np.concatenate([batch_indices(10, 3, s, 4) for s in range(0, 40, 4)])
    other = np.concatenate([batch_indices(10, 3, s, 8) for s in range(0, 40, 8)])
    assert np.array_equal(full, other)  # the data order does not depend on the batch size
    for epoch in range(4):
        assert sorted(full[epoch * 10:(epoch + 1) * 10]) == list(range(10))  # each epoch sees every item once


@pytest.mark.parametrize("param,noise,weighting", [("eps", "vp-linear", "uniform"), ("v", "vp-cosine", "min-snr"),
                                                   ("x0", "lognormal", "edm")])
def test_every_parameterisation_trains(tmp_path, param, noise, weighting):
    cfg = tiny_config(30)
    cfg.diffusion.parameterization, cfg.diffusion.noise, cfg.diffusion.weighting = param, noise, weighting
    run = steadydiff.train(cfg, out=tmp_path / "run", progress=False)
    lines = [json.loads(ln) for ln in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(ln["loss"]) for ln in lines)
    # The EMA weights' fixed held-out loss falls between the first validation (step 10) and the last (step 30):
    # measured eps 0.834 → 0.509, v 0.3006 → 0.2994 (min-SNR weights the large σ little), x0 503 → 106.
    val = [ln["val_loss_ema"] for ln in lines if "val_loss_ema" in ln]
    assert len(val) == 3 and val[-1] < val[0]


def test_toy_mixture_trains_end_to_end_and_covers_its_modes(tmp_path):
    """A 2-D toy that trains in seconds: every ring8 mode covered, most samples on a mode."""
    cfg = from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 4000},
        "net": {"mlp": {"width": 128, "blocks": 3}},
        "train": {"steps": 1000, "batch_size": 256, "warmup_samples": 10_000, "log_every": 100,
                  "val_every": 500, "checkpoint_every": 1000, "sample_every": 0, "ema_halflife_samples": 20_000},
        "sample": {"steps": 18},
    })
    run = steadydiff.train(cfg, out=tmp_path / "run", progress=False)
    q = run.summary["quality"]
    assert q["modes_covered"] == 8
    assert q["high_quality"] > 0.85  # measured 0.93 (1.0 would need the exact denoiser)


def test_image_folder_trains_and_samples_images(tmp_path):
    """A user's folder of PNG/JPEG images of mixed sizes trains the U-Net and samples in pixel units."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        size = (10, 10) if i % 2 else (14, 12)
        arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i:02d}.{'png' if i % 3 else 'jpg'}")
    cfg = from_dict({"data": {"image_size": 8, "hflip": True},
                     "net": {"unet": {"channels": 16, "channel_mult": [1, 2], "groups": 4}},
                     "train": {"steps": 6, "batch_size": 4, "log_every": 3, "val_every": 3, "sample_every": 0},
                     "sample": {"steps": 3, "grid_n": 4}})
    run = steadydiff.train(cfg, data=folder, out=tmp_path / "run", progress=False)
    assert (run.dir / "samples" / "step-6.png").is_file()
    x = steadydiff.load(run.dir).sample(3, steps=3, seed=0)
    assert x.shape == (3, 3, 8, 8)
    assert x.min() >= 0 and x.max() <= 255  # pixel units, clipped to the data's range
    info = json.loads((run.dir / "dataset.json").read_text())
    assert any("resized" in n for n in info["notes"])


def test_bf16_autocast_trains(tmp_path):
    cfg = tiny_config(10, precision="bf16")
    run = steadydiff.train(cfg, out=tmp_path / "run", progress=False)
    assert np.isfinite(run.summary["final_loss"])


def test_torch_dataset_and_numpy_array_inputs(tmp_path):
    from torch.utils.data import TensorDataset

    rng = np.random.default_rng(1)
    arr = rng.normal(loc=5.0, scale=3.0, size=(200, 4)).astype(np.float32)
    run = steadydiff.train(tiny_config(5), data=TensorDataset(torch.from_numpy(arr)), out=tmp_path / "a",
                           progress=False)
    x = run.load().sample(100, steps=4, seed=0)
    assert x.shape == (100, 4)
    assert abs(float(x.mean()) - 5.0) < 5.0  # user units (normaliser inverted), not the normalised ~0
    run_np = steadydiff.train(tiny_config(5), data=arr, out=tmp_path / "b", progress=False)
    assert run_np.summary["data"].startswith("numpy array")
    other = arr + 1.0
    with pytest.raises(SteadydiffError, match="different data"):
        steadydiff.train(tiny_config(6), data=other, out=tmp_path / "b", progress=False)


def test_post_hoc_ema_snapshots_reconstruct_the_tracked_profiles(tmp_path):
    """Training writes power-function EMA snapshots; rebuilding a tracked σ_rel from them gives that profile."""
    from safetensors.torch import load_file

    from steadydiff.train.phema import read_snapshots, reconstruct

    run = tmp_path / "run"
    steadydiff.train(tiny_config(40, phema_every=10), out=run, progress=False)
    snaps = read_snapshots(run / "phema")
    assert [s.step for s in snaps] == [640, 1280, 1920, 2560]  # samples seen at steps 10, 20, 30, 40
    tracked = load_file(str(run / "checkpoints" / "step-40" / "phema.safetensors"))
    rebuilt = reconstruct(snaps, 0.10)
    for name in snaps[-1].profiles[1]:
        assert torch.allclose(rebuilt[name], tracked[f"profile1/{name}"], atol=2e-3), name
    shorter = reconstruct(snaps, 0.03)  # an EMA length that was never tracked
    assert any(not torch.allclose(shorter[k], rebuilt[k]) for k in rebuilt)
    model = steadydiff.load(run)
    model.denoiser.load_state_dict(shorter)
    assert np.isfinite(model.sample(8, steps=4, seed=0)).all()


def test_sampling_sigma_min_follows_the_data_levels(tmp_path):
    """Images on 5 levels get σ_min = SIGMA_MIN_PER_STEP × their step (in units of 2σ_data), written to
    config.toml and used by sampling; continuous data keeps EDM's 0.002; a value set by the user wins."""
    import tomllib

    from steadydiff.diffusion.config import SIGMA_MIN_PER_STEP

    rng = np.random.default_rng(0)
    data = rng.integers(0, 5, size=(64, 1, 8, 8)).astype(np.float32)  # levels 0..4: step 0.5 on [-1, 1]
    base = {"net": {"unet": {"channels": 16, "channel_mult": [1, 2], "groups": 4, "dropout": 0.1}},
            "train": {"steps": 2, "batch_size": 16, "log_every": 1, "val_every": 2, "sample_every": 0},
            "sample": {"steps": 3, "grid_n": 4}}
    run = steadydiff.train(from_dict(base), data=data, out=tmp_path / "levels", progress=False)
    saved = tomllib.loads((run.dir / "config.toml").read_text())["diffusion"]
    expected = SIGMA_MIN_PER_STEP * 0.5 / (2 * saved["sigma_data"])
    assert saved["sigma_min"] == pytest.approx(expected, abs=1e-6) and saved["sigma_min"] > 0.03
    model = steadydiff.load(run.dir)
    seen = []
    model.sample(2, steps=3, sampler="euler", seed=0, callback=lambda info: seen.append(float(info["sigma"])))
    assert min(seen) == pytest.approx(expected * 2 * saved["sigma_data"], rel=1e-4)  # the last σ before 0

    cont = steadydiff.train(tiny_config(2), out=tmp_path / "ring", progress=False)
    assert tomllib.loads((cont.dir / "config.toml").read_text())["diffusion"]["sigma_min"] == 0.002
    mine = from_dict({**base, "diffusion": {"sigma_min": 0.01}})
    run = steadydiff.train(mine, data=data, out=tmp_path / "mine", progress=False)
    assert tomllib.loads((run.dir / "config.toml").read_text())["diffusion"]["sigma_min"] == 0.01


def test_image_augmentation_resolves_and_resumes_exactly(tmp_path):
    """A new image run augments (data.augment 0.12 written to config.toml), vectors do not and refuse it;
    6 steps straight equal 3 + resume + 3 with augmentation and U-Net dropout on (their draws come from
    (seed, step))."""
    import shutil

    import tomllib

    data = np.random.default_rng(0).integers(0, 5, size=(48, 1, 8, 8)).astype(np.float32)
    base = {"net": {"unet": {"channels": 16, "channel_mult": [1, 2], "groups": 4, "dropout": 0.1}},
            "train": {"steps": 6, "batch_size": 16, "log_every": 1, "val_every": 3, "checkpoint_every": 3,
                      "sample_every": 0, "sample_metrics_every": 0},
            "sample": {"steps": 3, "grid_n": 4}}
    run = steadydiff.train(from_dict(base), data=data, out=tmp_path / "run", progress=False)
    assert tomllib.loads((run.dir / "config.toml").read_text())["data"]["augment"] == 0.12
    straight = load_weights(run.dir, 6)
    shutil.rmtree(run.dir / "checkpoints" / "step-6")
    steadydiff.train(from_dict(base), data=data, out=run.dir, progress=False)
    resumed = load_weights(run.dir, 6)
    for part in straight:
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), f"{part}.{k} differs after resume"
    off = steadydiff.train(from_dict({**base, "data": {"augment": 0}}), data=data, out=tmp_path / "off",
                           progress=False)
    assert not torch.equal(load_weights(off.dir, 6)["model"]["backbone.conv_in.weight"],
                           straight["model"]["backbone.conv_in.weight"])
    assert "backbone.embed.aug.weight" not in load_weights(off.dir, 6)["model"]

    ring = steadydiff.train(tiny_config(2), out=tmp_path / "ring", progress=False)
    assert tomllib.loads((ring.dir / "config.toml").read_text())["data"]["augment"] == 0.0
    bad = tiny_config(2)
    bad.data.augment = 0.3
    with pytest.raises(SteadydiffError, match="images only"):
        steadydiff.train(bad, out=tmp_path / "bad", progress=False)


class ConvNet(torch.nn.Module):
    """A user's own image backbone, called as F(x, c_noise, cond) the way the README documents."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x, c_noise, cond=None):
        return self.conv(torch.cat([x, c_noise.reshape(-1, 1, 1, 1).expand_as(x)], 1))


class ConvNetWithAug(ConvNet):
    def forward(self, x, c_noise, cond=None, aug=None):
        out = super().forward(x, c_noise, cond)
        return out if aug is None else out + 0 * aug.sum()


def test_custom_image_backbone_trains_with_the_defaults(tmp_path):
    """Augmentation tells the network what it did through `aug=`; a backbone without that argument trains
    unaugmented (said once), refuses an explicit data.augment, and one that takes `aug` keeps augmentation."""
    import tomllib

    data = np.random.default_rng(0).integers(0, 5, size=(48, 1, 8, 8)).astype(np.float32)
    cfg = {"train": {"steps": 3, "batch_size": 16, "val_every": 3, "sample_every": 0, "sample_metrics_every": 0},
           "sample": {"steps": 3, "grid_n": 4}}
    run = steadydiff.train(from_dict(cfg), data=data, out=tmp_path / "plain", progress=False, backbone=ConvNet())
    assert tomllib.loads((run.dir / "config.toml").read_text())["data"]["augment"] == 0.0
    model = steadydiff.load(run.dir, backbone=ConvNet())
    assert np.isfinite(model.sample(4, steps=3, seed=0)).all()
    with pytest.raises(SteadydiffError, match="takes no `aug` argument"):
        steadydiff.train(from_dict({**cfg, "data": {"augment": 0.2}}), data=data, out=tmp_path / "explicit",
                         progress=False, backbone=ConvNet())
    assert not (tmp_path / "explicit" / "checkpoints").exists()
    run = steadydiff.train(from_dict(cfg), data=data, out=tmp_path / "aug", progress=False,
                           backbone=ConvNetWithAug())
    assert tomllib.loads((run.dir / "config.toml").read_text())["data"]["augment"] == 0.12


def test_a_run_killed_mid_write_resumes_past_its_torn_log_line(tmp_path):
    run = tmp_path / "run"
    steadydiff.train(tiny_config(20, checkpoint_every=10), out=run, progress=False)
    log = run / "metrics.jsonl"
    with open(log, "a") as fh:
        fh.write('{"step": 25, "loss": 0.4')  # the process died while appending
    steadydiff.train(tiny_config(30, checkpoint_every=10), out=run, progress=False)
    steps = [json.loads(ln)["step"] for ln in log.read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    # a broken line anywhere but the end was not written by steadydiff: refused with its line number
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n")
    with pytest.raises(SteadydiffError, match=r"metrics.jsonl, line 2: not a JSON object"):
        steadydiff.train(tiny_config(40, checkpoint_every=10), out=run, progress=False)


def test_a_damaged_checkpoint_is_named_passed_over_by_last_and_resumed_past_exactly(tmp_path, caplog):
    # A checkpoint file cut short on disk (a full disk, an interrupted copy): loading it names the file and the
    # intact checkpoints; `last` takes the newest intact one; training resumes from it, re-does the lost steps,
    # and ends bit-identical to a run that was never damaged.
    from steadydiff.train.checkpoint import CheckpointDamaged

    run = tmp_path / "run"
    steadydiff.train(tiny_config(40, checkpoint_every=20), out=run, progress=False)
    # copies: the loaded tensors may map the file that is cut short next
    straight = {part: {k: v.clone() for k, v in t.items()} for part, t in load_weights(run, 40).items()}
    model = run / "checkpoints" / "step-40" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(CheckpointDamaged, match=r"step-40 is damaged: .*model.safetensors holds 1,000 bytes.*"
                                                r"Intact checkpoints: step-20"):
        steadydiff.load(run, checkpoint="step-40")
    with caplog.at_level(logging.WARNING, logger="steadydiff"):
        assert steadydiff.load(run).step == 20
    assert "checkpoint step-40 is damaged" in caplog.text
    ema = run / "checkpoints" / "step-20" / "ema.safetensors"
    flipped = bytearray(ema.read_bytes())
    flipped[-1] ^= 1  # same size, one bit changed
    saved = ema.read_bytes()
    ema.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointDamaged, match="every checkpoint .* is damaged"):
        steadydiff.load(run)
    ema.write_bytes(saved)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steadydiff"):
        steadydiff.train(tiny_config(40, checkpoint_every=20), out=run, progress=False)
    assert "resumes from step-20" in caplog.text
    resumed = load_weights(run, 40)
    for part in straight:
        for k in straight[part]:
            assert torch.equal(straight[part][k], resumed[part][k]), f"{part}.{k} differs after the damaged resume"
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".damaged-step-40")]


def test_vp_uniform_steps_follow_the_schedule_the_run_trained_with(tmp_path):
    cfg = tiny_config(10)
    cfg.diffusion.noise = "vp-cosine"
    model = steadydiff.train(cfg, out=tmp_path / "run", progress=False).load()
    uniform, cosine, linear = (model.sample(8, steps=6, sampler="euler", schedule=s, seed=0)
                               for s in ("vp-uniform", "vp-cosine", "vp-linear"))
    assert np.array_equal(uniform, cosine) and not np.allclose(uniform, linear)
