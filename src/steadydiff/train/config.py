"""Configuration of the training loop. Durations are counted in samples seen (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: Literal["adamw", "adam", "rmsprop"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_samples: int = 25_600  # linear LR warm-up
    lr_schedule: Literal["constant", "cosine", "inv-sqrt"] = "cosine"
    decay_samples: int = 100_000  # inv-sqrt: LR ∝ 1/sqrt(samples/decay_samples) past this point
    min_lr_ratio: float = 0.05  # cosine ends at lr × min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    ema_halflife_samples: int = 50_000  # EMA half-life (EDM's ema_halflife_kimg, in samples)
    ema_rampup: float = 0.1  # half-life ≤ rampup × samples seen, so early EMA is not stuck at init
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast for the backbone only
    seed: int = 0
    log_every: int = 50  # steps between metrics.jsonl lines
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    sample_every: int = 1000  # steps between sample grids (0: only at the end)
    val_every: int = 250  # steps between fixed-noise validation losses
    val_items: int = 128  # held-out items in the fixed validation set
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    device: str = "auto"  # auto: cuda when available, else cpu

    def check(self) -> None:
        positive = {"train.steps": self.steps, "train.batch_size": self.batch_size, "train.lr": self.lr,
                    "train.log_every": self.log_every, "train.checkpoint_every": self.checkpoint_every,
                    "train.ema_halflife_samples": self.ema_halflife_samples,
                    "train.keep_checkpoints": self.keep_checkpoints,
                    "train.val_every": self.val_every, "train.val_items": self.val_items,
                    "train.decay_samples": self.decay_samples}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.warmup_samples < 0 or self.sample_every < 0 or self.grad_clip < 0:
            raise ConfigError("train.warmup_samples, train.sample_every and train.grad_clip must be ≥ 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must lie in [0, 1), got {self.betas}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
