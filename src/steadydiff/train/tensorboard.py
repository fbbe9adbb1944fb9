"""TensorBoard mirror of metrics.jsonl (`train.tensorboard = true`): every number of every logged line, written
to RUN/tensorboard/ through `torch.utils.tensorboard.SummaryWriter` at the line's step.

Tags follow the JSON: a top-level number keeps its name (`loss`, `val_loss_ema`, `grad_norm`, `lr`, ...), a
nested one joins its keys with "/" (`sample_metrics/fd_classifier`, `guard/rollbacks`,
`weight_norms/blocks`) and a list of numbers gets its index (`loss_bins/0` is the lowest σ bin, as
`loss_bins[0]` in metrics.jsonl). Text, booleans and nulls are not scalars and are left out.

metrics.jsonl is cut back when a run resumes from a checkpoint and when the stability guard rolls back; the
event files are written once and never edited, so the writer is reopened with `purge_step`: TensorBoard then
hides every event of a later step written before it, and the curves show the run as it stands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import TENSORBOARD_INSTALL

_EVENT_FILE = re.compile(r"^events\.out\.tfevents\.(\d+)\.")


def scalars(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number in a metrics.jsonl record, `step` aside (it is the x axis)."""
    for key, value in record.items():
        if not prefix and key == "step":
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from scalars(value, tag + "/")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                if isinstance(v, int | float) and not isinstance(v, bool):
                    yield f"{tag}/{i}", float(v)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield tag, float(value)


def _wait_for_a_later_name(log_dir: Path) -> None:
    """TensorBoard reads a run's event files in the order of their names, which begin with the whole second they
    were opened in and then compare host, process id and a counter as text. A purge acts only on the events read
    before it, so a new file must come later in that order than every earlier one: when one was opened in this
    same second, wait for the next."""
    stamps = [int(m.group(1)) for p in log_dir.glob("events.out.tfevents.*") if (m := _EVENT_FILE.match(p.name))]
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)


class TensorBoardLog:
    """Writes metrics.jsonl records as scalars; `truncate_after(step)` mirrors JsonlLog's."""

    def __init__(self, log_dir: Path, *, step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(f"train.tensorboard=true needs the tensorboard package: {TENSORBOARD_INSTALL}") from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = None
        self._open(step)

    def _open(self, step: int) -> None:
        earlier = any(self.log_dir.glob("events.out.tfevents.*"))
        if earlier:
            _wait_for_a_later_name(self.log_dir)
        # Lines after `step` are gone from metrics.jsonl (or were never written): hide their events too.
        self.writer = self._writer_class(str(self.log_dir), purge_step=step + 1 if earlier else None)

    def write(self, record: Mapping[str, Any]) -> None:
        step = int(record["step"])
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # readable while the run goes on; a crash loses nothing already logged

    def truncate_after(self, step: int) -> None:
        """The run went back to `step` (a rollback): reopen so that later steps disappear from the curves."""
        self.writer.close()
        self._open(step)

    def close(self) -> None:
        self.writer.close()


__all__ = ["TensorBoardLog", "scalars"]
