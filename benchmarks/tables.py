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
  of the rows, as many samples as training rows; machine-learning efficacy (a gradient-boosted classifier of the
  class column trained on the samples, accuracy on the other 30 % of real rows, against the same classifier
  trained on the real 70 %; goal ≥ 0.9×) and the distance to the closest training record (median, column stds)
  of samples against that of the held-out real rows.

    .venv/bin/python benchmarks/tables.py            # ~15 min on one core
    .venv/bin/python benchmarks/tables.py --quick    # a smoke run: tiny step counts, nothing written
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from _common import OUT, load_results, parse_args, save_result, table, write_section

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


def one(name: str, quick: bool) -> dict:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (makes IterativeImputer importable)
    from sklearn.impute import IterativeImputer, KNNImputer

    import steadydiff

    torch.set_num_threads(1)
    x, columns = data_sets()[name]
    holes = gappy(x)
    out = ROOT_OUT / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_csv(out / f"{name}.csv", holes, columns)
    cfg = {"data": {"source": str(out / f"{name}.csv"), "holdout": 0.0}, "train": {"seed": 0}}
    if quick:
        cfg["train"].update({"steps": 60, "sample_every": 0, "sample_metrics_every": 0})
    t0 = time.perf_counter()
    run = steadydiff.train(cfg, out=out / "run", progress=False)
    train_s = time.perf_counter() - t0
    model = steadydiff.load(run.dir)
    t0 = time.perf_counter()
    draws = model.impute(holes, draws=5 if quick else DRAWS, seed=0)  # (K, N, D)
    impute_s = time.perf_counter() - t0
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
    samples = model.sample(2000, seed=0)
    never_negative = x.min(0) >= 0
    negative_cols = int(((samples < 0) & never_negative).any(0).sum())
    result = {"name": name, "rows": len(x), "columns": len(columns), "missing": float(gone.mean()),
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


def utility(name: str, quick: bool) -> dict:
    import steadydiff
    from steadydiff.metrics.tables import closest_record, efficacy

    torch.set_num_threads(1)
    x, columns = data_sets()[name]
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        x, columns = np.column_stack([x, load_breast_cancer().target]), columns + ["diagnosis"]
    perm = np.random.default_rng(0).permutation(len(x))
    cut = int(0.7 * len(x))
    train, test = x[perm[:cut]], x[perm[cut:]]
    out = ROOT_OUT / f"{name}-utility"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_csv(out / "train.csv", train, columns)
    cfg = {"data": {"source": str(out / "train.csv"), "holdout": 0.0}, "train": {"seed": 0}}
    if quick:
        cfg["train"].update({"steps": 60, "sample_every": 0, "sample_metrics_every": 0})
    run = steadydiff.train(cfg, out=out / "run", progress=False)
    fake = steadydiff.load(run.dir).sample(len(train), seed=0)
    y = lambda a: a[:, -1].round().astype(int)  # noqa: E731  (the class column, last)
    real_acc = efficacy(train[:, :-1], y(train), test[:, :-1], y(test))
    fake_acc = efficacy(fake[:, :-1], y(fake), test[:, :-1], y(test)) if len(np.unique(y(fake))) > 1 else 0.0
    scale = train.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    return {"rows": len(train), "efficacy_real": real_acc, "efficacy_synthetic": fake_acc,
            "dcr_synthetic": float(np.median(closest_record(fake, train, scale))),
            "dcr_holdout": float(np.median(closest_record(test, train, scale)))}


def report(results: dict) -> str:
    rows = []
    for name, r in results.items():
        if name.endswith("/utility"):
            continue
        met = r["rmse"]["steadydiff"] <= r["rmse"]["iterative"] and 0.85 <= r["coverage_90"] <= 0.95
        rows.append([name, f"{r['rows']} × {r['columns']}", f"{100 * r['missing']:.1f} %",
                     f"{r['rmse']['steadydiff']:.3f}", f"{r['rmse']['iterative']:.3f}", f"{r['rmse']['knn']:.3f}",
                     f"{r['rmse']['mean']:.3f}", f"{100 * r['coverage_90']:.1f} %", "yes" if met else "**no**",
                     f"{r['negative_sample_columns']} of {r['never_negative_columns']}",
                     f"{r['train_s'] / 60:.1f} + {r['impute_s'] / 60:.1f}"])
    n_met = sum(row[8] == "yes" for row in rows)
    text = [f"**Imputation goal (RMSE ≤ IterativeImputer's, 90 % interval coverage 85–95 %): met on {n_met} of "
            f"{len(rows)} tables.**" if results else "No table measured yet.", "",
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
    wine = results.get("wine")
    if wine and "class_shares" in wine:
        s, d = wine["class_shares"]["samples"], wine["class_shares"]["data"]
        text += ["", f"Wine's class column in 2,000 samples: {wine['invalid_codes']} values outside {{0, 1, 2}}; "
                     f"shares {', '.join(f'{100 * v:.1f} %' for v in s)} against the data's "
                     f"{', '.join(f'{100 * v:.1f} %' for v in d)}."]
    return "\n".join(text)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], [
        ("--tables", {"nargs": "+", "default": ["wine", "breast-cancer"], "choices": ["wine", "breast-cancer"]}),
        ("--report-only", {"action": "store_true", "help": "write the section from results.json, train nothing"}),
        ("--utility-only", {"action": "store_true", "help": "measure only the utility and privacy part"}),
    ])
    np.seterr(all="ignore")
    results = load_results(RESULTS)
    if args.utility_only:
        for name in args.tables:
            r = utility(name, args.quick)
            print(json.dumps(r), flush=True)
            if not args.quick:
                results = save_result(RESULTS, f"{name}/utility", r)
    elif not args.report_only:
        for name in args.tables:
            r = one(name, args.quick)
            print(json.dumps(r), flush=True)
            u = utility(name, args.quick)
            print(json.dumps(u), flush=True)
            if not args.quick:
                save_result(RESULTS, name, r)
                results = save_result(RESULTS, f"{name}/utility", u)
    if args.quick:
        return
    text = report(results)
    print(text)
    write_section("tables", "Tables with missing values: imputation against scikit-learn, valid columns "
                            "(benchmarks/tables.py)", text)


if __name__ == "__main__":
    main()
