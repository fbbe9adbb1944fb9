"""Sample metrics during training: how good the EMA model's samples are, measured as the run goes, on a
share of its wall time.

At a validation point the loop draws a fixed set of samples from the EMA weights (fixed per-sample seeds from
a stream of their own, a fixed cheap sampler setting) and scores them with `metrics.reference.Reference` against the
held-out data: the same metrics `steadydiff eval` reports (classifier Fréchet distance for digits and mnist,
mode coverage for toy mixtures, data-space Fréchet distance otherwise, MMD, precision/recall/density/coverage,
near-copies of training items). The seeds never change, so two evaluations differ because the model did, not
because fresh noise was drawn (common random numbers): the curve ranks checkpoints more reliably than
independent sample sets of the same size would, though its level keeps the offset of this one set of seeds.

Evaluation must not slow training much: an evaluation is skipped, and the skip logged, when it would bring
the time spent evaluating (validation, canaries, grids and these metrics) above `train.eval_budget` of the
wall time so far. Nothing here draws from a global random generator, so the training trajectory, and with it
exact resume, is the same whether the metrics run, are skipped or are off.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data import Dataset
from ..data.cond import CondSpec, draw_conditions, model_conditions
from ..data.normalise import Normaliser
from ..errors import SteadydiffError
from ..metrics.reference import RANKED, Reference, default_metric
from ..sampling import generate
from ..sampling import nfe as count_nfe
from .config import RunConfig
from .order import Stream, derive_seed

if TYPE_CHECKING:
    from ..diffusion import Denoiser

log = logging.getLogger("steadydiff")

# A training step runs the network forward and backward, and the backward pass costs about two forward
# passes (Kaplan et al. 2020, "C ≈ 6N" per token against 2N for the forward pass): one trained sample ≈ 3
# network evaluations. This prices the first evaluation before any has been timed.
FORWARDS_PER_TRAINED_SAMPLE = 3.0
FIRST_COST_MARGIN = 1.5  # the first estimate covers sampling only; scoring and building the reference add to it
SKIPPED = "eval_budget"  # metrics.jsonl's `sample_metrics_skipped` when the budget said no


def is_due(step: int, total_steps: int, every: int, val_every: int) -> bool:
    """Whether the validation at `step` (a multiple of `val_every`, or the last step) also scores samples: the
    first validation at or after each multiple of `every`. A function of the step alone, so a resumed run
    evaluates where an unbroken one would, whatever the two intervals are."""
    if every <= 0 or (step % val_every and step != total_steps):
        return False
    previous = (step - 1) // val_every * val_every  # the validation before this one
    return step // every > previous // every


def within_budget(eval_s: float, elapsed_s: float, cost_s: float, budget: float) -> bool:
    """Whether evaluation stays within `budget` of the wall time once an evaluation of `cost_s` has run."""
    return eval_s + cost_s <= budget * (elapsed_s + cost_s)


def rounded(value: Any) -> Any:
    """Plain JSON values, floats to 6 significant digits (non-finite ones to None), dicts and lists inside too."""
    if isinstance(value, dict):
        return {str(k): rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(f"{float(value):.6g}") if math.isfinite(value) else None
    return value


class SampleMetrics:
    """The in-training evaluation of one run: its reference (built at the first evaluation), seeds, settings
    and what the last evaluation cost. `evaluate(ema_net)` returns metrics.jsonl's `sample_metrics`."""

    def __init__(self, cfg: RunConfig, ds: Dataset, normaliser: Normaliser, device: torch.device,
                 cond: CondSpec | None = None, extra: torch.Tensor | None = None, cache: Path | None = None):
        tc = cfg.train
        self.cfg, self.ds, self.normaliser, self.device, self.cond = cfg, ds, normaliser, device, cond
        self.extra = extra  # a super-resolution run's low-resolution inputs, one per sample
        self.cache = cache  # where the run keeps a feature net trained on its data (Reference)
        self.n, self.sampler, self.steps = tc.sample_metrics_n, tc.sample_metrics_sampler, tc.sample_metrics_steps
        self.nfe = count_nfe(self.sampler, self.steps)
        self.seed = derive_seed(tc.seed, Stream.SAMPLE_METRICS)
        self.budget = tc.eval_budget
        self.reference: Reference | None = None
        self.unavailable: str | None = None  # why this data gets no sample metrics
        self.last_cost: float | None = None  # seconds of the last evaluation, without building the reference

    def expected_cost(self, samples_per_s: float) -> float:
        """Seconds the next evaluation should take: the last one's, or priced from the training throughput."""
        if self.last_cost is not None:
            return self.last_cost
        forwards_per_s = max(samples_per_s, 1e-9) * FORWARDS_PER_TRAINED_SAMPLE
        return FIRST_COST_MARGIN * self.n * self.nfe / forwards_per_s

    def allowed(self, eval_s: float, elapsed_s: float, samples_per_s: float) -> bool:
        """Whether an evaluation now keeps evaluation within the budget share of the wall time so far."""
        return within_budget(eval_s, elapsed_s, self.expected_cost(samples_per_s), self.budget)

    def ensure_reference(self) -> Reference | None:
        """The run's reference, built once; None (with one info line) when the data cannot have one."""
        if self.reference is None and self.unavailable is None:
            try:
                self.reference = Reference(self.ds, self.normaliser, self.n, cache=self.cache)
            except SteadydiffError as exc:
                self.unavailable = str(exc)
                log.info("sample metrics during training are off for this data: %s", exc)
        return self.reference

    @torch.no_grad()
    def evaluate(self, ema_net: Denoiser) -> dict[str, Any] | None:
        """Sample with the fixed seeds and score; None when the data has no usable held-out split."""

        t0 = time.perf_counter()
        ref = self.ensure_reference()
        if ref is None:
            return None
        t1 = time.perf_counter()
        values = None if self.cond is None else \
            draw_conditions(self.cond, self.n, self.seed, self.ds.conditions("train"))
        x = generate(ema_net, self.ds.item_shape, self.n, seed=self.seed, **self.cfg.sampling(ema_net.sigma_data),
                     steps=self.steps, sampler=self.sampler, device=self.device,
                     cond=None if values is None else torch.as_tensor(model_conditions(self.cond, values)),
                     extra=self.extra)
        labels = values if self.cond is not None and self.cond.kind == "class" else None
        metrics = ref.score(np.asarray(self.normaliser.inverse(x.numpy()), dtype=np.float32), labels=labels)
        t2 = time.perf_counter()
        self.last_cost = t2 - t1
        return {**rounded(metrics), "seconds": round(t2 - t0, 3)}

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """summary.json's account: the setting, the evaluations logged in metrics.jsonl (`records`) and those the
        budget skipped, the metric the best is chosen by, and what real data scores on it (the floor)."""
        done = [r["sample_metrics"] for r in records if isinstance(r.get("sample_metrics"), dict)]
        out: dict[str, Any] = {"sampler": self.sampler, "steps": self.steps, "nfe": self.nfe, "n": self.n,
                               "seed": self.seed, "eval_budget": self.budget, "evaluations": len(done),
                               "skipped": sum(SKIPPED == r.get("sample_metrics_skipped") for r in records)}
        seconds = [d["seconds"] for d in done if isinstance(d.get("seconds"), int | float)]
        if seconds:
            out["seconds_per_evaluation"] = round(sum(seconds) / len(seconds), 3)
        if self.reference is not None:
            metric = default_metric(self.reference)
            out.update(metric=metric, higher_is_better=RANKED[metric], space=self.reference.space,
                       real_data=rounded(self.reference.real_data))
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


def best_evaluation(records: list[dict[str, Any]], metric: str, higher_is_better: bool) -> dict[str, Any] | None:
    """The in-training evaluation with the best `metric` (ties: the later one) among metrics.jsonl's `records`,
    which hold exactly the steps of the run as it stands (resumes and rollbacks have truncated the file)."""
    best: tuple[float, int] | None = None
    value = None
    for record in records:
        v = (record.get("sample_metrics") or {}).get(metric)
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            continue
        key = (v if higher_is_better else -v, int(record["step"]))
        if best is None or key >= best:
            best, value = key, v
    if best is None:
        return None
    return {"metric": metric, "value": value, "step": best[1], "higher_is_better": higher_is_better}


__all__ = ["SKIPPED", "SampleMetrics", "best_evaluation", "is_due", "within_budget"]
