"""Missing values (NaN, empty CSV cells) in tables and series are learnt around: never given to the network as
values, never counted by the loss, filled by `impute`; what cannot be learnt from is refused with its place."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import steadydiff
from steadydiff.config import from_dict
from steadydiff.data import DataConfig, load_data
from steadydiff.errors import ConfigError, DataError
from steadydiff.train.loop import setup, train_batch


def write_csv(path, x, columns):
    lines = [",".join(columns)] + [",".join("" if np.isnan(v) else f"{v:.6g}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")


def correlated(n: int, seed: int) -> np.ndarray:
    """Two columns, b = 2a + small noise (correlation ≈ 0.99), and a third independent one."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    return np.stack([a, 2 * a + 0.2 * rng.standard_normal(n), rng.standard_normal(n) + 5], axis=1)


@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    """A 3-column CSV with 30 % of its cells empty (completely at random) and a run trained on it."""
    root = tmp_path_factory.mktemp("missing")
    x = correlated(3000, 0)
    holes = x.copy()
    gone = np.random.default_rng(1).random(x.shape) < 0.3
    gone[gone.all(1), 2] = False  # every row keeps a value (an empty row is refused)
    holes[gone] = np.nan
    write_csv(root / "gappy.csv", holes, ["a", "b", "c"])
    cfg = {"data": {"source": str(root / "gappy.csv")},
           "train": {"steps": 1500, "batch_size": 128, "sample_every": 0, "sample_metrics_every": 0,
                     "warmup_samples": 5000, "val_every": 100},
           "net": {"mlp": {"width": 64, "blocks": 2}}}
    run = steadydiff.train(cfg, out=root / "run", progress=False)
    return root, x, holes, cfg, run


def test_a_table_with_empty_cells_trains_and_keeps_its_columns_relations(gappy):
    root, x, holes, cfg, run = gappy
    assert run.config.train.masks == "scattered"  # derived: the network is told which values it is given
    shown = subprocess.run([sys.executable, "-m", "steadydiff", "info", str(run.dir)], capture_output=True, text=True,
                           timeout=600).stdout
    assert "missing values (share of training entries): " in shown and "train.masks=scattered" in shown
    info = json.loads((run.dir / "dataset.json").read_text())
    assert set(info["missing"]) == {"a", "b", "c"} and all(0.25 < v < 0.35 for v in info["missing"].values())
    s = steadydiff.load(run.dir).sample(2000, seed=0)
    assert np.isfinite(s).all()
    assert (np.abs(s.mean(0) - x.mean(0)) < 0.2 * x.std(0)).all()
    # the two linked columns stay linked: filling gaps with the mean would have weakened this to ≈ 0.5
    assert np.corrcoef(s[:, 0], s[:, 1])[0, 1] > 0.9
    assert abs(np.corrcoef(s[:, 0], s[:, 2])[0, 1]) < 0.15


def test_imputation_fills_the_gaps_from_what_is_known_and_never_changes_an_observed_value(gappy):
    _, x, holes, _, run = gappy
    model = steadydiff.load(run.dir)
    rows = holes[:200]
    done = model.impute(rows, seed=0)
    known = ~np.isnan(rows)
    assert np.array_equal(done[known], rows[known].astype(np.float32))
    assert np.isfinite(done).all()
    # b missing, a known: b is recovered from a (b = 2a + noise 0.2), far better than by b's mean
    only_b = known[:, 0] & ~known[:, 1]
    err = np.abs(done[only_b, 1] - x[:200][only_b, 1])
    assert err.mean() < 0.5 < np.abs(x[:200][only_b, 1] - x[:, 1].mean()).mean()


def test_missing_entries_are_neither_given_to_the_network_nor_counted_by_the_loss(gappy, tmp_path):
    root, _, holes, cfg, _ = gappy
    p, st, _ = setup(from_dict(cfg), tmp_path / "probe", None, None, None, False)
    observed = torch.as_tensor(~np.isnan(p.ds.train), dtype=torch.float32)
    for step in range(5):
        st.step, st.samples_seen = step, step * p.batch
        b = train_batch(p, st)
        obs = observed[torch.from_numpy(b.idx)]
        flag = b.extra[:, 3:]  # 1: given, 0: to denoise, −1: missing in the data
        assert torch.isfinite(b.x).all()
        assert (b.target * (1 - obs)).sum() == 0  # the loss counts observed entries only
        assert torch.equal(flag[obs == 0], -torch.ones_like(flag[obs == 0]))  # and is told which are missing
        assert ((flag == 1) * (1 - obs)).sum() == 0  # the network is given observed values only
        assert (b.target.sum(1) > 0).all()  # every item has something to learn
        assert (b.extra[:, :3] * (1 - obs)).abs().sum() == 0


def test_values_that_cannot_be_learnt_from_are_refused_with_their_place(tmp_path):
    x = correlated(50, 0)
    col = x.copy()
    col[:, 1] = np.nan
    write_csv(tmp_path / "col.csv", col, ["a", "b", "c"])
    with pytest.raises(DataError, match="column 'b' holds no value at all"):
        load_data(DataConfig(source=str(tmp_path / "col.csv")))
    row = x.copy()
    row[6] = np.nan
    write_csv(tmp_path / "row.csv", row, ["a", "b", "c"])
    with pytest.raises(DataError, match="row.s. hold no value at all, the first at line 8"):
        load_data(DataConfig(source=str(tmp_path / "row.csv")))
    some = x.copy()
    some[3, 2] = np.nan
    write_csv(tmp_path / "some.csv", some, ["a", "b", "c"])
    with pytest.raises(DataError, match=r"line 5, column 'c'.*data.missing=learn"):
        load_data(DataConfig(source=str(tmp_path / "some.csv"), missing="error"))
    inf = x.copy()
    inf[2, 0] = np.inf
    with pytest.raises(DataError, match="infinite"):
        load_data(DataConfig(), inf.astype(np.float32))
    with pytest.raises(ConfigError, match="data.missing must be 'learn' or 'error'"):
        DataConfig(source=str(tmp_path / "some.csv"), missing="fill").check()
    images = np.zeros((10, 1, 8, 8), np.float32)
    images[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="not finite"):  # images never take NaN
        load_data(DataConfig(), images)


def test_a_long_series_with_gaps_is_cut_into_windows_and_an_empty_window_is_refused(tmp_path):
    t = np.arange(400, dtype=np.float64)
    series = np.sin(t / 8)
    series[100:110] = np.nan  # a gap shorter than a window
    np.save(tmp_path / "gap.npy", series[:, None].astype(np.float32))
    ds = load_data(DataConfig(source=str(tmp_path / "gap.npy"), kind="series", window=32, stride=4))
    assert ds.item_shape == (1, 32) and 0 < ds.missing_share < 0.05
    series[150:200] = np.nan  # a gap longer than a window: some windows hold nothing
    np.save(tmp_path / "hole.npy", series[:, None].astype(np.float32))
    with pytest.raises(DataError, match="window.s. hold no value at all"):
        load_data(DataConfig(source=str(tmp_path / "hole.npy"), kind="series", window=32, stride=4))


def test_column_kinds_keep_samples_valid_codes_whole_numbers_and_never_negative():
    from steadydiff.data.normalise import Normaliser

    rng = np.random.default_rng(0)
    n = 2000
    table = np.stack([rng.integers(0, 3, n),  # a class code 0/1/2
                      rng.exponential(1.0, n),  # never negative, down to ~0
                      rng.poisson(40, n),  # whole numbers, many levels
                      rng.normal(100, 1, n)], axis=1).astype(np.float32)  # far from 0: left alone
    norm = Normaliser.fit(table, "vector", ["code", "wait", "count", "level"])
    assert norm.code_range[0] == (0.0, 2.0) and norm.code_range[2] is None
    assert norm.log_offset[1] is not None and norm.log_offset[3] is None and norm.integer[2]
    np.testing.assert_allclose(norm.inverse(norm.forward(table)), table, rtol=1e-4, atol=1e-4)  # invertible
    wild = rng.normal(0, 3, (5000, 4)).astype(np.float32)  # far outside what training saw, in network units
    back = norm.inverse(wild)
    assert set(np.unique(back[:, 0])) <= {0.0, 1.0, 2.0}  # valid codes only
    assert (back[:, 1] >= 0).all()  # never negative
    assert np.array_equal(back[:, 2], np.round(back[:, 2]))
    t = norm.inverse(torch.as_tensor(wild))  # the torch path agrees
    np.testing.assert_allclose(t.numpy(), back, rtol=1e-4, atol=1e-3)
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))  # saved with the run as JSON
    np.testing.assert_array_equal(again.inverse(wild), back)
    assert any("codes" in n and "code" in n for n in norm.notes)


def test_table_metrics_read_missing_values_as_absent_and_score_a_table_without_complete_rows(gappy):
    from steadydiff.metrics.tables import column_shapes, pair_trends

    _, x, holes, _, run = gappy
    rng = np.random.default_rng(5)
    assert column_shapes(holes, x[rng.permutation(len(x))]) > 0.97  # the same table, rows in another order
    shifted = x + np.array([1.0, 0.0, 0.0])  # one column moved by one std
    assert column_shapes(holes, shifted) < 0.9
    unlinked = x.copy()
    unlinked[:, 1] = rng.permutation(unlinked[:, 1])  # b no longer follows a
    assert pair_trends(holes, x) > 0.98 and pair_trends(holes, unlinked) < 0.85
    q = run.summary["quality"]  # 30 % missing in 3 columns: complete rows remain, so the full Reference scored it
    assert q["column_shapes"] > 0.85 and q["pair_trends"] > 0.9
    assert q["real_data"]["column_shapes"] > 0.85


def test_a_table_without_complete_rows_is_still_scored_column_by_column(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 12))
    x[rng.random(x.shape) < 0.5] = np.nan  # 0.5¹² of the rows complete: about none
    x[np.isnan(x).all(1), 0] = 0.0
    write_csv(tmp_path / "sparse.csv", x, [f"c{j}" for j in range(12)])
    run = steadydiff.train({"data": {"source": str(tmp_path / "sparse.csv")},
                            "train": {"steps": 60, "sample_every": 0, "sample_metrics_every": 0}},
                           out=tmp_path / "run", progress=False)
    q = run.summary["quality"]
    assert "complete real items" in q["unscored"]
    assert 0 < q["column_shapes"] <= 1 and 0 < q["pair_trends"] <= 1
    assert q["table_scores_against"] == "held-out rows" and q["real_data"]["column_shapes"] > 0.8


def test_efficacy_and_closest_record_tell_a_copy_and_noise_from_a_fair_sample():
    from steadydiff.metrics.tables import closest_record, efficacy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((900, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    train, test, fresh = slice(0, 300), slice(300, 600), slice(600, 900)
    real = efficacy(x[train], y[train], x[test], y[test])
    assert real > 0.85 and efficacy(x[fresh], y[fresh], x[test], y[test]) > real - 0.05
    assert efficacy(x[fresh], rng.permutation(y[fresh]), x[test], y[test]) < 0.65  # labels unlinked: a coin
    scale = x[train].std(0)
    held = np.median(closest_record(x[test], x[train], scale))
    assert np.median(closest_record(x[train][:100] + 1e-3, x[train], scale)) < 0.01 * held  # copies
    assert 0.7 * held < np.median(closest_record(x[fresh], x[train], scale)) < 1.4 * held
