"""Analog bits (data/table.py; Chen, Zhang & Hinton 2022): a categorical column of more than BITS_ABOVE categories
enters σ-space as the ⌈log2 K⌉ bits of its category's index, and every decoding — `Table.decode`, the normaliser's
`inverse`, `consensus`, the table scores — returns one of its K categories, never an index ≥ K."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import steadydiff
from steadydiff.config import RunConfig, apply_overrides
from steadydiff.data import DataConfig, Normaliser, load_data
from steadydiff.data.export import save_samples
from steadydiff.data.table import BITS_ABOVE, Column, Table, infer_table, nearest_code
from steadydiff.errors import ConfigError, DataError
from steadydiff.metrics.tables import table_scores


def names(k: int) -> list[str]:
    return [f"c{i:03d}" for i in range(k)]


def bits_column(k: int) -> Column:
    return Column("z", "categorical", tuple(names(k)), encoding="bits")


@pytest.mark.parametrize("k", [37, 300])
def test_every_category_round_trips_exactly(k):
    cells = names(k) * 2  # each value twice: not an identifier
    table = infer_table(["z"], [cells], "t.csv")
    col = table.columns[0]
    assert col.encoding == "bits" and col.width == int(np.ceil(np.log2(k))) < k
    assert table.entry_names == [f"z:bit{j}" for j in range(col.width)]
    x = table.encode([cells], "t.csv")
    assert np.isin(x, (0.0, 1.0)).all()
    np.testing.assert_array_equal(x[:k] @ 2.0 ** np.arange(col.width), np.arange(k))  # bit j is worth 2^j
    assert [row[0] for row in table.decode(x)] == cells
    np.testing.assert_array_equal(col.category_index(x), np.arange(2 * k) % k)
    table.check_rows(x, "rows")
    norm = Normaliser.fit(x, "vector", table.entry_names, table)
    z = norm.forward(x)
    np.testing.assert_array_equal(z, 2 * x - 1)  # 0/1 → ±1, the analog bits
    np.testing.assert_array_equal(norm.inverse(z), x)
    assert "analog bits" in " ".join(norm.notes)


def test_the_encoding_follows_the_number_of_categories():
    at = infer_table(["z"], [names(BITS_ABOVE) * 2], "t.csv").columns[0]
    above = infer_table(["z"], [names(BITS_ABOVE + 1) * 2], "t.csv").columns[0]
    assert (at.encoding, at.width) == ("one_hot", BITS_ABOVE)
    assert (above.encoding, above.width) == ("bits", 6)
    assert above.describe() == f"z categorical ({BITS_ABOVE + 1}, 6 analog bits)"


@pytest.mark.parametrize("k", [37, 300, 64])
def test_any_real_valued_bits_decode_to_a_valid_category(k):
    col = bits_column(k)
    table = Table((col,))
    rng = np.random.default_rng(k)
    block = rng.normal(0.5, 1.0, size=(20_000, col.width))
    index = col.category_index(block)
    assert index.min() >= 0 and index.max() < k
    assert set(row[0] for row in table.decode(block)) <= set(col.categories)
    # where the bits thresholded at ½ spell a category, that is the one (Chen et al.'s decoding) ...
    thresholded = (block > 0.5) @ 2 ** np.arange(col.width)
    valid = thresholded < k
    np.testing.assert_array_equal(index[valid], thresholded[valid])
    # ... and elsewhere the category whose code is nearest
    dist = ((block[:, None, :] - col.codes()[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(index, dist.argmin(1))
    if k != 64:
        assert (~valid).any()  # K not a power of two: some thresholded bits spell no category
    # the normaliser's inverse, numpy and torch alike, gives a category's bits
    norm = Normaliser(kind="vector", mean=[0.5] * col.width, std=[0.5] * col.width, table=table)
    z = rng.normal(size=(5000, col.width)) * 3
    back = norm.inverse(z)
    np.testing.assert_array_equal(back, col.codes()[col.category_index(back)])
    np.testing.assert_array_equal(back, norm.inverse(torch.as_tensor(z)).numpy())
    np.testing.assert_array_equal(nearest_code(torch.as_tensor(block), torch.as_tensor(col.codes())).numpy(), index)


def test_missing_cells_stay_missing_across_the_whole_block():
    cells = names(40) * 3 + ["", "NA"]
    values = [f"{i}.5" for i in range(len(cells))]
    table = infer_table(["z", "v"], [cells, values], "t.csv")
    x = table.encode([cells, values], "t.csv")
    assert np.isnan(x[120:, :6]).all() and not np.isnan(x[:120]).any() and not np.isnan(x[120:, 6]).any()
    assert [row[0] for row in table.decode(x)[-2:]] == ["", ""]
    assert table.missing_cells(x)[:, 0].tolist() == [False] * 120 + [True, True]
    norm = Normaliser.fit(x, "vector", table.entry_names, table)
    z = norm.forward(x)
    assert np.isnan(z[120:, :6]).all() and np.isfinite(z[:120]).all()
    assert np.isnan(norm.inverse(z)[120:, :6]).all()
    table.check_rows(x, "rows")
    half = x[:1].copy()
    half[0, 2] = np.nan
    with pytest.raises(DataError, match="column 'z'.*NaN in every entry"):
        table.check_rows(half, "rows")


def test_rows_consensus_and_saved_schema_know_the_bits():
    table = Table((Column("v", "numeric"), bits_column(37)))
    col = table.columns[1]
    past = np.array([[0.0, 1, 0, 1, 0, 0, 1]])  # index 1 + 4 + 32 = 37: no category
    with pytest.raises(DataError, match=r"spelling a category's index below 37"):
        table.check_rows(past, "rows")
    with pytest.raises(DataError, match=r"0 or 1 in each"):
        table.check_rows(np.array([[0.0, 0.5, 0, 0, 0, 0, 0]]), "rows")
    rows = np.column_stack([np.zeros(3), col.codes()[[5, 5, 36]]])
    draws = np.stack([rows, rows[[0, 2, 2]], rows[[1, 0, 0]]])  # items' draws: 5 5 5, 5 36 5, 36 36 5
    best = table.consensus(draws)
    np.testing.assert_array_equal(col.category_index(best[:, 1:]), [5, 5, 36])
    again = Table.from_dict(table.to_dict())
    assert again == table and table.to_dict()["columns"][1]["encoding"] == "bits"
    old = {"columns": [{"name": "c", "type": "categorical", "categories": names(40), "decimals": None}]}
    assert Table.from_dict(old).columns[0].encoding == "one_hot" and Table.from_dict(old).width == 40  # an old run


def test_data_columns_chooses_the_encoding(tmp_path):
    rows = [[f"k{i % 40:02d}", f"s{i % 5}", f"{i}.5"] for i in range(200)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(",".join(r) for r in [["many", "few", "v"], *rows]) + "\n")
    inferred = load_data(DataConfig(source=str(path), holdout=0)).table
    assert [c.encoding for c in inferred.columns[:2]] == ["bits", "one_hot"] and inferred.width == 6 + 5 + 1
    cfg = RunConfig()
    apply_overrides(cfg, ["data.columns=many=categorical:one_hot, few=categorical:bits"])
    ds = load_data(dataclasses.replace(cfg.data, source=str(path), holdout=0))
    assert [c.encoding for c in ds.table.columns[:2]] == ["one_hot", "bits"] and ds.train.shape == (200, 40 + 3 + 1)
    assert [r[:2] for r in ds.table.decode(ds.train[:3])] == [r[:2] for r in rows[:3]]
    with pytest.raises(ConfigError, match=r"'onehot' \(column 'many'\) is not an encoding.*'one_hot'"):
        DataConfig(source=str(path), columns="many=categorical:onehot").check()
    with pytest.raises(ConfigError, match=r"only a categorical column takes an encoding"):
        DataConfig(source=str(path), columns="v=numeric:bits").check()


def test_table_scores_read_a_bit_block_as_its_categories():
    table = Table((Column("x", "numeric"), bits_column(40)))
    col = table.columns[1]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 40, 4000)
    real = np.column_stack([codes + 0.1 * rng.normal(size=4000), col.codes()[codes]])
    same = table_scores(real, real.copy(), table)
    assert same["column_shapes"] == pytest.approx(1.0) and same["pair_trends"] == pytest.approx(1.0)
    shuffled = real.copy()
    shuffled[:, 1:] = col.codes()[rng.permutation(codes)]
    assert table_scores(real, shuffled, table)["pair_trends"] < 0.5
    noisy = real.copy()
    noisy[:, 1:] += rng.normal(0, 0.2, size=noisy[:, 1:].shape)  # real-valued bits read as their nearest category
    assert table_scores(real, noisy, table)["column_shapes"] > 0.9


CATEGORIES = 60


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A table whose 'shop' column has 60 categories of Zipf-like shares (the first about a fifth of the rows) and
    whose 'spend' depends on the shop, and a run of a few hundred steps on it."""
    root = tmp_path_factory.mktemp("bits")
    rng = np.random.default_rng(0)
    counts = [max(2, round(150 / (k + 1))) for k in range(CATEGORIES)]
    shops = np.repeat(np.arange(CATEGORIES), counts)
    rng.shuffle(shops)
    spend = 2.0 * (shops % 7) + rng.normal(0, 0.3, len(shops))
    lines = ["shop,spend"] + [f"s{k:02d},{v:.3f}" for k, v in zip(shops, spend, strict=True)]
    path = root / "shops.csv"
    path.write_text("\n".join(lines) + "\n")
    cfg = {"data": {"source": str(path), "holdout": 0.1},
           "train": {"steps": 400, "batch_size": 64, "sample_every": 0, "sample_metrics_every": 0},
           "net": {"mlp": {"width": 64, "blocks": 2}}}
    run = steadydiff.train(cfg, out=root / "run", progress=False)
    return root, path, run


def test_a_run_on_many_categories_samples_valid_and_common_ones(many):
    root, path, run = many
    model = steadydiff.load(run.dir)
    col = model.table.columns[0]
    assert (col.name, col.encoding, col.width) == ("shop", "bits", 6)
    assert model.item_shape == (7,) and model.table.width < 1 + len(col.categories)  # one-hot: 61
    x = model.sample(600, steps=12, seed=0)
    assert np.isin(x[:, :6], (0.0, 1.0)).all()
    assert (x[:, :6] @ 2.0 ** np.arange(6) < len(col.categories)).all()
    out = save_samples(root / "samples.csv", x, kind=model.kind, columns=model.columns, table=model.table)
    real, fake = pd.read_csv(path), pd.read_csv(out)
    assert list(fake.columns) == ["shop", "spend"] and len(fake) == 600
    assert set(fake["shop"]) <= set(real["shop"])
    common = real["shop"].value_counts().index[:3]
    assert set(common) <= set(fake["shop"])
    top10 = real["shop"].value_counts().index[:10]
    print("sampled share of the 10 commonest shops:", fake["shop"].isin(top10).mean(),
          "data:", real["shop"].isin(top10).mean())
    assert fake["shop"].isin(top10).mean() > 0.4  # 0.63 in the data; bits drawn at random would give about 0.17


def test_a_bit_block_is_imputed_with_a_category_and_shown_by_info(many):
    _, _, run = many
    model = steadydiff.load(run.dir)
    table = model.table
    x = table.encode([["", "s03", ""], ["2.000", "", "7.500"]], "test").astype(np.float32)
    done = model.impute(x, seed=0, steps=8, resample=1)
    known = ~np.isnan(x)
    np.testing.assert_array_equal(done[known], x[known])
    filled = table.decode(done)
    assert filled[1][0] == "s03" and all(row[0] in table.columns[0].categories for row in filled)
    shown = subprocess.run([sys.executable, "-m", "steadydiff", "info", str(run.dir)], capture_output=True,
                           text=True, timeout=600).stdout
    assert "shop categorical (60, 6 analog bits)" in shown and "the network sees 7 values per row" in shown
