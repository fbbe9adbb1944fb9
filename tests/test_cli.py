"""The command line, run as a user runs it: a subprocess, its exit code, what it prints and writes."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

QUICK = ["--steps", "20", "--batch-size", "64", "--set", "train.log_every=5", "train.val_every=10",
         "train.sample_every=0", "net.mlp.width=64", "net.mlp.blocks=2", "data.toy_samples=1000", "sample.steps=6"]


def steadydiff(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "steadydiff", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=3600)  # a hang guard only: generous for a busy CPU


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    r = steadydiff("train", "--data", "toy:ring8", "--out", out, "--quiet", *QUICK)
    assert r.returncode == 0, r.stderr
    return out, r


def test_train_prints_a_summary_and_writes_the_run(trained_run):
    out, r = trained_run
    assert "trained toy:ring8" in r.stdout and "modes covered" in r.stdout
    assert (out / "config.toml").is_file() and (out / "checkpoints" / "step-20").is_dir()
    assert "MLPBackbone" in r.stdout or "parameters" in r.stdout


@pytest.mark.parametrize("suffix", [".png", ".npy", ".csv"])
def test_sample_writes_each_format(trained_run, tmp_path, suffix):
    out, _ = trained_run
    target = tmp_path / f"s{suffix}"
    r = steadydiff("sample", out, "--n", "40", "--steps", "5", "--sampler", "dpmpp-2m", "--seed", "1", "--out", target)
    assert r.returncode == 0, r.stderr
    assert "5 network evaluations" in r.stdout
    if suffix == ".npy":
        x = np.load(target)
        assert x.shape == (40, 2) and np.isfinite(x).all()
    elif suffix == ".csv":
        lines = target.read_text().splitlines()
        assert len(lines) == 41 and lines[0].count(",") == 1
    else:
        with Image.open(target) as im:
            assert im.size[0] > 100


def test_sample_same_seed_same_samples_and_heun_nfe(trained_run, tmp_path):
    out, _ = trained_run
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    r = steadydiff("sample", out, "--n", "8", "--steps", "4", "--sampler", "heun", "--seed", "3", "--out", a)
    assert "7 network evaluations" in r.stdout
    steadydiff("sample", out, "--n", "8", "--steps", "4", "--sampler", "heun", "--seed", "3", "--out", b)
    assert np.array_equal(np.load(a), np.load(b))


def test_sample_defaults_to_the_runs_own_sample_settings(trained_run, tmp_path):
    # the run was trained with sample.steps=6 and the default sampler (heun): 11 network evaluations
    out, _ = trained_run
    r = steadydiff("sample", out, "--n", "8", "--seed", "3", "--out", tmp_path / "a.npy")
    assert r.returncode == 0, r.stderr
    assert "heun, 6 steps = 11 network evaluations" in r.stdout
    steadydiff("sample", out, "--n", "8", "--steps", "6", "--sampler", "heun", "--seed", "3",
               "--out", tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_info_is_readable_text_and_json_on_request(trained_run):
    out, _ = trained_run
    r = steadydiff("info", out)
    assert r.returncode == 0 and "step-20" in r.stdout and "toy:ring8" in r.stdout
    assert "modes covered" in r.stdout and "stability guard" in r.stdout  # the summary, in words
    assert all(len(line) < 200 for line in r.stdout.splitlines())  # no JSON dumped on one line
    r = steadydiff("info", out, "--json")
    info = json.loads(r.stdout)
    assert info["checkpoints"] == ["step-20"] and info["config"]["train"]["steps"] == 20
    assert info["summary"]["quality"]["modes_total"] == 8 and info["last_logged"]["step"] == 20


def test_every_flag_has_help_text_that_states_its_default():
    from steadydiff.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    missing = []
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest == "help":
                continue
            text = sub.formatter_class("x")._get_help_string(action) or ""
            flag_like = action.nargs == 0  # --quiet, --raw: off unless given
            if not text.strip() or (action.option_strings and not action.required and not flag_like
                                    and "default" not in text):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: {text!r}")
    assert not missing, missing
    assert "default 3000" in subparsers["train"].format_help()  # the defaults are the config's own


def test_image_size_on_data_that_is_not_an_image_folder_is_an_error(tmp_path):
    r = steadydiff("train", "--data", "iris", "--image-size", "16", "--out", tmp_path / "run")
    assert r.returncode == 2 and "--image-size" in r.stderr and "'iris' is not a folder" in r.stderr
    assert not (tmp_path / "run").exists()


def test_rerunning_a_finished_run_is_a_no_op_resume(trained_run):
    out, _ = trained_run
    before = (out / "metrics.jsonl").read_text()
    r = steadydiff("train", "--data", "toy:ring8", "--out", out, "--quiet", *QUICK)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert (out / "metrics.jsonl").read_text() == before


def test_dry_run_prints_the_config_and_writes_nothing(tmp_path):
    r = steadydiff("train", "--data", "iris", "--out", tmp_path / "run", "--dry-run", "--set", "train.lr=1e-4")
    assert r.returncode == 0, r.stderr
    assert "lr = 0.0001" in r.stdout and "parameters" in r.stdout
    # the settings the data decides are printed with their values, marked as derived
    for key in ("sigma_data", "p_mean", "sigma_min", "augment", "max_epochs"):
        assert any(line.startswith(f"{key} = ") and "# derived" in line for line in r.stdout.splitlines()), key
    # 135 iris rows: at most 400 passes (train.max_epochs) of batches of 128 are 422 steps, not the 3,000 asked for
    assert "steps = 422  # derived (was 3000)" in r.stdout.splitlines()
    assert "condition: class-conditional on 3 classes" in r.stdout
    assert not (tmp_path / "run").exists()
    # one step measured: an MLP's forward and backward cost ~6 FLOPs per parameter and item (Kaplan et al. 2020)
    params = int(re.search(r"backbone \w+: ([\d,]+) parameters", r.stdout).group(1).replace(",", ""))
    m = re.search(r"one step measured here: ([\d.,]+) MFLOP per item .*, ([\d.,]+) ms per step of 128 items.*"
                  r"422 steps ≈ ([\d.,]+) min", r.stdout)
    assert m is not None, r.stdout
    flops, step_ms, minutes = (float(g.replace(",", "")) for g in m.groups())
    assert 4 * params <= flops * 1e6 <= 8 * params
    assert minutes == pytest.approx(422 * step_ms / 60_000, rel=0.05, abs=0.051)


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "no/such/folder", "--out", "{tmp}/r"], "no such file or folder"),
    (["train", "--data", "digitz", "--out", "{tmp}/r"], "digits"),
    (["train", "--data", "toy:ring8", "--out", "{tmp}/r", "--set", "train.lrate=1"], "Did you mean 'train.lr'"),
    (["train", "--data", "toy:ring8", "--out", "{tmp}/r", "--set", "net.kind=unet2d"], "(C, H, W)"),
    (["sample", "{tmp}", "--out", "{tmp}/x.png"], "not a steadydiff run directory"),
    (["info", "{tmp}/none"], "not a steadydiff run directory"),
    (["train", "--data", "toy:ring8", "--out", "{tmp}/r", "--nproc", "0"], "--nproc 0"),
    (["eval", "{tmp}", "--nll", "--nll-steps", "0"], "--nll needs ≥ 1 ODE step"),
    (["eval", "{tmp}", "--nll", "--nll-probes", "-2"], "probes ≥ 0"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    r = steadydiff(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_csv_with_a_text_column_names_it(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n3,x\n")
    r = steadydiff("train", "--data", path, "--out", tmp_path / "r")
    assert r.returncode == 2
    assert "'b'" in r.stderr and "line 3" in r.stderr and "'x'" in r.stderr, r.stderr


def test_sample_bad_output_suffix(trained_run, tmp_path):
    out, _ = trained_run
    r = steadydiff("sample", out, "--n", "4", "--out", tmp_path / "x.jpg")
    assert r.returncode == 2 and ".png, .npy, .csv or .parquet" in r.stderr


def test_summary_json_matches_printed(trained_run):
    out, r = trained_run
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 20 and s["quality"]["modes_total"] == 8


def test_eval_prints_quality_against_nfe_and_records_it(tmp_path, capsys):
    import json

    from steadydiff.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", "toy:ring8", "--out", str(run), "--steps", "30", "--batch-size", "64", "--quiet",
                 "--set", "data.toy_samples=2000", "net.mlp.width=64", "train.sample_every=0"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--samplers", "heun,euler", "--nfe", "5,9", "--n", "200", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "real data (the floor)" in out and out.count(" NFE ") == 4
    table = json.loads((run / "eval.json").read_text())["quality_vs_nfe"]["table"]
    assert [(r["solver"], r["nfe"]) for r in table] == [("heun", 5), ("heun", 9), ("euler", 5), ("euler", 9)]
    # Each FD is printed with its mean term, the part a shifted average explains.
    assert out.count("(mean term ") == 5
    assert all(0 <= r["metrics"]["fd_data_mean_term"] <= r["metrics"]["fd_data"] for r in table)
    assert main(["eval", str(run), "--nfe", "ten"]) == 2
