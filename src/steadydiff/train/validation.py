"""A fixed validation loss: fixed held-out items, fixed noise, fixed σ grid, so the curve moves only
when the model does (the training loss mixes in fresh σ and noise every step and says little)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion import DenoisingLoss, sample_sigma
from ..sampling.guidance import null_like
from .distributed import SINGLE, World


def sigma_grid(loss: DenoisingLoss, sigma_data: float, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres, inner edges) of `bins` equal-probability bins of the training σ distribution."""
    kw = dict(sigma_data=sigma_data, p_mean=loss.p_mean, p_std=loss.p_std)
    u_centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    u_edges = torch.arange(1, bins, dtype=torch.float64) / bins
    centres = sample_sigma(bins, loss.noise, u=u_centres, **kw)
    edges = sample_sigma(bins - 1, loss.noise, u=u_edges, **kw)
    return centres, edges


@dataclass
class FixedValidation:
    x: torch.Tensor  # (M·K, ...) items, each repeated for every σ of the grid
    sigma: torch.Tensor  # (M·K,)
    noise: torch.Tensor  # (M·K, ...)
    bins: int
    cond: torch.Tensor | None = None  # (M·K, ...) the items' conditions, as the network reads them
    shuffled: torch.Tensor | None = None  # the same conditions given to other items (a fixed permutation)
    extra: torch.Tensor | None = None  # (M·K, ...) the network's extra inputs (train.lowres: the low-res items)
    target: torch.Tensor | None = None  # (M·K, ...) 1 where an entry is observed (data with missing values)
    world: World = SINGLE  # the processes of a distributed run: each evaluates its share of the rows

    @classmethod
    def build(cls, items: torch.Tensor, loss: DenoisingLoss, sigma_data: float, *, bins: int, seed: int,
              cond: torch.Tensor | None = None, extra: torch.Tensor | None = None,
              target: torch.Tensor | None = None, world: World = SINGLE) -> FixedValidation:
        centres, _ = sigma_grid(loss, sigma_data, bins)
        m = items.shape[0]
        x = items.repeat_interleave(bins, dim=0)
        sigma = centres.repeat(m).to(items.device)
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(x.shape, generator=g).to(items.device)
        shuffled = None
        if cond is not None:
            perm = torch.randperm(m, generator=g).to(cond.device)
            shuffled = cond[perm].repeat_interleave(bins, dim=0)
            cond = cond.repeat_interleave(bins, dim=0)
        extra = None if extra is None else extra.repeat_interleave(bins, dim=0)
        target = None if target is None else target.repeat_interleave(bins, dim=0)
        return cls(x=x, sigma=sigma, noise=noise, bins=bins, cond=cond, shuffled=shuffled, extra=extra,
                   target=target, world=world)

    @torch.no_grad()
    def evaluate(self, denoiser: torch.nn.Module, loss: DenoisingLoss, batch_size: int = 1024,
                 conditions: str = "given") -> dict:
        """The loss per σ-bin and its mean; for a conditional run with `conditions` "given" (the items' own),
        "null" (none: the unconditional branch) or "shuffled" (other items'), and per class for class ids."""
        cond = {"given": self.cond, "shuffled": self.shuffled,
                "null": None if self.cond is None else null_like(self.cond)}[conditions]
        per = []
        mine = self.world.rows(len(self.x))
        for s in range(mine.start, mine.stop, batch_size):
            sl = slice(s, min(s + batch_size, mine.stop))
            value, _ = loss(denoiser, self.x[sl], generator=None, sigma=self.sigma[sl], n=self.noise[sl],
                            cond=None if cond is None else cond[sl],
                            extra=None if self.extra is None else self.extra[sl],
                            target=None if self.target is None else self.target[sl])
            per.append(value)
        local = torch.cat(per) if per else self.x.new_zeros(0)
        per_sample = self.world.gather_rows(local, len(self.x)).double().reshape(-1, self.bins)
        by_bin = per_sample.mean(0)
        out = {"loss": float(by_bin.mean()), "bins": [round(float(v), 6) for v in by_bin]}
        if self.cond is not None and self.cond.dim() == 1 and not self.cond.dtype.is_floating_point and \
                conditions == "given":
            labels = self.cond[::self.bins].cpu()
            item_loss = per_sample.mean(1).cpu()
            out["classes"] = {int(k): round(float(item_loss[labels == k].mean()), 6) for k in labels.unique()}
        return out
