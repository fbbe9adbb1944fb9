"""eval_share — evaluation's share of the wall time of a default training run (validation, canaries, sample grids,
in-training sample metrics, final samples), which `train.eval_budget` (10 %) governs.

    .venv/bin/python benchmarks/eval_share.py [--quick]
"""

from __future__ import annotations

import json
import shutil

import steadydiff
from _common import OUT, fmt_s, parse_args, table, write_section


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    config = {"data": {"source": "digits"}}  # the default run of `make demo`
    if args.quick:
        config = {"data": {"source": "toy:grid25", "toy_samples": 4000}, "train": {"steps": 300, "batch_size": 128}}
    out = OUT / ("eval-share-quick" if args.quick else "eval-share")
    shutil.rmtree(out, ignore_errors=True)
    s = steadydiff.train(config, out=out, progress=False).summary
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    costs = [r["sample_metrics"]["seconds"] for r in lines if "sample_metrics" in r]
    skipped = sum("sample_metrics_skipped" in r for r in lines)
    rows = [[f"{s['steps']:,} × {s['batch_size']}", fmt_s(s["wall_s"]), f"{100 * s['evaluation_share']:.1f}%",
             f"{100 * s['evaluation_share_during_training']:.1f}%", len(costs), skipped,
             f"{min(costs):.1f}–{max(costs):.1f} s" if costs else "—"]]
    body = (f"Config `{json.dumps(config)}`, everything else default. Evaluation = validation, canaries, sample grids, "
            "in-training sample metrics and the final summary samples; the budget (`train.eval_budget` = 10 %) "
            "governs the part during training. Goal: ≤ 10 % of the wall time.\n\n"
            + table(["steps × batch", "wall time", "evaluation share", "during training", "sample-metric evaluations",
                     "skipped", "cost each"], rows))
    print(body)
    if not args.quick:
        write_section("eval_share", "Evaluation's share of a default run", body)


if __name__ == "__main__":
    main()
