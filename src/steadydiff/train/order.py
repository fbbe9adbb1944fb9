"""Deterministic randomness for training: everything random is derived from (seed, what, when).

EDM2 re-derives its seed from (seed, rank, samples seen) so a resumed run draws exactly what an
unbroken one would; we do the same for the data order, the noise and dropout, so no RNG state needs
saving and a change of batch size keeps the data order.
"""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache

import numpy as np

from ..sampling.noise import derive_seed


class Stream(IntEnum):
    """The run's named random streams: `derive_seed(seed, Stream.X, step)` keeps each independent of the others,
    so adding a draw to one never shifts another (and evaluation never shifts training)."""

    INIT = 0  # the initial weights
    NOISE = 1  # σ and noise of each training step
    DROPOUT = 2  # dropout masks of each training step
    HFLIP = 3  # plain mirror images (data.hflip)
    VALIDATION = 4  # the fixed validation noise (derived from data.split_seed)
    SAMPLE_METRICS = 5  # the seeds of the in-training sample set
    AUGMENT = 6  # non-leaking augmentation (data.augment)
    COND_DROPOUT = 7  # which items' conditions are dropped (train.cond_dropout)
    MASKS = 8  # the masks of known values (train.masks)
    SUMMARY = 0x5EE  # the end-of-run summary's samples
    DATA_ORDER = 0x0DA7A  # each epoch's permutation


@lru_cache(maxsize=4)
def epoch_permutation(n_items: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng(derive_seed(seed, Stream.DATA_ORDER, epoch)).permutation(n_items)


def batch_indices(n_items: int, seed: int, start: int, batch_size: int) -> np.ndarray:
    """Item indices for the batch that begins at sample `start` of an endless sequence of epochs,
    each a fresh permutation; a batch may run over an epoch's end into the next."""
    out = []
    pos = start
    while pos < start + batch_size:
        epoch, offset = divmod(pos, n_items)
        take = min(start + batch_size - pos, n_items - offset)
        out.append(epoch_permutation(n_items, seed, epoch)[offset:offset + take])
        pos += take
    return np.concatenate(out)
