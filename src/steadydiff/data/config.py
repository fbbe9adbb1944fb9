"""Configuration of the data layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from .table import parse_columns

DEFAULT_AUGMENT = 0.12


@dataclass
class DataConfig:
    """Where the data comes from and how it is prepared.

    `source` is a built-in name (`toy:grid25`, `toy:ring8`, `toy:swissroll`, `digits`, `mnist`, `iris`,
    `wine`) or a path: a folder of PNG/JPEG images, a `.npy`/`.npz` array file, or a `.csv` or `.parquet` table.
    """

    source: str = "digits"
    # How an array's shape is read: auto takes (N, D) as vectors, (N, C, L) with C ≤ 16 and L ≥ 16 as series
    # (channels × time steps), other 3-D and 4-D arrays as images; series, image or vector say so explicitly
    # ((N, L) with series: one channel).
    kind: Literal["auto", "vector", "series", "image"] = "auto"
    # One long series (a CSV's rows or an array's first axis are the time steps, its columns the channels) is cut
    # into windows of `window` steps, `stride` apart (0: 1); the held-out windows come from the last `holdout`
    # of the time steps, so none overlaps a training window. 0: the items are series already.
    window: int = 0
    stride: int = 0
    image_size: int = 32  # folders of images are resized to image_size × image_size
    channels: Literal["auto", "grey", "rgb"] = "auto"  # auto: RGB if any image has colour
    hflip: bool = False  # random horizontal flips of training images (never of held-out data)
    # Non-leaking augmentation of images (data.augment.augment): the probability of each of flip, turn and
    # shift per training image. None: 0.12 (EDM's CIFAR-10 value) for a new image run, 0 for vectors and
    # for runs made before it existed; resolved when the run starts and written into its config.
    augment: float | None = None
    holdout: float = 0.1  # held-out share: a fraction (< 1) or a count (≥ 1) of items
    split_seed: int = 0  # the held-out split depends on this alone, never on the training seed
    toy_samples: int = 20000  # how many points the built-in 2-D sets draw
    npz_key: str | None = None  # which array of a .npz file (needed when it holds several; x beside y: y conditions)
    # A pretrained text encoder for captions, "MODULE:ATTR": a callable mapping a list of strings to an (N, K) array;
    # each distinct caption is embedded once and the run is conditional on the vectors. None: one is trained.
    text_encoder: str | None = None
    label_column: str | None = None  # a CSV column holding each row's class (numbers or text): the condition
    # A table's column types where inference (data/table.py) should not decide, "COLUMN=TYPE,...", each TYPE one of
    # numeric, integer, boolean, categorical: e.g. "species=categorical,year=integer". Whole numbers of few values
    # (a class written 0/1/2) are inferred categorical; declare them integer to keep them one ordered number, kept in
    # range. A categorical TYPE may name its encoding, "zip=categorical:bits" or "class=categorical:one_hot" (else
    # one-hot up to table.BITS_ABOVE categories, analog bits above). None: every column inferred.
    columns: str | None = None
    # An image file that cannot be read: "error" stops with its name, "skip" leaves it out (listed in dataset.json
    # and counted in the summary).
    bad_files: Literal["error", "skip"] = "error"
    # Missing values (NaN, or empty / NA cells of a CSV) in vectors and series: "learn" trains around them — the
    # loss counts observed entries only and the run is mask-conditioned (train.masks), so `impute` fills them —
    # "error" refuses them. Images never take NaN; Inf is always refused.
    missing: Literal["learn", "error"] = "learn"
    # Data larger than memory (data/stream.py): "on" reads an image folder through a preprocessed uint8 cache on
    # disk (data/cache.py) and a .npy file row by row, holding only the batches in memory; "off" reads everything
    # into memory; "auto" streams a folder or .npy whose items would take more than 2 GiB as float32.
    stream: Literal["auto", "on", "off"] = "auto"
    cache_dir: str | None = None  # the image cache's root; None: $XDG_CACHE_HOME/steadydiff/images or ~/.cache/...
    # DataLoader worker processes that read and normalise streamed batches ahead of the step (pinned memory on a
    # GPU). None: 0 on a CPU (a batch read costs little beside the step), 2 on a GPU; in-memory data uses none.
    workers: int | None = None

    def resolved_augment(self, kind: str, fresh: bool) -> float:
        """data.augment, or its default: 0.12 for images in a new run, else 0 (see the field)."""
        if self.augment is not None:
            return self.augment
        return DEFAULT_AUGMENT if kind == "image" and fresh else 0.0

    def check(self) -> None:
        if not self.source:
            raise ConfigError("data.source is empty: give a built-in name (e.g. digits) or a path")
        parse_columns(self.columns)  # raises on an unknown type or a malformed item
        if self.missing not in ("learn", "error"):
            raise ConfigError(f"data.missing must be 'learn' or 'error', got {self.missing!r}")
        if self.image_size < 4:
            raise ConfigError(f"data.image_size must be at least 4, got {self.image_size}")
        if self.holdout < 0:
            raise ConfigError(f"data.holdout must be ≥ 0, got {self.holdout}")
        if self.window < 0 or self.window == 1 or self.stride < 0:
            raise ConfigError(f"data.window must be 0 (off) or at least 2 steps and data.stride ≥ 0, got window "
                              f"{self.window}, stride {self.stride}")
        if self.window and self.kind not in ("auto", "series"):
            raise ConfigError(f"data.window cuts a long series into windows; data.kind={self.kind} is not a series")
        if self.augment is not None and not 0 <= self.augment <= 1:
            raise ConfigError(f"data.augment is a probability in [0, 1], got {self.augment}")
        if self.stream not in ("auto", "on", "off"):
            raise ConfigError(f"data.stream must be 'auto', 'on' or 'off', got {self.stream!r}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"data.workers must be ≥ 0 (or unset for the default), got {self.workers}")
        if self.toy_samples < 2:
            raise ConfigError(f"data.toy_samples must be ≥ 2, got {self.toy_samples}")
