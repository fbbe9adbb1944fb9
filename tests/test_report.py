"""`steadydiff report`: every section and image is there, also mid-run and without a checkpoint; the verdict's
rules on synthetic curves; the page renders in headless Chromium with every image loaded."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import steadydiff
import steadydiff.evaluate
from steadydiff.cli import main
from steadydiff.config import from_dict
from steadydiff.errors import SteadydiffError
from steadydiff.report import SECTION_IDS, write_report
from steadydiff.report import verdict as v
from steadydiff.report.live import Reference, memorisation

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def spikes(steps):
    """A batch_transform that blows up the batches of `steps`: the guard skips them and then rolls back."""
    def transform(step, x):
        return x * 1e6 if step in steps else x
    return transform


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A 60-step toy run with grids, checkpoints, and a burst of spikes: the guard skips three and finds no damage,
    then skips most of its 10-step window (the weights stall) and rolls back."""
    cfg = from_dict({
        "data": {"source": "toy:ring8", "toy_samples": 2000},
        "net": {"mlp": {"width": 64, "blocks": 2}},
        "train": {"steps": 60, "batch_size": 64, "log_every": 5, "val_every": 10, "checkpoint_every": 20,
                  "sample_every": 20, "warmup_samples": 640, "val_items": 32},
        "guard": {"min_history": 20, "snapshot_every": 20, "skip_window": 10},
        "sample": {"steps": 6, "grid_n": 32},
    })
    run = tmp_path_factory.mktemp("ring") / "run"
    steadydiff.train(cfg, out=run, progress=False, batch_transform=spikes(set(range(44, 50))))
    return run


@pytest.fixture(scope="module")
def ring_report(ring_run):
    assert main(["report", str(ring_run), "--samples", "200"]) == 0
    return ring_run / "report.html"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny U-Net on the built-in 8×8 digits: an image run whose data the report can reload."""
    cfg = from_dict({"data": {"source": "digits"},
                     "net": {"unet": {"channels": 8, "channel_mult": [1, 2], "groups": 4}},
                     "train": {"steps": 10, "batch_size": 32, "log_every": 2, "val_every": 2, "checkpoint_every": 5,
                               "sample_every": 5, "val_items": 16},
                     "sample": {"steps": 5, "grid_n": 16}})  # heun 5 = 9 NFE: a setting eval draws
    run = tmp_path_factory.mktemp("digits") / "run"
    steadydiff.train(cfg, out=run, progress=False)
    return run


def check_page(html: str) -> list[bytes]:
    """Every section with its heading, no script, no remote reference; returns the images, each a valid PNG."""
    for sid in SECTION_IDS:
        assert re.search(rf'<section id="{sid}"><h2>[^<]+</h2>', html), f"section {sid} missing"
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not reach the network"
    pngs = [base64.b64decode(b, validate=True) for b in IMG.findall(html)]
    assert len(pngs) == html.count("<img "), "every image is an embedded PNG"
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG"
            im.verify()
    return pngs


def section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def test_report_of_a_finished_vector_run_with_incidents(ring_report):
    html = ring_report.read_text()
    pngs = check_page(html)
    assert len(pngs) >= 12  # curves, grids, timeline, quality, histogram, offenders, trajectory
    assert "finished" in section(html, "overview") and "MLPBackbone" in section(html, "overview")
    incidents = section(html, "incidents")
    assert "loss_spike" in incidents and "rollback" in incidents and "<img" in incidents
    # each action with the evidence that triggered it
    assert "geometric-mean loss" in incidents and "gradient norm" in incidents
    assert "no damage" in incidents and "updates stalled" in incidents
    quality = section(html, "quality-nfe")
    for solver in ("heun", "dpmpp-2m", "euler"):
        assert f"<td>{solver}</td>" in quality
    assert "/8" in quality  # toy data: mode coverage per setting
    assert "<img" in section(html, "trajectory") and "<img" in section(html, "memorisation")
    verdicts = section(html, "verdict")
    for question in ("Converged?", "Diverging?", "Memorising?", "Mode collapse?"):
        assert question in verdicts
    assert "rollback" in verdicts  # the guard's rollback is named in the divergence answer
    # every panel of curves is read in a sentence with its numbers
    assert re.search(r"The fixed validation loss \(EMA weights\) went from [\d.]+ \(step [\d,]+\) to",
                     section(html, "loss"))
    assert re.search(r"The gradient norm before clipping had a median of [\d.]+", section(html, "gradients"))
    assert re.search(r"% of the logged steps were above the clipping norm 1", section(html, "gradients"))


def test_report_draws_a_reduced_table_when_the_full_one_would_be_slow(ring_run, tmp_path, monkeypatch, capsys):
    """`report` draws eval.json's table itself only within cli.REPORT_EVAL_S: the full table of 9 settings when it
    fits, else the run's own solver at 10/20/35 NFE, else nothing, saying how to get it."""
    run = tmp_path / "run"
    shutil.copytree(ring_run, run)
    (run / "eval.json").unlink(missing_ok=True)
    monkeypatch.setattr(steadydiff.Model, "seconds_for", lambda self, n, **kw: 0.5)  # 0.5 s per evaluation
    assert main(["report", str(run), "--samples", "100"]) == 0  # full: ~190 NFE ≈ 95 s; heun alone: 63 ≈ 32 s
    table = json.loads((run / "eval.json").read_text())["quality_vs_nfe"]["table"]
    assert {r["solver"] for r in table} == {"heun"} and {r["nfe_target"] for r in table} == {10, 20, 35}
    assert "scoring heun only" in capsys.readouterr().out
    quality = section((run / "report.html").read_text(), "quality-nfe")
    assert "a reduced table (heun only" in quality and "adds dpmpp-2m, euler" in quality
    (run / "eval.json").unlink()
    monkeypatch.setattr(steadydiff.Model, "seconds_for", lambda self, n, **kw: 10.0)  # even heun at 10 NFE: > 40 s
    assert main(["report", str(run), "--samples", "100"]) == 0
    assert not (run / "eval.json").exists()
    quality = section((run / "report.html").read_text(), "quality-nfe")
    assert "even its smallest table (heun at 10 NFE, 100 samples) would take about" in quality


def test_report_of_an_image_run(digits_run, tmp_path):
    html = write_report(digits_run, tmp_path / "before.html", n_eval=60).read_text()
    assert "no eval.json yet" in section(html, "quality-nfe")  # the report computes no quality of its own
    assert "eval RUN --nll" in section(html, "memorisation")  # says how to add the likelihood
    steadydiff.evaluate.evaluate(digits_run, n=60)  # what `steadydiff report` runs first
    steadydiff.evaluate.likelihood(digits_run, n=10, steps=4)
    out = write_report(digits_run, tmp_path / "sub" / "r.html", n_eval=60)
    assert out == tmp_path / "sub" / "r.html"
    html = out.read_text()
    check_page(html)
    assert len(re.findall(r"<figure><img", section(html, "samples"))) == 2  # step-5 and step-10 grids
    memo = section(html, "memorisation")
    assert "nearest training item" in memo and "<img" in memo
    assert "Likelihood (`steadydiff eval --nll`" in memo and "bits/dim" in memo and "held-out items" in memo
    assert "<img" in section(html, "trajectory") and "<img" in section(html, "quality-nfe")
    # eval.json's figures, with the definition the sample metrics and summary.json use: the shipped classifier
    assert "fd_classifier" in section(html, "quality-nfe") and "Floor:" in section(html, "quality-nfe")
    # the memorisation check reuses the samples eval drew with the run's own sampler instead of drawing them again
    from steadydiff.report.files import read_run
    from steadydiff.report.live import compute

    model = steadydiff.load(digits_run)
    drawn = np.load(digits_run / "eval-samples.npy")
    assert drawn.shape == (60, 1, 8, 8)
    again = model.sample(60, seed=0, cond=model.conditions(60, seed=0))
    assert np.allclose(drawn, again, atol=1e-5)  # the same setting: the run's sampler, seed 0
    np.save(digits_run / "eval-samples.npy", drawn * 0.5)  # marked, to see that they are read, not redrawn
    live = compute(read_run(digits_run), n=60)
    assert np.allclose(model.normaliser.inverse(live.memo["samples"]), drawn * 0.5, atol=1e-4)
    np.save(digits_run / "eval-samples.npy", drawn)


def test_report_while_the_run_is_going(ring_run, tmp_path):
    """No summary.json and a half-written metrics line; then no checkpoint and data that cannot be reloaded."""
    run = tmp_path / "run"
    shutil.copytree(ring_run, run)
    (run / "summary.json").unlink()
    (run / "eval.json").unlink(missing_ok=True)  # whether an earlier test evaluated the shared run or not
    (run / "report.html").unlink(missing_ok=True)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 65, "loss": 0.9')  # the trainer is writing this line right now
    html = write_report(run, n_eval=50).read_text()
    check_page(html)
    assert "in progress" in section(html, "overview")
    assert "unreadable line" in html

    shutil.rmtree(run / "checkpoints")
    toml = (run / "config.toml").read_text().replace('source = "toy:ring8"', 'source = "<ndarray given>"')
    (run / "config.toml").write_text(toml)
    html = write_report(run).read_text()
    check_page(html)
    for sid in ("memorisation", "trajectory"):
        assert "no checkpoint yet" in section(html, sid)
    assert "no eval.json yet" in section(html, "quality-nfe")
    assert "<img" in section(html, "loss") and "<img" in section(html, "samples")


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SteadydiffError, match="not a steadydiff run directory"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- the verdict's rules on synthetic curves -----------------------------------------------------------------


def curve(values, seed=0, noise=0.003):
    y = np.asarray(values, dtype=float) * (1 + noise * np.random.default_rng(seed).standard_normal(len(values)))
    return list(np.arange(1, len(y) + 1) * 6400.0), list(y)


def test_flat_validation_is_converged_and_not_diverging():
    x, y = curve(np.r_[np.geomspace(1.0, 0.3, 30), np.full(30, 0.3)])
    assert v.converged(x, y).answer == "yes"
    d = v.diverging(x, y)
    assert d.answer == "no" and "1.0" in d.text  # states the ratio to the best


def test_still_falling_validation_is_not_converged():
    x, y = curve(np.geomspace(1.0, 0.2, 60))
    c = v.converged(x, y)
    assert c.answer == "no" and "still improving" in c.text and not c.alarm


def test_rising_validation_is_diverging():
    x, y = curve(np.r_[np.geomspace(1.0, 0.3, 40), np.linspace(0.3, 0.6, 20)])
    d = v.diverging(x, y)
    assert d.answer == "yes" and d.alarm and "2.0" in d.text
    assert v.converged(x, y).answer == "no"
    # Rising while the training loss still falls is overfitting, not instability.
    _, train = curve(np.geomspace(1.0, 0.1, 60), seed=1)
    over = v.diverging(x, y, train_x=x, train_loss=train)
    assert over.answer == "no" and over.alarm and "overfitting" in over.text


def test_guard_stop_and_late_rollbacks_are_diverging():
    x, y = curve(np.full(20, 0.3))
    stop = v.diverging(x, y, incidents=[{"step": 90, "guard": "collapse", "action": "stop"}])
    assert stop.answer == "yes"
    late = v.diverging(x, y, last_step=100, incidents=[{"step": 95, "guard": "collapse", "action": "rollback"}])
    assert late.answer == "yes" and "95" in late.text
    early = v.diverging(x, y, last_step=100, incidents=[{"step": 10, "guard": "collapse", "action": "rollback"}])
    assert early.answer == "no" and "recovered" in early.text
    assert v.converged(x[:3], y[:3]).answer == "unclear"


def test_copies_far_above_the_heldout_baseline_are_memorising():
    m = v.memorising(0.4, 0.02, n_samples=500)
    assert m.answer == "yes" and "40.0%" in m.text and "2.0%" in m.text
    assert v.memorising(0.03, 0.02).answer == "no"
    assert v.memorising(0.14, 0.10).answer == "no"  # not twice the baseline
    assert v.memorising(None, None).answer == "unclear"


def test_memorisation_figures_flag_copied_samples():
    rng = np.random.default_rng(0)
    train, held = rng.normal(size=(400, 16)), rng.normal(size=(100, 16))
    ref = Reference(train=train, holdout=held, train_user=train, modes=None, mode_std=None, n_train_total=400)
    copies = memorisation(train[:200] + 1e-3 * rng.normal(size=(200, 16)), ref)
    fresh = memorisation(rng.normal(size=(200, 16)), ref)
    assert v.memorising(copies["copy_fraction"], copies["heldout_fraction"]).answer == "yes"
    assert v.memorising(fresh["copy_fraction"], fresh["heldout_fraction"]).answer == "no"
    assert copies["worst_distances"].max() < 0.01 and (copies["worst_nearest"] < 200).all()


def test_nearest_distances_are_read_against_held_out_items():
    from steadydiff.report.verdict import nearest_reading

    assert "copying" in nearest_reading(2.0, 4.5) and "0.44×" in nearest_reading(2.0, 4.5)
    assert "off the data" in nearest_reading(7.41, 4.51)  # the figures: further than fresh data
    assert "no sign of copying" in nearest_reading(4.6, 4.5)
    assert "No held-out" in nearest_reading(4.6, None)


def test_loss_reading_states_the_start_end_best_and_trend():
    steps = list(range(0, 2000, 100))
    falling = [1.0 / (1 + s / 200) for s in steps]
    text = v.loss_reading(steps, falling)
    assert "from 1 (step 0) to 0.09524 (step 1,900), -90%" in text and "still improving" in text
    assert "lowest" not in text  # the last value is the lowest
    settled = [0.5] * 15 + [0.5 + 0.001 * (-1) ** i for i in range(5)]
    assert "settled" in v.loss_reading(steps, settled)
    rising = [1.0 - s / 4000 for s in steps[:14]] + [0.7 + 0.05 * i for i in range(6)]
    text = v.loss_reading(steps, rising)
    assert "rising again" in text and "its lowest was 0.675 at step 1,300" in text
    assert "Too few" in v.loss_reading([0], [1.0])


def test_gradient_reading_names_the_excursion_and_how_often_clipping_acted():
    steps = list(range(0, 1000, 50))
    g = [0.5] * 20
    g[7] = 6.0
    text = v.gradient_reading(steps, g, clip=1.0)
    assert "median of 0.5 over the 20 logged steps" in text and "6 (12.0× the median), was at step 350" in text
    assert "5% of the logged steps were above the clipping norm 1." in text
    most = v.gradient_reading(steps, [2.0] * 20, clip=1.0)
    assert "100%" in most and "clipping, not the learning rate" in most
    assert "clipping norm" not in v.gradient_reading(steps, g, clip=0.0)
    assert "No finite" in v.gradient_reading([0], [float("nan")], clip=1.0)


def test_sample_metric_reading_against_its_floor():
    text = v.sample_metric_reading("fd_classifier", [250, 500, 750], [80.0, 30.0, 40.0], higher_is_better=False,
                                   floor=20.0)
    assert "from 80 (step 250) to 40 (step 750)" in text and "best was 30 at step 500" in text
    assert "2.00× what real training items score (20)" in text
    up = v.sample_metric_reading("high_quality", [1, 2], [0.5, 0.9], higher_is_better=True, floor=0.95)
    assert "best" not in up and "real training items score 0.95" in up


def test_mode_collapse_rules():
    assert v.mode_collapse(modes_covered=5, modes_total=8, high_quality=0.9).answer == "yes"
    assert v.mode_collapse(modes_covered=8, modes_total=8, high_quality=0.9, smallest_share=0.1).answer == "no"
    assert v.mode_collapse(modes_covered=3, modes_total=8, high_quality=0.1).answer == "unclear"
    assert v.mode_collapse(diversity_ratio=0.2).answer == "yes"
    assert v.mode_collapse(diversity_ratio=0.95).answer == "no"


# -- end to end in a browser ---------------------------------------------------------------------------------

CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  for (const im of document.images) im.setAttribute("data-loaded", im.complete && im.naturalWidth > 0 ? "yes" : "no");
  for (const s of document.querySelectorAll("section")) s.setAttribute("data-height", s.getBoundingClientRect().height);
  document.body.setAttribute("data-checked", document.images.length);
});
</script></body>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run the browser test: install chromium (.ci/run does)")
    pytest.skip("no chromium binary found (apt-get install chromium)")


def run_browser(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)  # a hang guard only


def test_report_renders_in_headless_chromium(ring_report, tmp_path):
    binary = chromium()
    shot = tmp_path / "shot.png"
    done = run_browser(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,6000",
                       ring_report.resolve().as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as im:
        grey = np.asarray(im.convert("L"))
    assert grey.shape == (6000, 1200)
    assert grey.std() > 10 and len(np.unique(grey)) > 50, "the screenshot is blank"

    # A copy of the page with a probe script (the report itself has none) reports what the browser loaded.
    probe = tmp_path / "probe.html"
    probe.write_text(ring_report.read_text().replace("</body>", CHECK_SCRIPT))
    dom = run_browser(binary, tmp_path / "profile", "--virtual-time-budget=10000", "--window-size=1200,6000",
                      "--dump-dom", probe.as_uri()).stdout
    n = ring_report.read_text().count("<img ")
    assert f'data-checked="{n}"' in dom, dom[-2000:]
    assert dom.count('data-loaded="yes"') == n and 'data-loaded="no"' not in dom
    heights = dict(re.findall(r'<section id="([^"]+)" data-height="([\d.]+)"', dom))
    assert set(heights) == set(SECTION_IDS)
    assert all(float(hgt) > 40 for hgt in heights.values()), heights
