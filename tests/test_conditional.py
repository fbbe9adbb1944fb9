"""Conditions end to end: where they come from, the network's null condition, guidance, the canary, the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import steadydiff
from steadydiff.config import from_dict
from steadydiff.data import DataConfig, load_data
from steadydiff.data.cond import CondSpec, draw_conditions, parse_conditions
from steadydiff.errors import ConfigError, DataError, SteadydiffError
from steadydiff.nets import MLPBackbone, MLPConfig
from steadydiff.sampling import Guidance, guided

CENTRES = 2.0 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)


def four_clusters(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(4, size=n)
    return (CENTRES[y] + 0.1 * rng.standard_normal((n, 2))).astype(np.float32), y.astype(np.int64)


def ignored_condition(run_dir) -> list[dict]:
    path = run_dir / "incidents.jsonl"
    events = map(json.loads, path.read_text().splitlines()) if path.exists() else []
    return [e for e in events if e.get("check") == "condition_ignored"]


def config(steps: int, **train) -> dict:
    return {"net": {"mlp": {"width": 64, "blocks": 2}},
            "train": {"steps": steps, "batch_size": 128, "log_every": 50, "val_every": 100, "checkpoint_every": 100,
                      "sample_every": 0, "sample_metrics_every": 0, "warmup_samples": 2560, "val_items": 64,
                      "ema_halflife_samples": 10_000, **train},
            "guard": {"cond_after": 200}, "sample": {"steps": 12, "grid_n": 16}}


# -- where conditions come from --------------------------------------------------------------------------------


def test_sources_give_labels_with_names_or_vectors(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    for name in ("zebra", "apple"):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((6, 6), 40 * i + (100 if name == "zebra" else 0), np.uint8)).save(
                folder / name / f"{i}.png")
    ds = load_data(DataConfig(source=str(folder), image_size=6, holdout=0))
    assert ds.class_names == ["apple", "zebra"]  # sorted, as ImageFolder sorts them
    assert ds.condition("auto").kind == "class" and list(ds.train_labels) == [0] * 4 + [1] * 4

    x, y = four_clusters(100)
    np.savez(tmp_path / "xy.npz", x=x, y=y + 10)
    ds = load_data(DataConfig(source=str(tmp_path / "xy.npz"), holdout=0))
    assert ds.class_names == ["10", "11", "12", "13"] and (ds.train_labels == y).all()
    np.savez(tmp_path / "xv.npz", x=x, y=np.stack([y, -y], 1).astype(np.float32))
    ds = load_data(DataConfig(source=str(tmp_path / "xv.npz"), holdout=0))
    spec = ds.condition("auto")
    assert spec.kind == "vector" and spec.dim == 2 and ds.class_names is None

    csv = tmp_path / "t.csv"
    csv.write_text("a,b,kind\n" + "\n".join(f"{i},{i * 2},{'cat' if i % 3 else 'dog'}" for i in range(30)))
    ds = load_data(DataConfig(source=str(csv), label_column="kind", holdout=0))
    assert ds.class_names == ["cat", "dog"] and ds.columns == ["a", "b"] and ds.train.shape == (30, 2)
    with pytest.raises(DataError, match="no column 'knd'.*Did you mean 'kind'"):
        load_data(DataConfig(source=str(csv), label_column="knd"))

    from torch.utils.data import TensorDataset

    ds = load_data(DataConfig(holdout=0), TensorDataset(torch.from_numpy(x), torch.from_numpy(x[:, :1] * 3)))
    assert ds.condition("auto").kind == "vector" and ds.train_vectors.shape == (100, 1)
    assert load_data(DataConfig(source="toy:grid25")).condition("auto") is None  # mixture components are latent
    with pytest.raises(DataError, match="carries no conditions"):
        load_data(DataConfig(source="toy:grid25")).condition("on")


def test_bad_condition_files_are_refused_with_the_item(tmp_path):
    x, y = four_clusters(50)
    np.savez(tmp_path / "short.npz", x=x, y=y[:40])
    with pytest.raises(DataError, match="40 conditions for 50 items"):
        load_data(DataConfig(source=str(tmp_path / "short.npz")))
    v = np.ones((50, 3))
    v[7, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=v)
    with pytest.raises(DataError, match="item 7"):
        load_data(DataConfig(source=str(tmp_path / "nan.npz")))
    with pytest.raises(DataError, match="CSV files only"):
        load_data(DataConfig(source="digits", label_column="target"))


def test_requested_conditions_are_checked_against_the_run():
    spec = CondSpec.for_labels(np.array([0, 1, 2, 2]), ["cat", "dog", "eel"])
    assert list(parse_conditions(spec, "dog", 3)) == [1, 1, 1]
    assert list(parse_conditions(spec, [2, "cat"], 2)) == [2, 0]
    for bad, message in [("dgo", "unknown class 'dgo'.*Did you mean 'dog'"), (3, "out of range"),
                         ([0, 1, 2], "3 class conditions for 2 samples"), (True, "boolean")]:
        with pytest.raises(DataError, match=message):
            parse_conditions(spec, bad, 2)
    with pytest.raises(DataError, match="without a condition"):
        parse_conditions(None, 1, 2)
    vec = CondSpec.for_vectors(np.random.default_rng(0).normal(size=(20, 3)))
    assert parse_conditions(vec, [1, 2, 3], 4).shape == (4, 3)
    with pytest.raises(DataError, match=r"expects \(3,\)"):
        parse_conditions(vec, np.ones((4, 2)), 4)
    with pytest.raises(DataError, match="finite"):
        parse_conditions(vec, [1, np.nan, 3], 4)
    # drawn conditions follow the class shares, condition i a function of (seed, i) alone
    drawn = draw_conditions(spec, 2000, seed=5)
    assert abs(np.mean(drawn == 2) - 0.5) < 0.05 and (draw_conditions(spec, 10, seed=5) == drawn[:10]).all()


# -- the network and guidance -----------------------------------------------------------------------------------


def test_null_condition_and_guidance_weights_are_exact():
    torch.manual_seed(0)
    net = MLPBackbone(2, MLPConfig(width=32, blocks=2), cond_classes=3)
    for p in net.parameters():  # a trained-looking network (the output layer starts at zero)
        p.data.normal_(0, 0.3)
    x, sigma = torch.randn(6, 2), torch.full((6,), 0.7)
    cond = torch.tensor([0, 1, 2, 0, 1, 2])

    def denoiser(x_, s, c):
        return x_ + net(x_, torch.log(s) / 4, c)

    plain = denoiser(x, sigma, cond)
    uncond = denoiser(x, sigma, torch.full_like(cond, -1))
    assert not torch.allclose(plain, uncond)
    assert torch.equal(guided(denoiser, cond, Guidance(1.0))(x, sigma), plain)
    assert torch.equal(guided(denoiser, cond, Guidance(0.0))(x, sigma), uncond)
    w2 = guided(denoiser, cond, Guidance(2.0))(x, sigma)
    assert torch.allclose(w2, uncond + 2 * (plain - uncond), atol=1e-6)
    outside = guided(denoiser, cond, Guidance(2.0, interval=(1.0, 5.0)))(x, sigma)  # σ = 0.7 is outside
    assert torch.equal(outside, plain)
    with pytest.raises(ConfigError, match="built without a condition"):
        MLPBackbone(2, MLPConfig(width=32, blocks=2))(x, sigma, cond)


# -- training ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    x, y = four_clusters()
    np.savez(root / "clusters.npz", x=x, y=y)
    run = steadydiff.train(config(600), data=str(root / "clusters.npz"), out=root / "run", progress=False)
    return root, run


def test_samples_follow_the_requested_class_and_unconditional_ones_cover_all(cluster_run):
    root, run = cluster_run
    model = run.load()
    assert model.classes == ["0", "1", "2", "3"]
    for k in range(4):
        x = model.sample(200, cond=k, seed=1)
        nearest = np.argmin(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1)
        assert np.mean(nearest == k) > 0.95, f"class {k}: {np.mean(nearest == k):.2f} of samples near its centre"
    # unconditional samples (w = 0) spread over all four clusters
    x = model.sample(400, guidance=0.0, seed=2)
    shares = np.bincount(np.argmin(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1), minlength=4) / 400
    assert shares.min() > 0.12
    assert not ignored_condition(run.dir)
    info = json.loads((run.dir / "dataset.json").read_text())
    assert info["condition"]["kind"] == "class" and info["condition"]["classes"] == ["0", "1", "2", "3"]
    # no shipped classifier for this data: a probe fitted on the training items scores the requested classes
    quality = run.summary["quality"]
    assert quality["real_data"]["probe_accuracy"] > 0.95 and quality["class_accuracy"] > 0.9


def test_sample_depends_on_seed_and_condition_not_batch_size(cluster_run):
    model = cluster_run[1].load()
    labels = np.arange(10) % 4
    whole = model.sample(10, cond=labels, guidance=2.0, seed=3, steps=6)
    parts = model.sample(10, cond=labels, guidance=2.0, seed=3, steps=6, batch_size=3)
    np.testing.assert_allclose(whole, parts, atol=1e-5)
    again = model.sample(10, cond=labels, guidance=2.0, seed=3, steps=6)
    assert np.array_equal(whole, again)


def test_shuffled_labels_are_caught_by_the_condition_canary(tmp_path):
    x, y = four_clusters()
    np.savez(tmp_path / "shuffled.npz", x=x, y=np.random.default_rng(1).permutation(y))
    run = steadydiff.train(config(300), data=str(tmp_path / "shuffled.npz"), out=tmp_path / "run", progress=False)
    fired = ignored_condition(run.dir)
    assert fired and fired[0]["step"] >= 200


def test_conditional_resume_is_exact(tmp_path):
    x, y = four_clusters(500)
    np.savez(tmp_path / "c.npz", x=x, y=y)
    cfg = config(40, log_every=10, val_every=20, checkpoint_every=20)
    run = tmp_path / "run"
    steadydiff.train(cfg, data=str(tmp_path / "c.npz"), out=run, progress=False)
    straight = load_file(str(run / "checkpoints/step-40/model.safetensors"))
    shutil.rmtree(run / "checkpoints/step-40")
    steadydiff.train(cfg, data=str(tmp_path / "c.npz"), out=run, progress=False)
    resumed = load_file(str(run / "checkpoints/step-40/model.safetensors"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    with pytest.raises(SteadydiffError, match="train.conditional: run has .auto., now .off."):
        cfg_off = from_dict(config(60, log_every=10, val_every=20, checkpoint_every=20, conditional="off"))
        steadydiff.train(cfg_off, data=str(tmp_path / "c.npz"), out=run, progress=False)


def test_a_backbone_that_ignores_its_condition_is_refused_at_start(tmp_path):
    x, y = four_clusters(300)

    class Deaf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = MLPBackbone(2, MLPConfig(width=16, blocks=1))

        def forward(self, x, c_noise, cond=None):
            return self.inner(x, c_noise)  # never reads cond

    np.savez(tmp_path / "c.npz", x=x, y=y)
    with pytest.raises(SteadydiffError, match="does not change with its condition"):
        steadydiff.train(config(10), data=str(tmp_path / "c.npz"), out=tmp_path / "run", backbone=Deaf(),
                         progress=False)


def test_cli_sample_by_class_and_its_errors(cluster_run, tmp_path):
    run = cluster_run[1].dir

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(run), *args], capture_output=True,
                              text=True)

    ok = cli("--n", "5", "--class", "all", "--steps", "4", "--guidance", "1.5", "--out", str(tmp_path / "s.npy"))
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "s.npy").shape == (20, 2)
    np.save(tmp_path / "c.npy", np.array([0, 3, 3]))
    assert cli("--n", "3", "--cond", str(tmp_path / "c.npy"), "--steps", "4", "--out", str(tmp_path / "t.npy")
               ).returncode == 0
    for args, message in [(["--class", "seven"], "unknown class 'seven'"), (["--class", "9"], "out of range"),
                          (["--cond", str(tmp_path / "c.npy")], "3 conditions for --n 5"),
                          (["--guidance", "nan"], "finite")]:
        bad = cli("--n", "5", "--steps", "4", "--out", str(tmp_path / "u.npy"), *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


# -- captions ---------------------------------------------------------------------------------------------------

WORDS = [["east", "right"], ["north", "up"], ["west", "left"], ["south", "down"]]


class Captioned(torch.utils.data.Dataset):
    """The four clusters, each point captioned with one of two words for its direction, in varied wordings."""

    def __init__(self, n: int = 2000):
        rng = np.random.default_rng(0)
        self.x, y = four_clusters(n)
        templates = ["a point to the {}", "{}", "towards the {} side"]
        self.captions = [templates[rng.integers(3)].format(WORDS[k][rng.integers(2)]) for k in y]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.captions[i]


def test_captions_beside_an_image_folder_are_read_and_checked(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((6, 6), 50 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "captions.csv").write_text(
        'file,caption\nim0.png,"a dark, plain square"\nim1.png,grey\nim2.png,light\n')
    ds = load_data(DataConfig(source=str(tmp_path), image_size=6, holdout=0))
    assert ds.train_captions == ["a dark, plain square", "grey", "light"]
    spec = ds.condition("auto")
    assert spec.kind == "text" and "dark" in spec.vocab
    (tmp_path / "captions.csv").write_text("file,caption\nim0.png,dark\nim2.png,light\n")
    with pytest.raises(DataError, match="no caption for im1.png"):
        load_data(DataConfig(source=str(tmp_path), image_size=6))


def test_captions_train_a_text_encoder_that_follows_the_prompt(tmp_path):
    run = steadydiff.train(config(500), data=Captioned(), out=tmp_path / "run", progress=False)
    model = run.load()
    assert model.cond.kind == "text" and (run.dir / "captions.json").is_file()
    for k, synonyms in enumerate(WORDS):
        for word in synonyms:
            x = model.sample(100, cond=f"to the {word}", seed=1)
            nearest = np.argmin(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1)
            assert np.mean(nearest == k) > 0.9, f"{word!r}: {np.mean(nearest == k):.2f} near its centre"
    with pytest.raises(DataError, match="no word the training captions used"):
        model.sample(4, cond="moon landing")
    ok = subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(run.dir), "--n", "4", "--steps", "4",
                         "--prompt", "up", "--out", str(tmp_path / "p.npy")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(run.dir), "--n", "4", "--class", "1",
                          "--out", str(tmp_path / "q.npy")], capture_output=True, text=True)
    assert bad.returncode == 2 and '--prompt "TEXT"' in bad.stderr


def test_a_pretrained_text_encoder_embeds_each_caption_once(tmp_path, monkeypatch):
    module = tmp_path / "my_encoder.py"
    module.write_text(
        "import numpy as np\nCALLS = []\nWORDS = ['east', 'right', 'north', 'up', 'west', 'left', 'south', 'down']\n"
        "def embed(texts):\n    CALLS.append(len(texts))\n"
        "    return np.array([[float(w in t.split()) for w in WORDS] for t in texts])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = config(20)
    cfg["data"] = {"text_encoder": "my_encoder:embed"}
    run = steadydiff.train(cfg, data=Captioned(300), out=tmp_path / "run", progress=False)
    import my_encoder

    assert my_encoder.CALLS == [24]  # 24 distinct captions, embedded once
    model = run.load()
    assert model.cond.kind == "vector" and model.cond.encoder == "my_encoder:embed"
    assert model.sample(3, cond="a point to the west", steps=3).shape == (3, 2)
    cfg["data"] = {"text_encoder": "my_encoder:missing"}
    with pytest.raises(SteadydiffError, match="has no attribute 'missing'"):
        steadydiff.train(cfg, data=Captioned(300), out=tmp_path / "run2", progress=False)


# -- imputation -------------------------------------------------------------------------------------------------


def test_impute_keeps_known_values_exactly_and_completes_consistently(cluster_run):
    model = cluster_run[1].load()
    x = np.full((40, 2), np.nan, dtype=np.float32)
    x[:, 0] = np.float32(0.0123)  # x known near 0: the point lies north (y ≈ 2) or south (y ≈ −2)
    done = model.impute(x, seed=0)
    assert np.array_equal(done[:, 0], x[:, 0]) and not np.isnan(done).any()

    def on_a_mode(y):
        return np.mean(np.abs(np.abs(y[:, 1]) - 2.0) < 0.4)

    assert on_a_mode(done) > 0.9
    assert on_a_mode(model.impute(x, seed=0, resample=1)) < on_a_mode(done)  # resampling harmonises the parts
    north = model.impute(x, cond=1, seed=0)  # the class decides which of the two
    assert np.mean(np.abs(north[:, 1] - 2.0) < 0.4) > 0.9
    draws = model.impute(x[:6], draws=3, seed=0, resample=2, steps=6)
    assert draws.shape == (3, 6, 2) and (draws[:, :, 0] == x[0, 0]).all()
    parts = np.concatenate([model.impute(x[:3], seed=0, steps=6), model.impute(x[3:6], seed=0, steps=6)])
    np.testing.assert_allclose(parts[:3], model.impute(x[:6], seed=0, steps=6)[:3], atol=1e-5)
    with pytest.raises(SteadydiffError, match="infinite"):
        model.impute(np.array([[np.inf, np.nan]], dtype=np.float32))


def test_cli_impute_reads_csv_gaps_and_refuses_bad_input(cluster_run, tmp_path):
    run = cluster_run[1].dir
    (tmp_path / "gaps.csv").write_text("x,y\n0.01,\n-2.0,nan\n,2.0\n")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run), *args], capture_output=True,
                              text=True)

    ok = cli("--in", str(tmp_path / "gaps.csv"), "--out", str(tmp_path / "done.npy"), "--draws", "2", "--steps", "6")
    assert ok.returncode == 0, ok.stderr
    done = np.load(tmp_path / "done.npy")
    assert done.shape == (3, 2) and done[0, 0] == np.float32(0.01) and done[2, 1] == np.float32(2.0)
    assert np.load(tmp_path / "done-draws.npy").shape == (2, 3, 2)
    np.save(tmp_path / "wide.npy", np.zeros((3, 5), np.float32))
    for args, message in [(["--in", str(tmp_path / "wide.npy")], "shaped (5,)"),
                          (["--in", str(tmp_path / "gaps.csv"), "--mask", "m.png"], "--mask goes with an image"),
                          (["--in", str(tmp_path / "nope.npy")], "no such file"),
                          (["--in", str(tmp_path / "gaps.csv"), "--known-guidance", "2"], "train with train.masks")]:
        bad = cli(*args, "--out", str(tmp_path / "o.npy"))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_edit_moves_towards_the_class_as_strength_grows(cluster_run, tmp_path):
    model = cluster_run[1].load()
    x = np.tile(np.array([[2.0, 0.0]], np.float32), (100, 1))  # every item at the east cluster (class 0)

    def share_north(y):
        return np.mean(np.argmin(((y[:, None, :] - CENTRES[None]) ** 2).sum(-1), 1) == 1)

    slight, strong = model.edit(x, 0.05, cond=1), model.edit(x, 0.8, cond=1)
    assert np.abs(slight - x).max() < 0.1 and share_north(slight) == 0
    assert share_north(strong) > 0.9
    with pytest.raises(SteadydiffError, match="strength"):
        model.edit(x, 0.0)
    np.save(tmp_path / "east.npy", x[:4])
    ok = subprocess.run([sys.executable, "-m", "steadydiff", "edit", str(cluster_run[1].dir), "--in",
                         str(tmp_path / "east.npy"), "--strength", "0.8", "--class", "1", "--out",
                         str(tmp_path / "e.npy")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert share_north(np.load(tmp_path / "e.npy")) > 0.5


def test_report_shows_how_much_the_condition_is_used(cluster_run):
    from steadydiff.report.build import condition_html

    run = cluster_run[1].dir
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in metrics if "cond_gain" in r][-1]
    assert last["val_loss_shuffled"] > last["val_loss"] and last["cond_gain"] > 0.5
    html = condition_html(metrics)
    assert "Condition" in html and "<img" in html and f"{100 * last['cond_gain']:.1f} %" in html
    assert condition_html([{k: v for k, v in r.items() if not k.startswith("val_loss_")} for r in metrics]) == ""


def test_mask_kinds_and_mask_conditioned_imputation(tmp_path):
    from steadydiff.data.masks import draw_masks, parse_masks

    g = torch.Generator().manual_seed(0)
    m = draw_masks(200, (1, 8, 8), parse_masks("all", "image"), 0.1, g)
    assert m.shape == (200, 1, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
    empty = (m.flatten(1).sum(1) == 0).float().mean()
    assert 0.03 < empty < 0.2  # the share with nothing known
    partial = m.flatten(1).mean(1)
    assert ((partial > 0) & (partial < 1)).float().mean() > 0.7  # most items have known and unknown pixels
    with pytest.raises(ConfigError, match="not available for vector data"):
        parse_masks("boxes", "vector")
    x, _ = four_clusters(500)
    cfg = config(30, masks="scattered")
    run = steadydiff.train(cfg, data=x, out=tmp_path / "run", progress=False)
    model = run.load()
    q = np.full((5, 2), np.nan, dtype=np.float32)
    q[:, 0] = 1.5
    for method in ("masked", "replace"):
        done = model.impute(q, method=method, steps=4, resample=1)
        assert (done[:, 0] == np.float32(1.5)).all() and np.isfinite(done).all()
    # guidance by the known values: w = 1 is plain masked imputation exactly; another w moves the completions and
    # still returns the known values as given; the training-free method has no unconditional branch to guide by
    plain_fill = model.impute(q, steps=4, seed=3)
    assert np.array_equal(model.impute(q, steps=4, seed=3, known_guidance=1.0), plain_fill)
    guided_fill = model.impute(q, steps=4, seed=3, known_guidance=2.5)
    assert (guided_fill[:, 0] == np.float32(1.5)).all() and not np.allclose(guided_fill, plain_fill)
    with pytest.raises(SteadydiffError, match="known_guidance=2.*method='replace'"):
        model.impute(q, method="replace", known_guidance=2)
    with pytest.raises(SteadydiffError, match="finite"):
        model.impute(q, known_guidance=float("nan"))
    assert model.sample(4, steps=4).shape == (4, 2)  # nothing known: plain samples
    plain = steadydiff.train(config(10), data=x, out=tmp_path / "plain", progress=False).load()
    with pytest.raises(SteadydiffError, match="needs a run trained with train.masks"):
        plain.impute(q, method="masked")


def test_super_resolution_matches_the_low_resolution_input(tmp_path):
    from steadydiff.data.masks import lowres_of

    ds = load_data(DataConfig(source="digits"))
    cfg = {"data": {"source": "digits"}, "net": {"unet": {"channels": 16, "groups": 4}},
           "train": {"steps": 150, "batch_size": 64, "log_every": 50, "val_every": 50, "checkpoint_every": 150,
                     "sample_every": 0, "sample_metrics_every": 0, "lowres": 2, "conditional": "off"},
           "sample": {"steps": 8, "grid_n": 8}}
    run = steadydiff.train(cfg, out=tmp_path / "run", progress=False)
    model = run.load()
    high = ds.holdout[:16]
    low = torch.nn.functional.avg_pool2d(torch.from_numpy(high), 2).numpy()
    raw = model.upscale(low, seed=0, exact=False)
    assert raw.shape == high.shape
    # the network's own block averages follow the input far better than a sample from another input does
    err = np.abs(torch.nn.functional.avg_pool2d(torch.from_numpy(raw), 2).numpy() - low).mean()
    other = np.abs(torch.nn.functional.avg_pool2d(torch.from_numpy(raw[::-1].copy()), 2).numpy() - low).mean()
    assert err < 0.5 * other, (err, other)
    up = model.upscale(low, seed=0)  # by default the block averages are the input's, within the pixel range
    assert np.abs(torch.nn.functional.avg_pool2d(torch.from_numpy(up), 2).numpy() - low).max() < 1e-4
    assert up.min() >= 0 and up.max() <= 16
    assert np.abs(up - raw).mean() < np.abs(raw - np.repeat(np.repeat(low, 2, 2), 2, 3)).mean()  # a small move
    assert lowres_of(torch.ones(1, 1, 8, 8), 2).shape == (1, 1, 8, 8)
    with pytest.raises(SteadydiffError, match="upscale"):
        model.sample(4)
    with pytest.raises(SteadydiffError, match="shaped"):
        model.upscale(np.zeros((2, 1, 8, 8), np.float32))


def test_autoguidance_by_the_raw_weights(cluster_run, tmp_path):
    run = cluster_run[1].dir
    model, raw = steadydiff.load(run), steadydiff.load(run, ema=False)
    x1 = model.sample(50, cond=2, guidance=1.0, guide=raw, seed=0, steps=6)
    assert np.array_equal(x1, model.sample(50, cond=2, seed=0, steps=6, guidance=1.0))  # w = 1: the model alone
    x2 = model.sample(50, cond=2, guidance=2.0, guide=raw, seed=0, steps=6)
    # the guide's branch is used (whether it helps depends on the guide being the weaker model: BENCHMARKS.md)
    assert not np.allclose(x1, x2) and np.isfinite(x2).all()
    ok = subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(run), "--n", "4", "--class", "2",
                         "--guide", "raw", "--guidance", "2", "--steps", "4", "--out", str(tmp_path / "a.npy")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_matching_block_means_is_the_nearest_image_in_range():
    from steadydiff.data.masks import lowres_of, match_block_means

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 16, size=(3, 2, 7, 5)).astype(np.float32)  # 7 × 5: the edge blocks are partial
    low = rng.uniform(0, 16, size=(3, 2, 4, 3)).astype(np.float32)
    low[0, 0, 0, 0] = 16.0  # every pixel of that block must go to the top of the range
    out = match_block_means(x, low, 2, 0.0, 16.0)
    got = torch.nn.functional.avg_pool2d(torch.from_numpy(out), 2, ceil_mode=True).numpy()
    assert np.abs(got - low).max() < 1e-4 and out.min() >= 0 and out.max() <= 16
    assert (out[0, 0, :2, :2] == 16).all()
    # within the range the projection is a shift of the block by its mean's error: nothing nearer has that mean
    mid = np.full((1, 1, 4, 4), 8.0, np.float32) + rng.uniform(-1, 1, size=(1, 1, 4, 4)).astype(np.float32)
    target = np.full((1, 1, 2, 2), 8.5, np.float32)
    shifted = match_block_means(mid, target, 2, 0.0, 16.0)
    want = mid + np.repeat(np.repeat(target - lowres_of(torch.from_numpy(mid), 2).numpy()[:, :, ::2, ::2], 2, 2), 2, 3)
    assert np.allclose(shifted, want, atol=1e-5)


def test_a_run_whose_items_all_carry_one_class_finishes(tmp_path):
    # the end-of-run quality has no class probe to fit on one class (the canary's "every label 0" fault)
    x, _ = four_clusters(300)
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(len(x), np.int64))
    run = steadydiff.train(config(30, conditional="on"), data=str(tmp_path / "one.npz"), out=tmp_path / "run",
                           progress=False)
    assert run.summary["steps"] == 30 and "class_accuracy" not in json.dumps(run.summary.get("quality", {}))
