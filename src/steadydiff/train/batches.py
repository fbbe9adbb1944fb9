"""Training batches of streamed data (data.stream): read from disk, normalised, optionally ahead of the step.

`StreamedItems` stands for the tensor of normalised training items an in-memory run holds: indexed the same way,
it reads the rows it is asked for. `Reader` hands the loop the batch of a position in the data order
(`batch_indices`, a function of the seed and the samples seen), either read on the spot or prefetched by
`torch.utils.data.DataLoader` workers into pinned memory (data.workers). Either way the batch is the one an
in-memory run draws at that position, so resume and rollback stay exact: a request for another position than
the one prefetched next (a rollback, a resumed run) restarts the workers there.

Under torchrun each process trains on its share of the global batch (`rows`, World.shard): it reads only those
rows from disk, and the rest of the batch it hands the loop are zeros that no loss reads. The per-item work before
the split (augmentation, masks, window levels) treats every row alike and independently, so the share is what
reading the whole batch gives; the disk reads per process fall by the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..data.normalise import Normaliser
from ..data.stream import LazyItems, normalised_std
from .order import batch_indices


class StreamedItems:
    """The normalised training items of a streamed split, read on demand (see the module docstring)."""

    def __init__(self, items: LazyItems, norm: Normaliser):
        self.items, self.norm = items, norm

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.items.shape

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy() if idx.dim() else int(idx)
        return torch.from_numpy(np.asarray(self.norm.forward(self.items[idx]), dtype=np.float32))

    def std(self) -> float:
        """σ_data: the standard deviation of every normalised value, in two streamed passes."""
        return normalised_std(self.items, self.norm.forward)


class _Ahead(torch.utils.data.Dataset):
    """Batch k of the data order from sample `start` on: (its first sample's position, the items of its `rows`)."""

    def __init__(self, items: StreamedItems, seed: int, start: int, batch: int, count: int, rows: slice):
        self.items, self.seed, self.start, self.batch, self.count, self.rows = items, seed, start, batch, count, rows

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor]:
        pos = self.start + k * self.batch
        return pos, self.items[batch_indices(len(self.items), self.seed, pos, self.batch)[self.rows]]


class Reader:
    """The batch at a position of the data order, for the loop (see the module docstring)."""

    def __init__(self, items: StreamedItems, seed: int, batch: int, total_samples: int, workers: int = 0,
                 pin: bool = False, rows: slice | None = None):
        self.items, self.seed, self.batch, self.total = items, seed, batch, total_samples
        self.workers, self.pin = workers, pin
        self.rows = slice(0, batch) if rows is None else rows  # the rows of each batch this process reads
        self._it: Iterator[tuple[int, torch.Tensor]] | None = None
        self._next = -1
        self._last: tuple[int, torch.Tensor] | None = None  # a step may ask twice (calibration, then the step)

    def get(self, samples_seen: int, idx: np.ndarray) -> torch.Tensor:
        """The normalised items `idx`, which are the batch at `samples_seen` of the data order (rows outside
        `rows` zero)."""
        if self.workers == 0:
            return self._whole(self.items[idx[self.rows]])
        if self._last is not None and self._last[0] == samples_seen:
            return self._last[1]
        if self._it is None or self._next != samples_seen:
            self._restart(samples_seen)
        pos, part = next(self._it)
        if pos != samples_seen:  # the sequence is positional: never a batch of another position
            raise RuntimeError(f"prefetched batch at sample {pos}, asked for {samples_seen}")
        x = self._whole(part)
        self._next, self._last = pos + self.batch, (pos, x)
        return x

    def _whole(self, part: torch.Tensor) -> torch.Tensor:
        """This process's rows placed in a batch of zeros (the part itself where it is the whole batch)."""
        if len(part) == self.batch:
            return part
        x = part.new_zeros((self.batch, *part.shape[1:]))
        x[self.rows] = part
        return x

    def _restart(self, start: int) -> None:
        self.close()
        count = max(1, -(-(self.total - start) // self.batch) + 1)
        loader = torch.utils.data.DataLoader(
            _Ahead(self.items, self.seed, start, self.batch, count, self.rows), batch_size=None, shuffle=False,
            num_workers=self.workers, pin_memory=self.pin, prefetch_factor=4)
        self._it = iter(loader)
        self._next = start

    def close(self) -> None:
        """Stop the workers (they also stop when the reader is collected)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
