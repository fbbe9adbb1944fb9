"""Optimisers and the learning-rate schedule, both counted in samples seen."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    # The fused kernels update all parameters in one pass (CPU and CUDA); the per-parameter loop costs
    # several percent of a small model's step on a CPU.
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.betas[1], weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw, adam or rmsprop")


def lr_at(samples_seen: int, cfg: TrainConfig, total_samples: int) -> float:
    """LR after `samples_seen` samples: linear warm-up, then constant, cosine or inverse-sqrt decay.

    - cosine (Loshchilov & Hutter 2017) from lr down to lr·min_lr_ratio at `total_samples`;
    - inv-sqrt (Karras et al. 2024, Eq. 67): lr / sqrt(max(samples / decay_samples, 1)).
    """
    warm = min(1.0, samples_seen / cfg.warmup_samples) if cfg.warmup_samples > 0 else 1.0
    if cfg.lr_schedule == "constant":
        decay = 1.0
    elif cfg.lr_schedule == "cosine":
        span = max(total_samples - cfg.warmup_samples, 1)
        progress = min(max((samples_seen - cfg.warmup_samples) / span, 0.0), 1.0)
        decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    elif cfg.lr_schedule == "inv-sqrt":
        decay = 1.0 / math.sqrt(max(samples_seen / cfg.decay_samples, 1.0))
    else:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose constant, cosine or inv-sqrt")
    return cfg.lr * warm * decay
