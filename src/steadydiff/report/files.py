"""Read a run directory as it is on disk, also while the run is still writing to it.

Only files are read here (DESIGN.md, "Run directory"); nothing of the training loop is imported. A run
that is still going has no summary.json, perhaps no checkpoint, and a metrics.jsonl whose last line may
be half written: such a line is left out, never an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SteadydiffError
from ..train.config import RunConfig
from ..typed_config import load_toml

_STEP_FILE = re.compile(r"^step-(\d+)$")


@dataclass
class RunFiles:
    """Everything the report reads from one run directory."""

    dir: Path
    config: RunConfig | None
    config_error: str | None  # why config.toml could not be read (None when it was)
    dataset: dict[str, Any]  # dataset.json, {} when missing
    summary: dict[str, Any] | None  # summary.json; None while the run is going
    metrics: list[dict[str, Any]]  # metrics.jsonl, in order
    incidents: list[dict[str, Any]]  # incidents.jsonl, in order; [] when missing
    sample_grids: list[tuple[int, Path]]  # samples/step-N.png, by step
    checkpoints: list[tuple[int, Path]]  # checkpoints/step-N, by step
    evaluation: dict[str, Any] | list[Any] | None = None  # eval.json, when `steadydiff eval` wrote one
    notes: list[str] = field(default_factory=list)  # what was skipped while reading, for the reader

    @property
    def in_progress(self) -> bool:
        return self.summary is None

    @property
    def stopped(self) -> str | None:
        """The stability guard's diagnosis when it stopped the run."""
        return None if self.summary is None else self.summary.get("stopped")

    @property
    def kind(self) -> str:
        return str(self.dataset.get("kind", "vector"))


def read_jsonl(path: Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """JSON objects, one a line; a line that does not parse (being written right now) is skipped and noted."""
    if not path.is_file():
        return []
    out, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            out.append(record)
    if bad and notes is not None:
        notes.append(f"{path.name}: {bad} unreadable line{'s' if bad > 1 else ''} skipped (being written?)")
    return out


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        notes.append(f"{path.name} could not be read ({exc})")
        return None


def _numbered(folder: Path, pattern: str, *, dirs: bool) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = []
    for p in folder.glob(pattern):
        m = _STEP_FILE.match(p.stem if not dirs else p.name)
        if m and (p.is_dir() if dirs else p.is_file()):
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_run(run_dir: str | Path) -> RunFiles:
    """The run directory's files; SteadydiffError when `run_dir` holds no steadydiff run."""
    d = Path(run_dir)
    if not d.is_dir():
        raise SteadydiffError(f"{d} does not exist or is not a directory; give a run directory written by "
                              "`steadydiff train --out DIR`")
    if (d / "ensemble.json").is_file():  # train.ensemble: a report reads one run
        raise SteadydiffError(f"{d} holds an ensemble (train.ensemble); report one member, e.g. {d / 'members' / '0'}")
    if not (d / "config.toml").is_file():
        raise SteadydiffError(f"{d} is not a steadydiff run directory (no config.toml); give a directory "
                              "written by `steadydiff train --out DIR`")
    notes: list[str] = []
    config, config_error = None, None
    try:
        config = load_toml(d / "config.toml", RunConfig())
    except SteadydiffError as exc:  # e.g. written by another version: the logs are still worth a report
        config_error = str(exc)
        notes.append(f"config.toml could not be read by this version of steadydiff: {exc}")
    dataset = _read_json(d / "dataset.json", notes)
    summary = _read_json(d / "summary.json", notes)
    evaluation = _read_json(d / "eval.json", notes)
    return RunFiles(
        dir=d,
        config=config,
        config_error=config_error,
        dataset=dataset if isinstance(dataset, dict) else {},
        summary=summary if isinstance(summary, dict) else None,
        metrics=read_jsonl(d / "metrics.jsonl", notes),
        incidents=read_jsonl(d / "incidents.jsonl", notes),
        sample_grids=_numbered(d / "samples", "step-*.png", dirs=False),
        checkpoints=_numbered(d / "checkpoints", "step-*", dirs=True),
        evaluation=evaluation,
        notes=notes,
    )
