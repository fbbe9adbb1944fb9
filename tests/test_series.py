"""Time series as a kind of data of their own: read by shape (or data.kind), normalised per channel, never
flipped, denoised by the 1-D U-Net, drawn as line plots."""

import numpy as np
import pytest
import torch

import steadydiff
from steadydiff.config import from_dict
from steadydiff.data import DataConfig, Normaliser, describe, load_data
from steadydiff.data.masks import draw_masks, parse_masks
from steadydiff.errors import ConfigError, DataError
from steadydiff.nets import NetConfig, UNet1D, build_backbone


def test_sines_are_series_of_five_channels_normalised_per_channel():
    ds = load_data(DataConfig(source="toy:sines", toy_samples=600))
    assert ds.kind == "series" and ds.item_shape == (5, 24)
    assert "series of 5 channels × 24 steps" in describe(ds)
    # TimeGAN's sines: every value in [0, 1], each series smooth (no step jumps by more than 0.1·(f + …))
    assert 0 <= ds.train.min() and ds.train.max() <= 1
    assert np.abs(np.diff(ds.train, axis=-1)).max() < 0.06
    norm = Normaliser.fit(ds.train, "series")
    z = norm.forward(ds.train)
    assert np.allclose(z.mean(axis=(0, 2)), 0, atol=1e-5) and np.allclose(z.std(axis=(0, 2)), 1, atol=1e-4)
    # per channel, never per time step: the rise of a sine over its 24 steps survives normalisation
    assert z[:, :, -1].mean() - z[:, :, 0].mean() > 1
    assert np.allclose(norm.inverse(z), ds.train, atol=1e-5)
    assert Normaliser.from_dict(norm.to_dict()).to_dict() == norm.to_dict()


def test_array_shapes_are_read_as_series_or_images_and_data_kind_decides_where_they_could_be_either(tmp_path):
    rng = np.random.default_rng(0)
    series = rng.normal(size=(50, 3, 32)).astype(np.float32)
    np.save(tmp_path / "s.npy", series)
    ds = load_data(DataConfig(source=str(tmp_path / "s.npy"), holdout=0))
    assert ds.kind == "series" and ds.item_shape == (3, 32)
    assert any("data.kind=image" in n for n in ds.notes)  # the reading is named, with how to change it
    assert load_data(DataConfig(source=str(tmp_path / "s.npy"), holdout=0, kind="image")).item_shape == (1, 3, 32)
    grey = rng.integers(0, 255, size=(50, 8, 8)).astype(np.float32)  # too short to be a series: images
    np.save(tmp_path / "g.npy", grey)
    assert load_data(DataConfig(source=str(tmp_path / "g.npy"), holdout=0)).kind == "image"
    one = rng.normal(size=(50, 40)).astype(np.float32)  # (N, L) is read as vectors unless data.kind says series
    np.save(tmp_path / "one.npy", one)
    assert load_data(DataConfig(source=str(tmp_path / "one.npy"), holdout=0)).kind == "vector"
    as_series = load_data(DataConfig(source=str(tmp_path / "one.npy"), holdout=0, kind="series"))
    assert as_series.item_shape == (1, 40)
    with pytest.raises(DataError, match="data.kind=series needs"):
        load_data(DataConfig(source=str(tmp_path / "one.npy"), holdout=0, kind="series"),
                  rng.normal(size=(5, 1, 4, 4)))
    with pytest.raises(DataError, match="data.kind=series does not fit digits"):
        load_data(DataConfig(source="digits", kind="series"))


def test_the_1d_unet_starts_at_zero_and_keeps_the_series_shape():
    net = build_backbone(NetConfig(), (5, 23))  # odd length: pooled with ceil, upsampled back exactly
    assert isinstance(net, UNet1D)
    x = torch.randn(4, 5, 23)
    assert torch.equal(net(x, torch.rand(4)), torch.zeros_like(x))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    y = net(x, torch.rand(4))
    assert y.shape == x.shape and y.abs().max() > 0
    # each output step depends on the whole series (convolutions plus attention in the middle)
    x2 = x.clone()
    x2[:, :, 0] += 1
    assert (net(x2, torch.zeros(4)) - net(x, torch.zeros(4)))[:, :, -1].abs().max() > 0
    with pytest.raises(ConfigError, match="unet1d"):
        build_backbone(NetConfig(kind="unet1d"), (1, 8, 8))


def test_series_masks_hide_time_steps_in_every_channel():
    assert parse_masks("all", "series") == ("scattered", "suffix", "gap")
    g = torch.Generator().manual_seed(0)
    m = draw_masks(200, (3, 24), ("suffix",), 0.0, g)
    known = m[:, 0]
    assert torch.equal(m[:, 0], m[:, 2])  # a time step is known or unknown in all channels
    last_known = 24 - (known == 0).sum(1)
    assert (known[:, :1] == 1).all() and all(known[i, last_known[i]:].sum() == 0 for i in range(200))
    with pytest.raises(ConfigError, match="boxes.*not available for series"):
        parse_masks("boxes", "series")


def sines_config():
    return from_dict({"data": {"source": "toy:sines", "toy_samples": 800},
                      "net": {"unet": {"channels": 16, "groups": 4}},
                      "train": {"steps": 120, "batch_size": 64, "log_every": 20, "val_every": 40, "sample_every": 60,
                                "warmup_samples": 1280, "sample_metrics_every": 0},
                      "sample": {"steps": 8, "grid_n": 8}})


@pytest.fixture(scope="module")
def sines_run(tmp_path_factory):
    return steadydiff.train(sines_config(), out=tmp_path_factory.mktemp("sines") / "run", progress=False)


def test_a_series_run_trains_never_flips_and_draws_line_plots(sines_run, tmp_path):
    cfg, run = sines_config(), sines_run
    assert run.config.data.augment == 0  # series are never flipped, turned or shifted
    assert run.summary["backbone"] == "UNet1D"
    losses = [r["loss"] for r in map(__import__("json").loads, (run.dir / "metrics.jsonl").read_text().splitlines())]
    assert losses[-1] < 0.7 * losses[0]
    assert (run.dir / "samples" / "step-60.png").stat().st_size > 10_000  # line plots, not a one-pixel strip
    model = steadydiff.load(run.dir)
    a, b = model.sample(6, seed=3), model.sample(6, seed=3, batch_size=2)
    assert a.shape == (6, 5, 24)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the same series whatever the batch (up to float rounding)
    assert not np.allclose(a, model.sample(6, seed=4), atol=1e-3)
    with pytest.raises(ConfigError, match="images only"):
        cfg.data.augment = 0.12
        steadydiff.train(cfg, out=tmp_path / "flipped", progress=False)


def test_one_long_series_is_cut_into_windows_split_by_time(tmp_path):
    t = np.arange(600)
    table = np.stack([np.sin(t / 10), np.cos(t / 25) + t / 300], axis=1)
    (tmp_path / "long.csv").write_text("a,b\n" + "\n".join(f"{u:.6f},{v:.6f}" for u, v in table) + "\n")
    ds = load_data(DataConfig(source=str(tmp_path / "long.csv"), window=48, stride=4, holdout=0.2))
    assert ds.kind == "series" and ds.item_shape == (2, 48) and ds.columns == ["a", "b"]
    split = 600 - 120
    assert len(ds.train) == (split - 48) // 4 + 1 and len(ds.holdout) == (120 - 48) // 4 + 1
    # every training window lies before the split, every held-out one after it: they never overlap
    first_held = ds.holdout[0]
    assert np.allclose(first_held[:, 0], table[split], atol=1e-5)
    last_train = ds.train[-1]
    start = int(np.flatnonzero(np.isclose(table[:, 0], last_train[0, 0], atol=1e-6) &
                               np.isclose(table[:, 1], last_train[1, 0], atol=1e-6))[0])
    assert start + 48 <= split
    assert any("split by time" in n for n in ds.notes)
    np.save(tmp_path / "long.npy", table.astype(np.float32))  # the same series as an array, read as a series outright
    explicit = load_data(DataConfig(source=str(tmp_path / "long.npy"), kind="series", window=48, stride=4,
                                    holdout=0.2))
    np.testing.assert_allclose(explicit.train, ds.train, atol=1e-5)
    one = load_data(DataConfig(source=str(tmp_path / "long.npy"), kind="series", window=48, holdout=0.2))
    assert one.item_shape == (2, 48)
    np.save(tmp_path / "one.npy", table[:, :1].astype(np.float32))  # (T, 1): one channel
    assert load_data(DataConfig(source=str(tmp_path / "one.npy"), kind="series", window=48)).item_shape == (1, 48)
    # a held-out tail shorter than one window holds nothing out: its steps train rather than vanish
    short = load_data(DataConfig(source=str(tmp_path / "long.npy"), kind="series", window=48, stride=1, holdout=30))
    assert len(short.holdout) == 0 and len(short.train) == 600 - 48 + 1
    np.testing.assert_allclose(short.train[-1][:, -1], table[-1], atol=1e-5)  # the series' last step is learnt
    assert any("would hold out the last 30 steps, fewer than one window of 48" in n for n in short.notes)
    with pytest.raises(DataError, match="shorter than data.window=700"):
        load_data(DataConfig(source=str(tmp_path / "long.csv"), window=700))
    with pytest.raises(DataError, match="fewer than one window"):
        load_data(DataConfig(source=str(tmp_path / "long.csv"), window=48, holdout=0.95))
    with pytest.raises(ConfigError, match="data.kind=image is not a series"):
        DataConfig(source="x.csv", window=48, kind="image").check()


def test_forecasts_continue_the_history_and_refuse_what_they_cannot_do(sines_run, tmp_path):
    import subprocess
    import sys

    model = steadydiff.load(sines_run.dir)
    t = np.arange(60)
    history = (np.sin(0.04 * t[:, None] * np.array([1.0, 1.2, 0.8, 1.1, 0.9]) + 0.05) + 1) / 2
    paths = model.forecast(history, 6, draws=16, seed=1)
    assert paths.shape == (16, 5, 6) and np.isfinite(paths).all()
    assert np.array_equal(paths, model.forecast(history, 6, draws=16, seed=1))  # a path depends on its seed alone
    assert paths.std(axis=0).mean() > 0  # a spread of paths, not one
    for bad, message in [((history, 24), "between 1 and 23"), ((history[:5], 6), "last 18 steps"),
                         ((history[:, :2], 6), r"shaped \(steps, 5\)")]:
        with pytest.raises(steadydiff.errors.SteadydiffError, match=message):
            model.forecast(*bad)
    (tmp_path / "h.csv").write_text("a,b,c,d,e\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in history))
    out = tmp_path / "fc.csv"
    r = subprocess.run([sys.executable, "-m", "steadydiff", "forecast", str(sines_run.dir), "--in",
                        str(tmp_path / "h.csv"), "--horizon", "6", "--draws", "16", "--seed", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("step,channel0_q05,channel0_q50,channel0_q95")
    median = np.array([[float(v) for v in ln.split(",")[2::3]] for ln in lines[1:]])  # q50 per step and channel
    assert np.allclose(median.T, np.quantile(paths, 0.5, axis=0), atol=1e-4)
    assert np.array_equal(np.load(tmp_path / "fc-draws.npy"), paths)
    assert (tmp_path / "fc.png").stat().st_size > 10_000  # the fan chart beside the quantiles
    # bad input: a clear error, exit status 2, nothing written
    for extra, message in [(["--out", str(tmp_path / "bad.png")], "ending in .csv"),
                           (["--out", str(tmp_path / "x.csv"), "--horizon", "30"], "between 1 and 23"),
                           (["--out", str(tmp_path / "x.csv"), "--in", str(tmp_path / "none.csv")], "no such file")]:
        args = {"--in": str(tmp_path / "h.csv"), "--horizon": "6", "--out": None}
        for k, v in zip(extra[::2], extra[1::2], strict=True):
            args[k] = v
        r = subprocess.run([sys.executable, "-m", "steadydiff", "forecast", str(sines_run.dir),
                            *[x for kv in args.items() for x in kv]], capture_output=True, text=True, timeout=3600)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "bad.png").exists()
    assert not (tmp_path / "x.png").exists()


def test_eval_and_the_report_show_the_series_scores_beside_real_datas(sines_run):
    import steadydiff.evaluate
    from steadydiff.cli import main

    res = steadydiff.evaluate.evaluate(sines_run.dir, samplers=("heun",), nfe=(10,), n=60)
    row = res["table"][0]["metrics"]
    for key in ("acf_distance", "spectrum_distance"):
        assert row[key] > 0 and res["real_data"][f"{key}_sd"] > 0  # read against real windows' own spread
    assert "discriminative" not in row  # the GRU scores only when asked (--gru-scores)
    assert main(["report", str(sines_run.dir)]) == 0
    html = (sines_run.dir / "report.html").read_text()
    assert "acf_distance (real " in html and "spectrum_distance (real " in html
