"""`steadydiff report RUN`: one self-contained HTML page about a run, readable without a network.

It reads only the run directory (DESIGN.md, "Layers"): the logs, the sample grids, and, for the sections
that need a model, the last checkpoint through `steadydiff.api.load` and the training data reloaded from
the run's config. Every figure is a matplotlib PNG embedded as a data: URI; the CSS is inline and there is
no script. It works on a run that is still going: sections whose inputs do not exist yet say so.

    files.py    read the run directory, tolerating a run in progress
    live.py     figures computed now from the checkpoint: quality against NFE, memorisation, trajectory
    verdict.py  the plain-language verdict, pure functions on numbers
    plots.py    figures: numbers in, PNG bytes out
    html.py     small HTML helpers
    build.py    one function per section
"""

from __future__ import annotations

import time
from pathlib import Path

from ..atomic import write_text_atomic
from . import build
from . import html as h
from .files import RunFiles, read_run
from .live import N_EVAL, compute
from .verdict import Verdict

SECTION_IDS = build.SECTION_IDS


def render(files: RunFiles, *, n_eval: int = N_EVAL, eval_note: str | None = None) -> str:
    """The report of `files` as one HTML document; `eval_note` says why eval.json was not made first."""
    t = time.perf_counter()
    live = compute(files, n=n_eval)
    live.eval_note = eval_note
    label, kind = build.status(files)
    sections = [
        build.overview(files, live),
        build.verdict_section(files, live),
        build.loss_section(files),
        build.gradient_section(files),
        build.samples_section(files),
        build.metrics_section(files, live),
        build.incidents_section(files),
        build.quality_section(files, live),
        build.memorisation_section(files, live),
        build.trajectory_section(files, live),
    ]
    subtitle = (f"{files.dir.resolve()} · written {time.strftime('%Y-%m-%d %H:%M')} in "
                f"{build.duration(time.perf_counter() - t)} · steadydiff report")
    return h.page(f"steadydiff run {files.dir.name}", subtitle, sections, badge=h.status_badge(label, kind))


def write_report(run_dir: str | Path, out: str | Path | None = None, *, n_eval: int = N_EVAL,
                 eval_note: str | None = None) -> Path:
    """Write the report of the run in `run_dir` to `out` (default RUN/report.html), atomically; return its path.

    Raises SteadydiffError when `run_dir` holds no steadydiff run.
    """
    files = read_run(run_dir)
    path = Path(out) if out is not None else files.dir / "report.html"
    text = render(files, n_eval=n_eval, eval_note=eval_note)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


__all__ = ["SECTION_IDS", "RunFiles", "Verdict", "read_run", "render", "write_report"]
