"""Files written whole or not at all: a reader (another process, a resumed run, a crash) never sees half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to (same suffix, so writers that go by it keep working; unique to
    this process, so two writers never share it), renamed onto `path` when the block ends and removed if it
    raises. The rename is atomic on one file system (POSIX rename, Windows MoveFileEx)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_npy_atomic(path: str | Path, array: object) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array))
