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


def curriculum_share(samples_seen: int, cfg: TrainConfig) -> float:
    """Share of the training σ distribution in use: its top quantiles first (high noise levels, the easier
    denoising tasks: Kim et al. 2024, "Denoising Task Difficulty-based Curriculum for Training Diffusion Models"),
    widening linearly to all of it over `sigma_curriculum_samples`."""
    if cfg.sigma_curriculum_samples <= 0:
        return 1.0
    progress = min(samples_seen / cfg.sigma_curriculum_samples, 1.0)
    return cfg.sigma_curriculum_start + (1 - cfg.sigma_curriculum_start) * progress


def weight_penalty(params: list[torch.nn.Parameter], l1: float, l2: float) -> torch.Tensor:
    """l1·Σ|w| + l2·Σw² over weight matrices and kernels (ndim ≥ 2): biases and gains stay free."""
    weights = [p for p in params if p.ndim >= 2]
    total = torch.zeros((), device=weights[0].device)
    if l1:
        total = total + l1 * torch.stack(torch._foreach_norm(weights, 1)).sum()
    if l2:
        total = total + l2 * torch.stack(torch._foreach_norm(weights, 2)).square().sum()
    return total


@torch.no_grad()
def clip_gradients(params: list[torch.nn.Parameter], max_norm: float, adaptive: float,
                   history: torch.Tensor | None) -> torch.Tensor:
    """Clip the global gradient norm at min(max_norm, adaptive × median of recent norms); return the norm before.

    Everything stays on the device: the clip factor is a tensor (no host synchronisation). `history` holds
    recent accepted norms (NaN where empty); with fewer than 10 of them only `max_norm` applies.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2)))
    limit = torch.tensor(max_norm if max_norm > 0 else math.inf, device=total.device)
    if adaptive > 0 and history is not None:
        known = torch.isfinite(history)
        median = torch.nanmedian(history)
        limit = torch.where(known.sum() >= 10, torch.minimum(limit, adaptive * median), limit)
    factor = (limit / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, factor)
    return total
