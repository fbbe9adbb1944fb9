"""Per-sample randomness: a sample depends on its seed only, never on its batch size or position.

Following EDM2's per-seed generators, every row of a batch owns a torch.Generator seeded with that
row's seed. Sampling seeds 0…11 at once or in chunks of 5 draws the very same numbers for each seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def sample_seeds(seed: int, n: int) -> list[int]:
    """Per-sample seeds: sample i of a call with `seed` depends on (seed, i) alone."""
    return [derive_seed(seed, i) for i in range(n)]


class SeededNoise:
    """Callable `noise(like) -> Tensor`: standard normal noise shaped like `like`, row i from seeds[i].

    Each call advances every row's generator, so successive calls give fresh noise in a fixed order.
    The numbers are drawn in float32 on `device` (CPU by default, which gives the same numbers on any
    accelerator) and then moved to `like`'s device and dtype.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self._generators = [torch.Generator(device=self.device).manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.seeds)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        if like.dim() == 0 or like.shape[0] != len(self.seeds):
            asked = "a 0-d tensor" if like.dim() == 0 else f"{like.shape[0]} rows"
            raise ValueError(f"SeededNoise holds {len(self.seeds)} seeds but was asked for {asked}")
        if not self.seeds:
            return torch.empty_like(like)
        row_shape = like.shape[1:]
        draws = [
            torch.randn(row_shape, generator=g, dtype=torch.float32, device=self.device)  # row i: seeds[i]
            for g in self._generators
        ]
        return torch.stack(draws).to(device=like.device, dtype=like.dtype)
