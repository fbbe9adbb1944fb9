"""tables — tables with missing values and typed columns, against scikit-learn's imputers.

For scikit-learn's wine table (its class written as a 0/1/2 column, as a user's CSV would hold it) and its
breast-cancer table, 20 % of the cells are emptied completely at random (seeded; every row keeps a value), and
steadydiff trains on the CSV with the defaults — the missing cells learnt around, never filled in first. Then:
- imputation: the emptied cells filled by `model.impute` (20 draws; the median is the point estimate), against
  scikit-learn's IterativeImputer and KNNImputer fitted on the same gappy table: RMSE on the emptied cells in units
  of each column's std (averaged over columns), and the share of emptied cells inside steadydiff's 5–95 %
  interval (goal of the issue "Time series and tables": RMSE ≤ IterativeImputer's, coverage 85–95 %);
- validity of 2,000 samples: columns that are never negative in the data with a negative sample, sampled class
  codes outside {0, 1, 2}, and the class shares against the data's;
- utility and privacy (complete tables, breast-cancer with its diagnosis as a 0/1 column): a run on a seeded 70 %
  of the rows, as many samples as training rows; column shapes and pair trends against the other 30 %,
  machine-learning efficacy (a gradient-boosted classifier of the class column trained on the samples, accuracy on
  the other 30 % of real rows, against the same classifier trained on the real 70 %; goal ≥ 0.9×) and the
  distance to the closest training record (median, column stds) of samples against that of the held-out real rows;
- anchors (`--sdv`, on every table's split): SDV's GaussianCopula, CTGAN and TVAE synthesizers with their defaults,
  one fit each, three draws of as many samples as training rows, scored by the same functions (goal of the issue:
  every metric at least the best synthesizer's);
- mixed types with real gaps (`--tables penguins`): the Palmer penguins CSV shipped in the `palmerpenguins` package
  (species, island, sex as text, NA cells as the file has them), a seeded 70/30 split, trained with the defaults for
  each of `--seeds` (0 1 2): column shapes and column-pair trends (metrics/tables.py) of as many samples as training
  rows against the held-out rows, beside the real training rows' (the floor); species accuracy of a gradient-boosted
  classifier trained on the samples against one trained on the real rows (goal ≥ 0.9×); a CSV sampled through
  `steadydiff sample RUN --out FILE.csv` checked for the input's header and column types and valid categories; and
  the SDV anchors on the same split. sdv 2 needs pandas < 3, so it is installed into benchmarks/out/sdv-site
  (benchmarks/README.md) and run in a subprocess;
- sdmetrics' own quality score (the sdmetrics package installed beside sdv, in a subprocess too): the single-table
  QualityReport of steadydiff's samples, of each SDV draw and of the real training rows against the held-out rows
  (its overall score and its Column Shapes and Column Pair Trends properties, missing cells included), with a
  metadata built from steadydiff's column types (categorical and boolean: categorical, else numerical); every side
  is written by the same decoder (`Table.decode`), so a category reads the same text in each. The rows scored are
  kept as CSVs in the run's folder (`sdmetrics/`).

    .venv/bin/python benchmarks/tables.py                      # ~40 min on one core
    .venv/bin/python benchmarks/tables.py --tables penguins    # ~15 min
    .venv/bin/python benchmarks/tables.py --sdv-only           # the SDV anchors alone, ~8 min
    .venv/bin/python benchmarks/tables.py --epochs 0 800 600 400 300   # wine's imputation per train.max_epochs
    .venv/bin/python benchmarks/tables.py --quick    # a smoke run: tiny step counts, nothing written
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from _common import OUT, SOURCE_AT_START, load_results, parse_args, save_result, table, today, write_section

ROOT_OUT = OUT / "tables"
RESULTS = Path(__file__).resolve().parent / "results" / "tables.json"
MISSING = 0.2
DRAWS = 20


def data_sets() -> dict[str, tuple[np.ndarray, list[str]]]:
    from sklearn.datasets import load_breast_cancer, load_wine

    wine = load_wine()
    cancer = load_breast_cancer()
    return {"wine": (np.column_stack([wine.data, wine.target]).astype(np.float64),
                     [c.replace(" ", "_") for c in wine.feature_names] + ["class"]),
            "breast-cancer": (cancer.data.astype(np.float64), [c.replace(" ", "_") for c in cancer.feature_names])}


def gappy(x: np.ndarray, seed: int = 0) -> np.ndarray:
    gone = np.random.default_rng(seed).random(x.shape) < MISSING
    gone[gone.all(1), 0] = False  # every row keeps a value
    holes = x.copy()
    holes[gone] = np.nan
    return holes


def write_csv(path: Path, x: np.ndarray, columns: list[str]) -> None:
    lines = [",".join(columns)] + [",".join("" if np.isnan(v) else f"{v:.10g}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")


def to_entries(table, x: np.ndarray) -> np.ndarray:
    """Rows of column values (NaN where missing) as the run's rows of entries: each cell written as in the CSV and
    encoded by the run's column schema (a class column of few codes is a one-hot block)."""
    cells = [["" if np.isnan(v) else f"{v:.10g}" for v in x[:, j]] for j in range(x.shape[1])]
    return table.encode(cells, "benchmark rows")


def to_values(table, e: np.ndarray) -> np.ndarray:
    """Rows of entries back to one number per column (a category as its code), NaN for an empty cell."""
    return np.array([[float(c) if c else np.nan for c in row] for row in table.decode(e)], dtype=np.float64)


def one(name: str, quick: bool, max_epochs: float | None = None) -> dict:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
    from sklearn.impute import IterativeImputer, KNNImputer

    import steadydiff

    torch.set_num_threads(1)
    x, columns = data_sets()[name]
    holes = gappy(x)
    out = ROOT_OUT / (name if max_epochs is None else f"{name}-epochs-{max_epochs:g}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_csv(out / f"{name}.csv", holes, columns)
    cfg = {"data": {"source": str(out / f"{name}.csv"), "holdout": 0.0}, "train": {"seed": 0}}
    if max_epochs is not None:
        cfg["train"]["max_epochs"] = max_epochs
    if quick:
        cfg["train"].update({"steps": 60, "sample_every": 0, "sample_metrics_every": 0})
    t0 = time.perf_counter()
    run = steadydiff.train(cfg, out=out / "run", progress=False)
    train_s = time.perf_counter() - t0
    model = steadydiff.load(run.dir)
    t0 = time.perf_counter()
    draws = model.impute(to_entries(model.table, holes), draws=5 if quick else DRAWS, seed=0)  # (K, N, entries)
    impute_s = time.perf_counter() - t0
    draws = np.stack([to_values(model.table, d) for d in draws])  # (K, N, columns)
    gone = np.isnan(holes)
    std = x.std(0)
    median = np.median(draws, 0)

    def rmse(filled: np.ndarray) -> float:
        per_col = [np.sqrt(np.mean(((filled - x)[:, j][gone[:, j]] / std[j]) ** 2)) for j in range(x.shape[1])
                   if gone[:, j].any()]
        return float(np.mean(per_col))

    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    coverage = float(np.mean(((x >= lo) & (x <= hi))[gone]))
    iterative = IterativeImputer(max_iter=10, random_state=0).fit_transform(holes)
    knn = KNNImputer(n_neighbors=5).fit_transform(holes)
    samples = to_values(model.table, model.sample(2000, seed=0))
    never_negative = x.min(0) >= 0
    negative_cols = int(((samples < 0) & never_negative).any(0).sum())
    result = {"name": name, "rows": len(x), "columns": len(columns), "missing": float(gone.mean()),
              "column_types": model.table.describe(), "date": today(), "source": SOURCE_AT_START,
              "train_s": round(train_s, 1), "impute_s": round(impute_s, 1), "steps": run.config.train.steps,
              "masks": run.config.train.masks, "rmse": {"steadydiff": rmse(median), "iterative": rmse(iterative),
                                                        "knn": rmse(knn), "mean": rmse(np.where(gone, np.nanmean(
                                                            holes, 0), holes))},
              "coverage_90": coverage, "never_negative_columns": int(never_negative.sum()),
              "negative_sample_columns": negative_cols}
    if name == "wine":
        codes = samples[:, -1]
        result["invalid_codes"] = int((~np.isin(codes, [0, 1, 2])).sum())
        result["class_shares"] = {"samples": [float(np.mean(codes == k)) for k in range(3)],
                                  "data": [float(np.mean(x[:, -1] == k)) for k in range(3)]}
    return result


TARGETS = {"wine": "class", "breast-cancer": "diagnosis", "penguins": "species"}  # the efficacy classifier's label


def utility_split(name: str) -> tuple[Path, Path]:
    """A complete table (breast-cancer with its diagnosis as a 0/1 column) split 70/30 by a seeded permutation,
    written as train.csv and test.csv."""
    x, columns = data_sets()[name]
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        x, columns = np.column_stack([x, load_breast_cancer().target]), columns + ["diagnosis"]
    perm = np.random.default_rng(0).permutation(len(x))
    cut = int(0.7 * len(x))
    out = ROOT_OUT / f"{name}-utility"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "train.csv", x[perm[:cut]], columns)
    write_csv(out / "test.csv", x[perm[cut:]], columns)
    return out / "train.csv", out / "test.csv"


def utility(name: str, quick: bool) -> dict:
    """A run on the training split with the defaults; as many samples as training rows, scored against the
    held-out rows as the SDV anchors are (`scores`), beside the real training rows (the floor)."""
    import steadydiff
    from steadydiff.metrics.tables import closest_record

    torch.set_num_threads(1)
    train_csv, test_csv = utility_split(name)
    shutil.rmtree(train_csv.parent / "run", ignore_errors=True)
    cfg = {"data": {"source": str(train_csv), "holdout": 0.0}, "train": {"seed": 0}}
    if quick:
        cfg["train"].update({"steps": 60, "sample_every": 0, "sample_metrics_every": 0})
    t0 = time.perf_counter()
    run = steadydiff.train(cfg, out=train_csv.parent / "run", progress=False)
    train_s = time.perf_counter() - t0
    model = steadydiff.load(run.dir)
    schema = model.table
    train_rows = schema.encode(read_cells(train_csv)[1], train_csv.name)
    test_rows = schema.encode(read_cells(test_csv)[1], test_csv.name)
    fake = model.sample(len(train_rows), seed=0)
    ours, real = scores(test_rows, fake, schema, TARGETS[name]), scores(test_rows, train_rows, schema, TARGETS[name])
    q = quality(test_rows, {"steadydiff": fake, "real-train": train_rows}, schema, train_csv.parent)
    ours["sdmetrics"], real["sdmetrics"] = q["steadydiff"], q["real-train"]
    scale = np.nanstd(train_rows, 0)
    scale = np.where(scale > 0, scale, 1.0)
    return {"rows": len(train_rows), "efficacy_real": real["efficacy"], "efficacy_synthetic": ours["efficacy"],
            "steadydiff": ours, "real_train": real, "train_s": round(train_s, 1), "steps": run.config.train.steps,
            "date": today(), "source": SOURCE_AT_START, "column_types": schema.describe(),
            "dcr_synthetic": float(np.median(closest_record(fake, train_rows, scale))),
            "dcr_holdout": float(np.median(closest_record(test_rows, train_rows, scale)))}


# --------------------------------------------------------------------------------------------------
# penguins: a mixed-type table with real gaps, against SDV's Gaussian copula.

PENGUIN_SEEDS = (0, 1, 2)
VALIDITY_N = 1000  # rows sampled through `steadydiff sample --out FILE.csv` for the validity checks
# SDV (sdv 2.0) needs pandas < 3, which the venv's steadydiff reads with, so it lives in its own folder beside the
# venv (see benchmarks/README.md) and runs in a subprocess; a venv with sdv installed works as well.
SDV_SITE = OUT / "sdv-site"
SDV_SCRIPT = """
import sys, time
import pandas as pd
import sdv
from sdv.metadata import Metadata
from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer
kind, source, target, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = pd.read_csv(source)  # "NA" cells read as missing
t0 = time.perf_counter()
metadata = Metadata.detect_from_dataframes({"table": data})
make = {"gaussian-copula": GaussianCopulaSynthesizer, "ctgan": CTGANSynthesizer, "tvae": TVAESynthesizer}[kind]
synthesizer = make(metadata)  # the defaults (CTGAN and TVAE: 300 epochs)
synthesizer.fit({"table": data})  # sdv 2: a table is a {name: DataFrame}
fit_s = time.perf_counter() - t0
rows = synthesizer.sample(n)
(rows["table"] if isinstance(rows, dict) else rows).to_csv(target, index=False)
print(f"sdv {sdv.__version__}, pandas {pd.__version__}, fit {fit_s:.2f} s")
"""
SDMETRICS_SCRIPT = """
import json, sys, warnings
import pandas as pd
import sdmetrics
from sdmetrics.reports import QualityReport  # the single-table report (its sdmetrics.reports.single_table alias is
warnings.simplefilter("ignore")              # deprecated), given one table
job = json.loads(sys.argv[1])  # {"types": {column: sdtype}, "real": CSV, "groups": {label: CSV}}
text = [c for c, t in job["types"].items() if t != "numerical"]
read = lambda path: pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values=[""])
metadata = {"tables": {"table": {"columns": {c: {"sdtype": t} for c, t in job["types"].items()}}}}
real = read(job["real"])
out = {}
for label, path in job["groups"].items():
    fake = read(path)
    report = QualityReport()  # the defaults: pair trends averaged over the pairs with a real |r| > 0.5 or V > 0.3
    report.generate({"table": real}, {"table": fake}, metadata, verbose=False)
    props = dict(zip(*report.get_properties()[["Property", "Score"]].to_dict("list").values()))
    pairs = report.get_details("Column Pair Trends")
    every = QualityReport()  # every pair counted, as sdmetrics did before its thresholds
    every.real_correlation_threshold = every.real_association_threshold = 0
    every.generate({"table": real}, {"table": fake}, metadata, verbose=False)
    out[label] = {"score": float(report.get_score()), "column_shapes": float(props["Column Shapes"]),
                  "pair_trends": float(props["Column Pair Trends"]),
                  "pairs_counted": int(pairs["Meets Threshold?"].astype("boolean").fillna(False).sum()),
                  "pairs": len(pairs),
                  "pair_trends_all_pairs": float(every.get_details("Column Pair Trends")["Score"].mean()),
                  "version": f"sdmetrics {sdmetrics.__version__}"}
print(json.dumps(out))
"""
SDV_KINDS = ("gaussian-copula", "ctgan", "tvae")
SDV_NAMES = {"gaussian-copula": "SDV GaussianCopulaSynthesizer", "ctgan": "SDV CTGANSynthesizer",
             "tvae": "SDV TVAESynthesizer"}


def penguins_csv() -> Path:
    """palmerpenguins' own CSV (344 rows; species, island, sex as text; NA where a value is missing)."""
    import importlib.resources

    return Path(str(importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"))


def read_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header and its cells column by column (stripped text)."""
    import csv

    with path.open(newline="") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if r]
    return rows[0], [list(col) for col in zip(*rows[1:], strict=True)]


def penguin_split() -> tuple[Path, Path]:
    """A seeded 70/30 split of the penguins' lines, written as train.csv and test.csv (the file's own text)."""
    out = ROOT_OUT / "penguins"
    out.mkdir(parents=True, exist_ok=True)
    header, *lines = [ln for ln in penguins_csv().read_text().splitlines() if ln.strip()]
    perm = np.random.default_rng(0).permutation(len(lines))
    cut = int(0.7 * len(lines))
    for name, part in (("train.csv", perm[:cut]), ("test.csv", perm[cut:])):
        (out / name).write_text("\n".join([header] + [lines[i] for i in sorted(part)]) + "\n")
    return out / "train.csv", out / "test.csv"


def sdv_env() -> dict:
    """The environment for a subprocess that imports sdv or sdmetrics: benchmarks/out/sdv-site first on its path."""
    import os

    env = dict(os.environ)
    if SDV_SITE.is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(SDV_SITE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def quality(real_test: np.ndarray, groups: dict[str, np.ndarray], schema, folder: Path) -> dict[str, dict]:
    """sdmetrics' QualityReport of each of `groups` (rows of entries) against `real_test`: {label: {score,
    column_shapes, pair_trends, pairs_counted, pairs, pair_trends_all_pairs, version}}, or {label: {error}} where
    sdmetrics is not there or fails. The rows are written as CSVs under `folder`/sdmetrics (kept)."""
    import csv
    import subprocess
    import sys

    where = folder / "sdmetrics"
    where.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, rows in {"real-test": real_test, **groups}.items():
        paths[label] = where / f"{label}.csv"
        with paths[label].open("w", newline="") as fh:
            csv.writer(fh).writerows([schema.names, *schema.decode(rows)])
    sdtype = {"categorical": "categorical", "boolean": "categorical"}
    job = {"types": {c.name: sdtype.get(c.type, "numerical") for c in schema.columns}, "real": str(paths["real-test"]),
           "groups": {label: str(paths[label]) for label in groups}}
    done = subprocess.run([sys.executable, "-c", SDMETRICS_SCRIPT, json.dumps(job)], env=sdv_env(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        return {label: {"error": error} for label in groups}
    return json.loads(done.stdout.strip().splitlines()[-1])


def scores(real_test: np.ndarray, fake: np.ndarray, schema, target: str = "species") -> dict:
    """Column shapes and pair trends against the held-out rows, and machine-learning efficacy for the `target`
    column (a categorical block read by argmax, else its rounded number): HistGradientBoosting trained on `fake`'s
    other entries, accuracy on the held-out rows. Fake rows with a missing cell are left out of the shape and trend
    scores (metrics/tables.py's contingency similarity reads the real side's gaps only)."""
    from steadydiff.metrics.tables import efficacy, table_scores

    j = schema.names.index(target)
    a, b = schema.spans()[j]
    if schema.columns[j].type == "categorical":
        label = lambda rows: np.argmax(np.nan_to_num(rows[:, a:b], nan=-1.0), 1)  # noqa: E731
    else:
        label = lambda rows: np.nan_to_num(rows[:, a], nan=-1.0).round().astype(int)  # noqa: E731
    features = lambda rows: np.delete(rows, np.s_[a:b], axis=1)  # noqa: E731
    complete = fake[~np.isnan(fake).any(1)]
    out = table_scores(real_test, complete, schema)
    known = ~np.isnan(fake[:, a:b]).any(1)
    out["efficacy"] = efficacy(features(fake[known]), label(fake[known]), features(real_test), label(real_test)) \
        if len(np.unique(label(fake[known]))) > 1 else 0.0
    out["rows_scored"] = len(complete)
    return out


def validity(path: Path, train_csv: Path, schema) -> dict:
    """The checks of a sampled CSV: its header against the input's, its column types as steadydiff reads them,
    categorical cells outside the training categories, empty cells, numbers outside the training range."""
    from steadydiff.data.sources import read_csv

    header, cells = read_cells(path)
    in_header, in_cells = read_cells(train_csv)
    read_back = read_csv(path).table
    invalid, empty, outside = {}, {}, {}
    for col, text, train_text in zip(schema.columns, cells, in_cells, strict=True):
        empty[col.name] = sum(c == "" for c in text)
        if col.type in ("categorical", "boolean"):
            invalid[col.name] = sum(c not in col.categories for c in text if c)
        else:
            seen = np.array([float(c) for c in train_text if c.upper() != "NA" and c], dtype=np.float64)
            v = np.array([float(c) for c in text if c], dtype=np.float64)
            outside[col.name] = float(np.mean((v < seen.min()) | (v > seen.max())))
    return {"rows": len(cells[0]), "header_equal": header == in_header,
            "types": {c.name: c.type for c in schema.columns},
            "types_read_back": {c.name: c.type for c in read_back.columns},
            "types_equal": [c.type for c in read_back.columns] == [c.type for c in schema.columns],
            "categories_subset": all(set(r.categories) <= set(c.categories) for r, c in
                                     zip(read_back.columns, schema.columns, strict=True) if c.type == "categorical"),
            "invalid_category_cells": invalid, "empty_cells": empty, "outside_training_range": outside}


def penguins_seed(seed: int, quick: bool) -> dict:
    """One training seed on the penguins' training split: scores of as many samples as training rows, validity of
    VALIDITY_N rows sampled through the CLI, and the floor (real training rows) beside."""
    import subprocess
    import sys

    import steadydiff
    from steadydiff.metrics.tables import closest_record

    torch.set_num_threads(1)
    train_csv, test_csv = penguin_split()
    out = ROOT_OUT / "penguins" / f"seed-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = {"data": {"source": str(train_csv), "holdout": 0.0}, "train": {"seed": seed}}
    if quick:
        cfg["train"].update({"steps": 60, "sample_every": 0, "sample_metrics_every": 0})
    t0 = time.perf_counter()
    run = steadydiff.train(cfg, out=out / "run", progress=False)
    train_s = time.perf_counter() - t0
    model = steadydiff.load(run.dir)
    schema = model.table
    train_rows = schema.encode(read_cells(train_csv)[1], train_csv.name)
    test_rows = schema.encode(read_cells(test_csv)[1], test_csv.name)
    n = VALIDITY_N if not quick else 300
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "steadydiff", "sample", str(run.dir), "--n", str(n), "--seed", str(seed),
                    "--out", str(out / "samples.csv"), "--quiet"], check=True, capture_output=True, text=True)
    sample_s = time.perf_counter() - t0
    fake = schema.encode(read_cells(out / "samples.csv")[1], "samples.csv")[:len(train_rows)]  # sample i: (seed, i)
    scale = np.nanstd(train_rows, 0)
    scale = np.where(scale > 0, scale, 1.0)
    ours, real = scores(test_rows, fake, schema), scores(test_rows, train_rows, schema)
    q = quality(test_rows, {"steadydiff": fake, "real-train": train_rows}, schema, out)
    ours["sdmetrics"], real["sdmetrics"] = q["steadydiff"], q["real-train"]
    return {"seed": seed, "rows_train": len(train_rows), "rows_test": len(test_rows), "steps": run.config.train.steps,
            "batch": run.config.train.batch_size, "train_s": round(train_s, 1), "sample_s": round(sample_s, 1),
            "columns": schema.describe(), "steadydiff": ours, "real_train": real,
            "validity": validity(out / "samples.csv", train_csv, schema),
            "dcr_synthetic": float(np.median(closest_record(fake, train_rows, scale))),
            "dcr_holdout": float(np.median(closest_record(test_rows, train_rows, scale))),
            "source": SOURCE_AT_START, "date": today()}


def sdv_anchor(kind: str, train_csv: Path, test_csv: Path, target: str, draws: int) -> dict:
    """One SDV synthesizer (`kind`, its defaults) fitted once on `train_csv`; `draws` sets of as many samples as
    training rows (consecutive chunks of one draw), scored against `test_csv` by the same functions as steadydiff."""
    import subprocess
    import sys

    import steadydiff  # noqa: F401
    from steadydiff.data.sources import read_csv

    schema = read_csv(train_csv).table
    train_rows = schema.encode(read_cells(train_csv)[1], train_csv.name)
    test_rows = schema.encode(read_cells(test_csv)[1], test_csv.name)
    n = len(train_rows)
    out = train_csv.parent / f"sdv-{kind}.csv"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SDV_SCRIPT, kind, str(train_csv), str(out), str(n * draws)],
                          env=sdv_env(), capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    wall_s = time.perf_counter() - t0
    # SDV writes integer columns as floats where it samples missing cells ("181.0"): read as numbers, same entries
    fake_all = schema.encode(read_cells(out)[1], out.name)
    header = read_cells(out)[0]
    chunks = [fake_all[k * n:(k + 1) * n] for k in range(draws)]
    q = quality(test_rows, {f"sdv-{kind}-{k}": c for k, c in enumerate(chunks)}, schema, train_csv.parent)
    scored = [{**scores(test_rows, c, schema, target), "sdmetrics": q[f"sdv-{kind}-{k}"]} for k, c in enumerate(chunks)]
    return {"kind": kind, "version": done.stdout.strip(), "wall_s": round(wall_s, 1), "rows": n, "draws": scored,
            "missing_cells": float(schema.missing_cells(fake_all).mean()), "header_equal": header == schema.names,
            "source": SOURCE_AT_START, "date": today()}


def report(results: dict) -> str:
    rows = []
    for name, r in results.items():
        if "/" in name:  # utility, penguins and the SDV anchors: their own tables below
            continue
        met = r["rmse"]["steadydiff"] <= r["rmse"]["iterative"] and 0.85 <= r["coverage_90"] <= 0.95
        rows.append([name, f"{r['rows']} × {r['columns']}", f"{100 * r['missing']:.1f} %",
                     f"{r['rmse']['steadydiff']:.3f}", f"{r['rmse']['iterative']:.3f}", f"{r['rmse']['knn']:.3f}",
                     f"{r['rmse']['mean']:.3f}", f"{100 * r['coverage_90']:.1f} %", "yes" if met else "**no**",
                     f"{r['negative_sample_columns']} of {r['never_negative_columns']}",
                     f"{r['train_s'] / 60:.1f} + {r['impute_s'] / 60:.1f}"])
    n_met = sum(row[8] == "yes" for row in rows)
    text = [f"**Imputation goal (RMSE ≤ IterativeImputer's, 90 % interval coverage 85–95 %): met on {n_met} of "
            f"{len(rows)} tables.**" if rows else "No imputation measured yet.", "",
            "RMSE on the emptied cells in units of each column's std, averaged over columns; steadydiff's estimate is "
            f"the median of {DRAWS} draws, trained with the defaults on the gappy CSV itself (holdout 0, so every "
            "row is imputed by the run that saw its other cells).", "",
            table(["table", "size", "missing", "RMSE steadydiff", "RMSE IterativeImputer", "RMSE KNNImputer",
                   "RMSE column mean", "90 % coverage", "goal met", "never-negative columns with a negative sample",
                   "train + impute (min)"], rows)]
    util = {k[:-len("/utility")]: v for k, v in results.items() if k.endswith("/utility")}
    if util:
        rows_u = [[k, v["rows"], f"{v['efficacy_synthetic']:.3f}", f"{v['efficacy_real']:.3f}",
                   f"{v['efficacy_synthetic'] / v['efficacy_real']:.2f}×",
                   "yes" if v["efficacy_synthetic"] >= 0.9 * v["efficacy_real"] else "**no**",
                   f"{v['dcr_synthetic']:.3f}", f"{v['dcr_holdout']:.3f}"] for k, v in util.items()]
        text += ["", "Utility and privacy (complete tables; a run on 70 % of the rows, as many samples):", "",
                 table(["table", "training rows", "accuracy, trained on samples", "accuracy, trained on real",
                        "ratio", "≥ 0.9×", "closest-record distance: samples", "held-out real rows"], rows_u)]
        for k, v in util.items():
            if "steadydiff" in v:
                text += versus_sdv(results, k, [v["steadydiff"]], "1 training seed (0)",
                                   f"{v['train_s'] / 60:.1f}", v["real_train"],
                                   f"{k} (types as read: {v['column_types']}), its 70 % training split ({v['rows']} "
                                   f"rows, {v['steps']:,} steps)")
    sweep = sorted((float(k.split("/")[-1]), v) for k, v in results.items() if k.startswith("wine/max_epochs/"))
    if sweep:
        rows_e = [[f"{e:g}" if e else "0 (off)", f"{v['steps']:,}", f"{v['rmse']['steadydiff']:.3f}",
                   f"{100 * v['coverage_90']:.1f} %", f"{v['class_shares']['samples'][1] * 100:.1f} %"]
                  for e, v in sweep]
        text += ["", "Wine's imputation against train.max_epochs (`tables.py --epochs 0 800 600 400 300`; the default "
                 "400 was chosen from these): the passes over the 178 rows bound the steps (3,000 × 128 asked for); "
                 f"IterativeImputer's RMSE {sweep[0][1]['rmse']['iterative']:.3f}; the data's middle class share "
                 f"{sweep[0][1]['class_shares']['data'][1] * 100:.1f} %.", "",
                 table(["train.max_epochs", "steps", "RMSE steadydiff", "90 % coverage",
                        "middle class share in 2,000 samples"], rows_e)]
    wine = results.get("wine")
    if wine and "class_shares" in wine:
        s, d = wine["class_shares"]["samples"], wine["class_shares"]["data"]
        text += ["", f"Wine's class column in 2,000 samples: {wine['invalid_codes']} values outside {{0, 1, 2}}; "
                     f"shares {', '.join(f'{100 * v:.1f} %' for v in s)} against the data's "
                     f"{', '.join(f'{100 * v:.1f} %' for v in d)}."]
    return "\n".join(text + penguins_report(results))


def versus_sdv(results: dict, name: str, ours: list[dict], over: str, minutes: str, floor: dict,
               what: str) -> list[str]:
    """Column shapes, pair trends and efficacy of steadydiff's samples beside each SDV synthesizer's and the real
    training rows', with the goal line: every metric at least the best SDV synthesizer's (means), sdmetrics'
    quality score among them where measured; then sdmetrics' QualityReport of the same rows."""
    real_acc, target = floor["efficacy"], TARGETS[name]
    groups = [("steadydiff (defaults)", ours, over, minutes)]
    anchors = {kind: results.get(f"{name}/sdv-{kind}") for kind in SDV_KINDS}
    for kind, r in anchors.items():
        if r and "draws" in r:
            groups.append((f"{SDV_NAMES[kind]} (defaults)", r["draws"], f"one fit, {len(r['draws'])} sample draws",
                           f"{r['wall_s'] / 60:.1f}"))
    groups.append(("real training rows (the floor)", [floor], "complete rows for shapes and trends", ""))
    rows = []
    for label, draws, seeds, mins in groups:
        acc = [d["efficacy"] for d in draws]
        rows.append([label, _spread([d["column_shapes"] for d in draws]), _spread([d["pair_trends"] for d in draws]),
                     _spread(acc), _spread([a / real_acc for a in acc], 2) + "×",
                     "yes" if min(acc) >= 0.9 * real_acc else "**no**", seeds, mins])
    metrics = ("column_shapes", "pair_trends", "efficacy")
    mean = lambda draws, k: float(np.mean([d[k] for d in draws]))  # noqa: E731
    measured = [r for r in anchors.values() if r and "draws" in r]
    goals = [f"{target} accuracy ≥ 0.9× train-on-real: {'met' if rows[0][5] == 'yes' else 'NOT met'}"]
    quality_of = lambda draws: [d["sdmetrics"] for d in draws if "score" in d.get("sdmetrics", {})]  # noqa: E731
    if measured:
        best = {k: max(mean(r["draws"], k) for r in measured) for k in metrics}
        compared = [(k.replace("_", " "), mean(ours, k), best[k]) for k in metrics]
        if all(len(quality_of(d)) == len(d) for d in [ours] + [r["draws"] for r in measured]):
            compared.append(("sdmetrics quality", mean(quality_of(ours), "score"),
                             max(mean(quality_of(r["draws"]), "score") for r in measured)))
        goals.append(f"at least the best of {len(measured)} SDV synthesizers (means): " + ", ".join(
            f"{k} {'yes' if v >= b else 'NO'} ({v:.3f} vs {b:.3f})" for k, v, b in compared))
    missing = [f"{SDV_NAMES[k]}: {r['error']}" for k, r in anchors.items() if r and "error" in r]
    versions = sorted({r["version"].split(", fit")[0] for r in measured})
    return ["", f"**{name} against SDV: {'; '.join(goals)}.**", "",
            f"{what}: as many samples as training rows, scored against the held-out 30 % (column shapes 1 − KS or "
            f"1 − TV, pair trends correlation or contingency similarity, efficacy: HistGradientBoostingClassifier of "
            f"{target} trained on the rows, accuracy on the held-out rows). SDV ran in its own folder "
            f"({', '.join(versions) or 'not run'})" + (f"; not measured: {'; '.join(missing)}" if missing else "")
            + ".", "",
            table(["rows", "column shapes", "pair trends", f"{target} accuracy", "ratio to real", "≥ 0.9×", "over",
                   "fit/train + sample (min)"], rows)] + sdmetrics_table(groups)


def sdmetrics_table(groups: list[tuple]) -> list[str]:
    """sdmetrics' QualityReport of each group's rows against the held-out rows (mean ± std over its draws or seeds);
    nothing where no group has it (results from before it was measured)."""
    rows, versions, counted, errors = [], set(), set(), set()
    for label, draws, *_ in groups:
        got = [d["sdmetrics"] for d in draws if "score" in d.get("sdmetrics", {})]
        errors |= {f"{label}: {d['sdmetrics']['error']}" for d in draws if "error" in d.get("sdmetrics", {})}
        versions |= {g["version"] for g in got}
        counted |= {(g["pairs_counted"], g["pairs"]) for g in got}
        rows.append([label] + ([_spread([g[k] for g in got]) for k in ("score", "column_shapes", "pair_trends",
                                                                        "pair_trends_all_pairs")]
                               if len(got) == len(draws) else ["—"] * 4))
    if not versions:
        return []
    pairs = " or ".join(f"{k} of {n}" for k, n in sorted(counted))
    return ["", f"The same rows scored by sdmetrics' own single-table QualityReport ({', '.join(sorted(versions))}; "
                "metadata from the column types above: categorical or numerical) against the held-out rows, missing "
                "cells included: the score is the mean of its two properties, Column Shapes (KSComplement or "
                "TVComplement) and Column Pair Trends, which sdmetrics averages over the pairs whose held-out "
                f"correlation exceeds 0.5 in size or whose Cramér's V exceeds 0.3 ({pairs} pairs here); beside it, "
                "Column Pair Trends over every pair (both thresholds 0). Higher is better; the real training rows are "
                "the reference, what real rows of the same count score" + (
                    f"; not measured: {'; '.join(sorted(errors))}" if errors else "") + ".", "",
            table(["rows", "sdmetrics quality score", "Column Shapes", "Column Pair Trends",
                   "Column Pair Trends, every pair"], rows)]


def _spread(values: list[float], digits: int = 3) -> str:
    """Mean ± standard deviation over seeds (the mean alone for one value)."""
    import statistics

    mean = f"{statistics.mean(values):.{digits}f}"
    return mean if len(values) < 2 else f"{mean} ± {statistics.stdev(values):.{digits}f}"


def penguins_report(results: dict) -> list[str]:
    """The penguins' lines: scores of steadydiff's seeds, the real training rows and SDV's draws; validity."""
    runs = [results[k] for k in sorted(results) if k.startswith("penguins/seed-")]
    if not runs:
        return []
    ours = [r["steadydiff"] for r in runs]
    rows_all = runs[0]["rows_train"] + runs[0]["rows_test"]
    text = versus_sdv(
        results, "penguins", ours, f"{len(runs)} training seeds ({', '.join(str(r['seed']) for r in runs)})",
        _spread([(r["train_s"] + r["sample_s"]) / 60 for r in runs], 1), runs[0]["real_train"],
        f"Palmer penguins (the `palmerpenguins` package's CSV, {rows_all} rows with its NA cells; types as read: "
        f"{runs[0]['columns']}), a seeded 70/30 split, trained on the {runs[0]['rows_train']} training rows with the "
        f"defaults ({runs[0]['steps']:,} steps × {runs[0]['batch']}); rows with a missing cell are left out of shapes "
        "and trends on the synthetic side")
    gc = results.get("penguins/sdv-gaussian-copula")
    if gc and "draws" in gc:
        text += ["", f"SDV's Gaussian copula models NA cells: {100 * gc['missing_cells']:.1f} % of its sampled cells "
                     f"are missing; header equal to the input's: {'yes' if gc['header_equal'] else 'no'}."]
    v = [r["validity"] for r in runs]
    bad = sum(sum(x["invalid_category_cells"].values()) for x in v)
    empty = sum(sum(x["empty_cells"].values()) for x in v)
    outside = {c: max(x["outside_training_range"][c] for x in v) for c in v[0]["outside_training_range"]}
    text += ["", f"Sampled CSVs (`steadydiff sample RUN --n {v[0]['rows']} --out FILE.csv`, one per seed): header "
                 f"equal to the input's in {sum(x['header_equal'] for x in v)} of {len(v)}; column types as steadydiff "
                 f"reads them back equal to the input's in {sum(x['types_equal'] for x in v)} of {len(v)}; "
                 f"{bad} categorical cells outside the training categories and {empty} empty cells in "
                 f"{sum(x['rows'] for x in v):,} rows; share of numbers outside the training range (worst seed): "
                 + ", ".join(f"{c} {100 * s:.1f} %" for c, s in outside.items()) + ".",
             "", "Closest-record distance (median, column stds, training rows): samples "
                 f"{_spread([r['dcr_synthetic'] for r in runs])}, held-out real rows {runs[0]['dcr_holdout']:.3f}.",
             "", f"Penguins rows measured {runs[-1]['date']} from source {runs[-1]['source']}; the wine and "
                 "breast-cancer rows above: " + "; ".join(
                     f"{k} {r.get('date', 'before 2026-12-03')}" + (f" (source {r['source']})" if "source" in r else "")
                     for k, r in results.items() if k in ("wine", "breast-cancer", "wine/utility",
                                                          "breast-cancer/utility")) + "."]
    return text


def run_anchors(name: str, train_csv: Path, test_csv: Path, args) -> dict:
    """Each SDV synthesizer of --sdv on one table's split (3 sample draws each); the results kept."""
    results = load_results(RESULTS)
    for kind in args.sdv:
        r = sdv_anchor(kind, train_csv, test_csv, TARGETS[name], len(PENGUIN_SEEDS))
        print(json.dumps(r), flush=True)
        if not args.quick:
            results = save_result(RESULTS, f"{name}/sdv-{kind}", r)
    return results


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--tables", {"nargs": "+", "default": ["wine", "breast-cancer", "penguins"],
                      "choices": ["wine", "breast-cancer", "penguins"]}),
        ("--seeds", {"nargs": "+", "type": int, "default": list(PENGUIN_SEEDS), "help": "penguins' training seeds"}),
        ("--report-only", {"action": "store_true", "help": "write the section from results.json, train nothing"}),
        ("--utility-only", {"action": "store_true", "help": "measure only the utility and privacy part"}),
        ("--sdv", {"nargs": "*", "default": list(SDV_KINDS), "choices": list(SDV_KINDS),
                   "help": "SDV synthesizers to fit beside steadydiff (none: --sdv with no name)"}),
        ("--sdv-only", {"action": "store_true", "help": "fit only the SDV synthesizers of --sdv on --tables"}),
        ("--epochs", {"nargs": "*", "type": float, "default": [],
                      "help": "only wine's imputation at each of these train.max_epochs (0: no cap)"}),
    ])
    np.seterr(all="ignore")
    results = load_results(RESULTS)
    if args.epochs:
        for e in args.epochs:
            r = one("wine", args.quick, max_epochs=e)
            print(json.dumps(r), flush=True)
            if not args.quick:
                results = save_result(RESULTS, f"wine/max_epochs/{e:g}", r)
    elif args.sdv_only:
        for name in args.tables:
            results = run_anchors(name, *(penguin_split() if name == "penguins" else utility_split(name)), args)
    elif args.utility_only:
        for name in [t for t in args.tables if t != "penguins"]:
            r = utility(name, args.quick)
            print(json.dumps(r), flush=True)
            if not args.quick:
                results = save_result(RESULTS, f"{name}/utility", r)
    elif not args.report_only:
        for name in [t for t in args.tables if t != "penguins"]:
            r = one(name, args.quick)
            print(json.dumps(r), flush=True)
            u = utility(name, args.quick)
            print(json.dumps(u), flush=True)
            if not args.quick:
                save_result(RESULTS, name, r)
                results = save_result(RESULTS, f"{name}/utility", u)
            results = run_anchors(name, *utility_split(name), args)
        if "penguins" in args.tables:
            for seed in args.seeds:
                r = penguins_seed(seed, args.quick)
                print(json.dumps(r), flush=True)
                if not args.quick:
                    results = save_result(RESULTS, f"penguins/seed-{seed}", r)
            results = run_anchors("penguins", *penguin_split(), args)
    if args.quick:
        return
    text = report(results)
    print(text)
    write_section("tables", "Tables with missing values: imputation against scikit-learn, valid columns, mixed "
                            "types against SDV (benchmarks/tables.py)", text)


if __name__ == "__main__":
    main()
