"""What every benchmark script shares: the command line, the machine line, tables, and BENCHMARKS.md sections.

Each script owns one section of BENCHMARKS.md, delimited by HTML comments, and replaces it whole on each
full run (quick runs never write), so re-running a benchmark updates its figures in place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"  # gitignored: run directories, feature nets
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # other work on a shared CPU
HEADER = ("# Benchmarks\n\nFigures written by the scripts in `benchmarks/` (see benchmarks/README.md). "
          "Each section is replaced whole when its script runs again without `--quick`.\n")


def parse_args(description: str, extra: Sequence[tuple[str, dict]] = ()) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny step counts: a smoke run under a minute that writes nothing to BENCHMARKS.md")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="an ablation: change config values (e.g. diffusion.p_mean=-2.0); its figures are printed "
                        "and its run gets its own directory, but BENCHMARKS.md is left alone")
    for flag, kw in extra:
        p.add_argument(flag, **kw)
    return p.parse_args()


def with_overrides(config: dict, sets: Sequence[str]) -> tuple[dict, str]:
    """The config with `key.sub=value` ablations applied (values parsed as JSON where they parse), and a
    run-directory suffix naming them."""
    import json

    for item in sets:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    tag = "".join("-" + s.replace("=", "_").replace(".", "_") for s in sets)
    return config, tag


def command_line() -> str:
    """The command as a user would type it from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join([".venv/bin/python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cores}-core CPU ({cpu_model()}), {gpu}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}, {platform.system()}; "
            f"1-min load average {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")


def source_digest() -> str:
    """A short hash of the package's source files, tying figures to a code state without asking git."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "src" / "steadydiff").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


SOURCE_AT_START = source_digest()  # the code the figures came from, even if files change during a long run


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([fmt(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |", *map(fmt, cells[1:])])


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) this script's section of BENCHMARKS.md: title, date, command, machine, body."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    section = (f"{begin}\n## {title}\n\n- date: {today()}\n- command: `{command_line()}`\n- machine: {machine()}\n"
               f"- source: sha256 of src/steadydiff/**/*.py at the start = {SOURCE_AT_START}\n\n"
               f"{body.strip()}\n{end}")
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(text)
    print(f"wrote section '{name}' of {BENCHMARKS_MD}")


def load_results(path: Path) -> dict:
    """A benchmark's kept results (one JSON object of named entries), empty before the first."""
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def save_result(path: Path, key: str, value: dict) -> dict:
    """Add or replace one entry of the kept results, re-read first (another call may have added some) and
    written atomically, so a run cut short never leaves a torn file; returns them all."""
    import json

    results = load_results(path)
    results[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    return results


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.1f} s"
