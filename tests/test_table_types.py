"""Typed tables (data/table.py): a CSV or parquet file's numeric, integer, boolean and categorical columns are read
as such, enter σ-space as numbers and one-hot blocks, and come back as the same columns, in the same order and types,
with valid categories only; a missing category is learnt around and imputed with a category."""

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
from steadydiff.data.table import MAX_CATEGORIES, Column, Table, infer_table
from steadydiff.errors import ConfigError, DataError
from steadydiff.metrics.tables import table_scores

SPECIES = ("Adelie", "Chinstrap", "Gentoo")
ISLANDS = ("Biscoe", "Dream", "Torgersen")
HEADER = ["length", "count", "flag", "species", "island"]


def penguin_rows(n: int, seed: int) -> list[list[str]]:
    """Rows of a small penguin-like table: a measured length (one decimal), a count, a flag spelt True/False and two
    text columns, all depending on the species."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        species = SPECIES[i % 3]
        length = {"Adelie": 38.0, "Chinstrap": 49.0, "Gentoo": 47.0}[species] + rng.normal()
        count = int(rng.integers(0, 12)) + (6 if species == "Gentoo" else 0)  # 18 values: an integer
        flag = (species == "Adelie") != (rng.random() < 0.1)
        island = "Biscoe" if species == "Gentoo" else ISLANDS[1 + i % 2]
        rows.append([f"{length:.1f}", str(count), str(flag), species, island])
    return rows


def write_csv(path, rows, header=HEADER):
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    """A mixed table with one missing island, and a run of a few dozen steps on it."""
    root = tmp_path_factory.mktemp("tables")
    rows = penguin_rows(150, 0)
    rows[4][4] = ""  # a missing category: learnt around (train.masks is derived), imputed afterwards
    path = write_csv(root / "penguins.csv", rows)
    cfg = {"data": {"source": str(path)},
           "train": {"steps": 60, "batch_size": 32, "sample_every": 0, "sample_metrics_every": 0},
           "net": {"mlp": {"width": 32, "blocks": 1}}}
    run = steadydiff.train(cfg, out=root / "run", progress=False)
    return root, path, run


def test_columns_are_typed_and_a_category_is_a_one_hot_block(penguins):
    _, path, _ = penguins
    ds = load_data(DataConfig(source=str(path), holdout=0))
    table = ds.table
    assert [(c.name, c.type) for c in table.columns] == [
        ("length", "numeric"), ("count", "integer"), ("flag", "boolean"), ("species", "categorical"),
        ("island", "categorical")]
    assert table.columns[2].categories == ("False", "True") and table.columns[3].categories == SPECIES
    assert ds.columns == ["length", "count", "flag", "species=Adelie", "species=Chinstrap", "species=Gentoo",
                          "island=Biscoe", "island=Dream", "island=Torgersen"]
    assert ds.train.shape == (150, 9)
    first = penguin_rows(1, 0)[0]
    np.testing.assert_array_equal(ds.train[0, 2:], [first[2] == "True", 1, 0, 0, 0, 1, 0])  # flag, Adelie, Dream
    assert np.isnan(ds.train[4, 6:]).all() and not np.isnan(ds.train[4, :6]).any()  # the whole block is missing
    assert "column types length numeric, count integer, flag boolean (False/True)" in " | ".join(ds.notes)


def test_sampled_csv_has_the_inputs_columns_order_types_and_categories(penguins):
    root, path, run = penguins
    assert run.config.train.masks == "scattered"  # the missing island made the run mask-conditioned
    model = steadydiff.load(run.dir)
    assert model.table is not None and model.item_shape == (9,)
    x = model.sample(300, steps=8, seed=0)
    for a, b in model.table.one_hot_spans():  # every category block is one 1 and 0 elsewhere
        assert np.isin(x[:, a:b], (0.0, 1.0)).all() and (x[:, a:b].sum(1) == 1).all()
    assert np.isin(x[:, 2], (0.0, 1.0)).all() and (x[:, 1] == np.round(x[:, 1])).all()
    out = save_samples(root / "samples.csv", x, kind=model.kind, columns=model.columns, table=model.table)

    real, fake = pd.read_csv(path), pd.read_csv(out)
    assert list(fake.columns) == list(real.columns) == HEADER and len(fake) == 300
    assert dict(fake.dtypes) == dict(real.dtypes)  # float64, int64, bool, object, object
    assert set(fake["species"]) <= set(SPECIES) and set(fake["island"]) <= set(ISLANDS)
    assert fake["count"].between(real["count"].min(), real["count"].max()).all()  # codes stay in range
    text = out.read_text().splitlines()[1].split(",")
    assert len(text[0].split(".")[1]) == 1  # lengths written as the input writes them: one decimal
    # read back by steadydiff, the samples are the same table
    again = load_data(DataConfig(source=str(out), holdout=0))
    assert [(c.name, c.type) for c in again.table.columns] == [(c.name, c.type) for c in model.table.columns]
    np.testing.assert_allclose(again.train[:, 1:], x[:, 1:])


def test_missing_category_is_imputed_with_a_valid_one_and_known_cells_are_unchanged(penguins):
    root, path, run = penguins
    model = steadydiff.load(run.dir)
    table = model.table
    cells = [["40.1", "2", "True", "Adelie", ""], ["", "5", "", "Gentoo", ""], ["47.3", "", "False", "", "NA"]]
    x = table.encode([list(c) for c in zip(*cells, strict=True)], "test").astype(np.float32)
    done = model.impute(x, seed=0, steps=8, resample=1)
    known = ~np.isnan(x)
    np.testing.assert_array_equal(done[known], x[known])  # bit for bit
    assert np.isfinite(done).all()
    for a, b in table.one_hot_spans():
        assert (done[:, a:b].sum(1) == 1).all() and np.isin(done[:, a:b], (0.0, 1.0)).all()
    filled = table.decode(done)
    for given, row in zip(cells, filled, strict=True):
        assert all(g == r for g, r in zip(given, row, strict=True) if g not in ("", "NA"))
        assert row[3] in SPECIES and row[4] in ISLANDS and row[2] in ("True", "False")
    draws = model.impute(x, draws=3, seed=0, steps=6, resample=1)
    best = table.consensus(draws)
    assert (best[:, 3:6].sum(1) == 1).all() and (best[:, 6:9].sum(1) == 1).all()

    half = x.copy()
    half[0, 3] = np.nan  # a category block known in part
    with pytest.raises(DataError, match="column 'species'.*NaN in every entry"):
        model.impute(half, steps=4)

    # the command line reads and writes the table's own cells
    write_csv(root / "gaps.csv", cells)
    done_csv = root / "done.csv"
    r = subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run.dir), "--in", str(root / "gaps.csv"),
                        "--out", str(done_csv), "--draws", "2", "--steps", "6", "--resample", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [ln.split(",") for ln in done_csv.read_text().splitlines()]
    assert lines[0] == HEADER and len(lines) == 4
    for given, row in zip(cells, lines[1:], strict=True):
        assert all(g == c for g, c in zip(given, row, strict=True) if g not in ("", "NA"))
        assert row[3] in SPECIES and row[4] in ISLANDS
    (root / "bad.csv").write_text("length,count,flag,species,island\n40.1,2,True,Emperor,Dream\n")
    bad = subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run.dir), "--in", str(root / "bad.csv"),
                          "--out", str(root / "o.csv")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "'Emperor' in column 'species', which is not one of its 3 categories" in bad.stderr
    (root / "half.csv").write_text("length,count,flag,species,island\n40.1,2.5,True,Adelie,Dream\n")
    bad = subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run.dir), "--in", str(root / "half.csv"),
                          "--out", str(root / "o.csv")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "column 'count' holds whole numbers, and" in bad.stderr and "'2.5'" in bad.stderr
    assert not (root / "o.csv").exists()


def test_info_shows_the_column_types(penguins):
    _, _, run = penguins
    shown = subprocess.run([sys.executable, "-m", "steadydiff", "info", str(run.dir)], capture_output=True,
                           text=True, timeout=600).stdout
    assert "column types: length numeric, count integer, flag boolean (False/True), species categorical (3)" in shown
    assert "the network sees 9 values per row" in shown and "island 0.7%" in shown


def test_too_many_categories_are_refused_with_the_file_column_and_fix(tmp_path):
    rows = [[f"{i}.5", f"penguin-{i}"] for i in range(60)]
    write_csv(tmp_path / "ids.csv", rows, ["mass", "name"])
    with pytest.raises(DataError, match=r"ids\.csv: column 'name' holds 60 distinct values in 60 rows.*identifier"
                                        r".*Drop the column"):
        load_data(DataConfig(source=str(tmp_path / "ids.csv")))
    many = [[f"{i}.5", f"c{i % (MAX_CATEGORIES + 200)}"] for i in range(5 * MAX_CATEGORIES)]  # each value ~4 times
    write_csv(tmp_path / "wide.csv", many, ["mass", "code"])
    with pytest.raises(DataError, match=rf"wide\.csv: column 'code' holds 1,200 distinct values.*at most "
                                        rf"{MAX_CATEGORIES:,}"):
        load_data(DataConfig(source=str(tmp_path / "wide.csv")))
    write_csv(tmp_path / "few.csv", [[f"{i}.5", f"c{i % 4}"] for i in range(60)], ["mass", "code"])
    assert load_data(DataConfig(source=str(tmp_path / "few.csv"))).table.columns[1].width == 4


def test_a_column_of_numbers_and_text_names_the_cell_and_the_override(tmp_path):
    write_csv(tmp_path / "t.csv", [["1", "2"], ["3", "bob"], ["4", "5"]], ["x", "name"])
    with pytest.raises(DataError, match=r"column 'name' is not numeric: line 3 holds 'bob'.*"
                                        r"data\.columns=name=categorical"):
        load_data(DataConfig(source=str(tmp_path / "t.csv")))
    ds = load_data(DataConfig(source=str(tmp_path / "t.csv"), columns="name=categorical", holdout=0))
    assert ds.table.columns[1].categories == ("2", "5", "bob")  # numbers first, in value order


def test_data_columns_overrides_inference(tmp_path):
    rows = [[str(2000 + i % 5), str(i % 2), str(i % 3), f"{i}.25"] for i in range(40)]
    path = write_csv(tmp_path / "t.csv", rows, ["year", "sick", "class", "dose"])
    inferred = load_data(DataConfig(source=str(path), holdout=0)).table
    # whole numbers of at most 10 values are codes, read as categories
    assert [c.type for c in inferred.columns] == ["categorical", "categorical", "categorical", "numeric"]
    assert inferred.columns[0].categories == ("2000", "2001", "2002", "2003", "2004")
    cfg = RunConfig()
    apply_overrides(cfg, ["data.columns=year=integer,class=categorical, sick=boolean,dose=numeric"])
    ds = load_data(dataclasses.replace(cfg.data, source=str(path), holdout=0))
    assert [c.type for c in ds.table.columns] == ["integer", "boolean", "categorical", "numeric"]
    assert ds.table.columns[1].categories == ("0", "1") and ds.table.columns[2].categories == ("0", "1", "2")
    assert ds.train.shape == (40, 1 + 1 + 3 + 1)

    with pytest.raises(DataError, match=r"column 'dose' is declared integer.*'0.25', not a whole number"):
        load_data(DataConfig(source=str(path), columns="dose=integer"))
    with pytest.raises(DataError, match=r"names column 'yaer', which the table does not have.*Did you mean 'year'"):
        load_data(DataConfig(source=str(path), columns="yaer=integer"))
    with pytest.raises(ConfigError, match=r"'categoric' \(column 'class'\) is not a column type.*'categorical'"):
        DataConfig(source=str(path), columns="class=categoric").check()
    with pytest.raises(ConfigError, match="is not COLUMN=TYPE"):
        DataConfig(source=str(path), columns="class").check()
    with pytest.raises(DataError, match="types the columns of a CSV or parquet table; wine is not one"):
        load_data(DataConfig(source="wine", columns="alcohol=numeric"))


def test_parquet_columns_keep_their_types(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({
        "mass": [3750.0, 3800.5, None, 3250.0] * 10,
        "year": pd.array([2007, 2008, 2009, None] * 10, dtype="Int64"),
        "male": [True, False, True, False] * 10,
        "species": ["Adelie", "Gentoo", None, "Chinstrap"] * 10,
    })
    frame.to_parquet(tmp_path / "p.parquet")
    ds = load_data(DataConfig(source=str(tmp_path / "p.parquet"), holdout=0))
    assert [(c.name, c.type) for c in ds.table.columns] == [
        ("mass", "numeric"), ("year", "categorical"), ("male", "boolean"), ("species", "categorical")]
    assert ds.table.columns[1].categories == ("2007", "2008", "2009")  # three survey years: codes
    assert ds.train.shape == (40, 1 + 3 + 1 + 3)
    assert np.isnan(ds.train[2, 0]) and np.isnan(ds.train[2, 5:]).all() and np.isnan(ds.train[3, 1:4]).all()
    np.testing.assert_array_equal(ds.train[0], [3750.0, 1, 0, 0, 1, 1, 0, 0])
    assert ds.table.decode(ds.train[:2]) == [["3750.0", "2007", "true", "Adelie"], ["3800.5", "2008", "false",
                                                                                     "Gentoo"]]
    ds = load_data(DataConfig(source=str(tmp_path / "p.parquet"), columns="year=integer", holdout=0))
    assert ds.table.columns[1].type == "integer" and ds.train[0, 1] == 2007 and np.isnan(ds.train[3, 1])


def test_a_numeric_csv_keeps_its_normaliser(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"{v:.3f}", str(k), f"{abs(w):.2f}"] for v, k, w in
            zip(rng.normal(size=80), rng.integers(0, 15, 80), rng.normal(size=80), strict=True)]
    ds = load_data(DataConfig(source=str(write_csv(tmp_path / "n.csv", rows, ["a", "code", "size"])), holdout=0))
    with_table = Normaliser.fit(ds.train, "vector", ds.columns, ds.table).to_dict()
    assert with_table.pop("table")["columns"][1]["type"] == "integer"
    assert with_table == Normaliser.fit(ds.train, "vector", ds.columns).to_dict()  # as before tables were typed
    assert describe_kind(ds) == "vectors of 3 features"


def describe_kind(ds):
    from steadydiff.data import describe

    return describe(ds).split(" held-out ")[1].split(",")[0]


def test_normaliser_maps_categories_to_plus_minus_one_and_decodes_by_argmax():
    table = Table((Column("x", "numeric"), Column("ok", "boolean", ("no", "yes")), Column("c", "categorical",
                                                                                         ("a", "b", "c"))))
    rows = np.array([[0.5, 1, 0, 1, 0], [1.5, 0, 1, 0, 0], [2.5, 1, 0, 0, 1], [np.nan, 0, np.nan, np.nan, np.nan]])
    norm = Normaliser.fit(rows, "vector", table.entry_names, table)
    z = norm.forward(rows)
    np.testing.assert_array_equal(z[:3, 1:], 2 * rows[:3, 1:] - 1)  # 0/1 → ±1, whatever the shares
    assert np.isnan(z[3, 2:]).all() and z[3, 1] == -1
    noisy = np.random.default_rng(0).normal(size=(500, 5)) * 2
    back = norm.inverse(noisy)
    np.testing.assert_array_equal(back[:, 2:].argmax(1), noisy[:, 2:].argmax(1))
    assert (back[:, 2:].sum(1) == 1).all() and np.isin(back[:, 1:], (0.0, 1.0)).all()
    np.testing.assert_array_equal(back[:, 1], noisy[:, 1] > 0)
    np.testing.assert_allclose(norm.inverse(torch.as_tensor(noisy, dtype=torch.float32)).numpy(),
                               norm.inverse(noisy.astype(np.float32)), rtol=1e-6)
    again = Normaliser.from_dict(norm.to_dict())
    assert again.table == table and again.to_dict() == norm.to_dict()
    first = table.decode(back[:1])[0]
    assert first[1] == ("yes" if back[0, 1] else "no") and first[2] == "abc"[int(back[0, 2:].argmax())]


def test_table_scores_read_categories_as_categories():
    table = Table((Column("x", "numeric"), Column("c", "categorical", ("a", "b", "c"))))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 2000)
    real = np.column_stack([codes + 0.1 * rng.normal(size=2000), np.eye(3)[codes]])
    same = table_scores(real, real.copy(), table)
    assert same["column_shapes"] == pytest.approx(1.0) and same["pair_trends"] == pytest.approx(1.0)
    shuffled = real.copy()
    shuffled[:, 1:] = np.eye(3)[rng.permutation(codes)]  # the same shares, the link to x lost
    moved = table_scores(real, shuffled, table)
    assert moved["column_shapes"] == pytest.approx(1.0) and moved["pair_trends"] < 0.5
    skewed = real.copy()
    skewed[:, 1:] = np.eye(3)[np.zeros(2000, int)]
    assert table_scores(real, skewed, table)["column_shapes"] < 0.7


def test_few_valued_whole_numbers_are_categories_unless_the_table_is_small():
    """Codes (≤ 10 values) become one-hot blocks; more values, or about as many values as rows (a small table's
    counts), stay one ordered integer."""
    codes = [str(i % 4) for i in range(40)]
    counts = [str(i % 11) for i in range(40)]
    tiny = [str(i % 6) for i in range(10)]
    table = infer_table(["code", "count"], [codes, counts], "t.csv")
    assert [c.type for c in table.columns] == ["categorical", "integer"]
    assert table.columns[0].categories == ("0", "1", "2", "3")
    assert infer_table(["n"], [tiny], "t.csv").columns[0].type == "integer"  # 6 values in 10 rows
    assert infer_table(["one"], [["3"] * 40], "t.csv").columns[0].type == "integer"  # a constant is no code


def test_a_series_keeps_few_valued_channels_as_numbers(tmp_path):
    """data.window cuts a long series of numbers: a channel of whole numbers with few values stays one channel."""
    rows = [[f"{np.sin(i / 5):.3f}", str(i % 3)] for i in range(120)]
    write_csv(tmp_path / "long.csv", rows, ["v", "phase"])
    ds = load_data(DataConfig(source=str(tmp_path / "long.csv"), window=24, stride=4))
    assert ds.train.shape[1:] == (2, 24) and ds.kind == "series"
    assert set(np.unique(ds.train[:, 1])) == {0.0, 1.0, 2.0}


def test_window_refuses_categories_and_encoding_refuses_bad_cells(tmp_path):
    rows = [[f"{i}.0", "a" if i % 2 else "b"] for i in range(100)]
    write_csv(tmp_path / "long.csv", rows, ["v", "kind"])
    with pytest.raises(DataError, match=r"long\.csv: data\.window cuts one long series.*kind categorical"):
        load_data(DataConfig(source=str(tmp_path / "long.csv"), window=10))
    table = infer_table(["n", "b"], [["1", "2"], ["yes", "no"]], "t.csv")
    assert [c.type for c in table.columns] == ["integer", "boolean"] and table.columns[1].categories == ("no", "yes")
    with pytest.raises(DataError, match=r"t\.csv: column 'b' is boolean \(no/yes\), and line 7 holds 'maybe'"):
        table.encode([["1"], ["maybe"]], "t.csv", lines=[7])
    with pytest.raises(DataError, match=r"column 'n' holds numbers, and row 1 holds 'x'"):
        table.encode([["x"], ["yes"]], "t.csv")


def test_training_masks_keep_a_category_whole():
    """A one-hot block is given or hidden as a whole in training, as impute gives or hides a category."""
    import torch

    from steadydiff.data.masks import draw_masks, whole_blocks

    known = draw_masks(200, (7,), ("scattered",), 0.0, torch.Generator().manual_seed(0))
    kept = whole_blocks(known, [(1, 4), (5, 7)])
    for a, b in [(1, 4), (5, 7)]:
        assert (kept[:, a:b] == kept[:, a:a + 1]).all()
    assert torch.equal(kept[:, [0, 4]], known[:, [0, 4]])  # numeric entries as drawn
    assert (known[:, 1:4] != known[:, 1:2]).any()  # drawn per entry, the block would be split


def test_pair_trends_read_a_missing_synthetic_cell_as_absent():
    """A synthetic row with a missing category is left out of that pair's shares, not counted as category 0."""
    table = Table((Column("x", "numeric"), Column("c", "categorical", ("a", "b", "c"))))
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 2000)
    real = np.column_stack([codes + 0.1 * rng.normal(size=2000), np.eye(3)[codes]])
    holes = real.copy()
    holes[::3, 1:] = np.nan  # a third of the synthetic categories missing
    assert table_scores(real, holes, table)["pair_trends"] == pytest.approx(1.0, abs=0.03)


def test_impute_and_sample_read_and_write_parquet_with_the_tables_types(penguins):
    pytest.importorskip("pyarrow")
    root, path, run = penguins
    gaps = pd.DataFrame({"length": [40.1, None, 47.3], "count": pd.array([2, 5, None], dtype="Int64"),
                         "flag": pd.array([True, None, False], dtype="boolean"),
                         "species": ["Adelie", "Gentoo", None], "island": [None, None, None]})
    gaps.to_parquet(root / "gaps.parquet", index=False)
    out = root / "done.parquet"
    r = subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run.dir), "--in", str(root / "gaps.parquet"),
                        "--out", str(out), "--steps", "6", "--resample", "1"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    done = pd.read_parquet(out)
    assert list(done.columns) == HEADER and len(done) == 3 and not done.isna().any().any()
    assert [str(t) for t in done.dtypes] == ["Float64", "Int64", "boolean", "string", "string"]
    assert done["length"][0] == 40.1 and done["count"][1] == 5 and not done["flag"][2]  # known cells as given
    assert set(done["species"]) <= set(SPECIES) and set(done["island"]) <= set(ISLANDS)
    model = steadydiff.load(run.dir)
    sampled = save_samples(root / "samples.parquet", model.sample(50, steps=6, seed=0), kind=model.kind,
                           columns=model.columns, table=model.table)
    again = load_data(DataConfig(source=str(sampled), holdout=0))  # read back as the same typed table
    assert [(c.name, c.type) for c in again.table.columns] == [(c.name, c.type) for c in model.table.columns]
    wrong = gaps.rename(columns={"count": "n"})
    wrong.to_parquet(root / "wrong.parquet", index=False)
    r = subprocess.run([sys.executable, "-m", "steadydiff", "impute", str(run.dir), "--in", str(root / "wrong.parquet"),
                        "--out", str(root / "never.parquet")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "but the run was trained on" in r.stderr and not (root / "never.parquet").exists()
