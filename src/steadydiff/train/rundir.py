"""The run directory: the resolved config, data description, logs; resume checks (DESIGN.md, Contracts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..errors import SteadydiffError
from ..typed_config import diff, load_toml, set_value, to_toml
from .config import RunConfig

# Keys that may change when a run is resumed: how long to train and how often to log, not what is trained.
RESUMABLE_KEYS = ("train.steps", "train.log_every", "train.checkpoint_every", "train.sample_every",
                  "train.keep_checkpoints", "train.device", "train.dist_timeout_s", "train.threads",
                  "train.compile", "train.val_every",
                  "train.tensorboard",
                  "train.eval_budget", "train.sample_metrics_every", "train.sample_metrics_n",
                  "train.sample_metrics_sampler", "train.sample_metrics_steps")
# The guard's settings say how to watch and recover, not what is trained: a stopped run may be resumed with
# other thresholds (e.g. more rollbacks allowed).
RESUMABLE_PREFIXES = ("guard.",)


def check_resume_config(run_dir: Path, cfg: RunConfig) -> RunConfig | None:
    """The config saved in `run_dir`, after checking that `cfg` describes the same run.

    Returns None for a fresh directory. Values left to be resolved at start (None, e.g. σ_data) take
    what the run resolved, written into `cfg`; a difference anywhere else means another run lives there.
    """
    saved_path = run_dir / "config.toml"
    if not saved_path.exists():
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SteadydiffError(f"{run_dir} exists and is not empty but holds no steadydiff run (no config.toml); "
                                  "choose another --out or empty it")
        return None
    saved = load_toml(saved_path, RunConfig())
    differences = diff(saved, cfg)
    for key, (was, now) in differences.items():
        if now is None and was is not None:  # resolved when the run started: keep what it used
            set_value(cfg, key, was)
    conflicts = {k: v for k, v in differences.items()
                 if k not in RESUMABLE_KEYS and not k.startswith(RESUMABLE_PREFIXES) and v[1] is not None}
    if conflicts:
        lines = "\n".join(f"  {k}: run has {a!r}, now {b!r}" for k, (a, b) in conflicts.items())
        raise SteadydiffError(
            f"{run_dir} holds a different run; its config differs in:\n{lines}\n"
            f"Re-run with the same settings to resume it, or choose a new --out for a new run.")
    return saved


def remove_newer(folder: Path, pattern: str, limit: int) -> None:
    """Delete files NAME-<number>.* in `folder` whose number exceeds `limit`: what a resumed or rolled-back run
    will write again (post-hoc EMA snapshots numbered by samples seen, sample grids by step)."""
    if not folder.is_dir():
        return
    for path in folder.glob(pattern):
        number = path.name.split(".")[0].rsplit("-", 1)[-1]
        if number.isdigit() and int(number) > limit:
            path.unlink()


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    write_text_atomic(run_dir / "config.toml", to_toml(cfg))


class JsonlLog:
    """Append-only JSON lines, readable by another process while the run goes on."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a resumed run re-does those steps exactly).

        A process killed while appending leaves its last line torn: that line is dropped (its step is re-done
        anyway). A broken line anywhere else was not written by this log, and is refused with its line number.
        """
        if not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        kept = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    break  # torn by a kill mid-write
                raise SteadydiffError(f"{self.path}, line {number}: not a JSON object ({exc.msg}); the file was "
                                      "changed by something other than steadydiff. Remove that line (or the file, "
                                      "losing the logged history) and run train again.") from None
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(ln + "\n" for ln in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()


class NullLog(JsonlLog):
    """The log of a process that writes nothing (ranks other than 0 of a distributed run)."""

    def truncate_after(self, step: int) -> None:
        pass

    def write(self, record: dict[str, Any]) -> None:
        pass
