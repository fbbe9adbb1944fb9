"""The plain-language verdict: converged? diverging? memorising? mode collapse?

Pure functions on numbers. Each returns a `Verdict` whose text states the figure it rests on, so a reader
can disagree with the threshold rather than with a hidden rule. The thresholds:

- converged: over the last 20 % of training (at least 4 validations), the fixed validation loss (EMA
  weights) changes by no more than its noise allows: |change of a straight-line fit| ≤ max(2 × the fit's
  standard error, 1 % of the loss).
- diverging: the guard stopped the run; or the raw validation loss ends ≥ 1.5× its best; or it ends
  ≥ 1.1× its best and rises beyond its noise over the last 20 %; or the last loss is not finite; or a
  rollback happened in the last 20 % of the steps. Rollbacks earlier that the run recovered from are named
  but are not divergence.
- memorising: the share of samples closer to a training item than 1/3 of the median training-set
  nearest-neighbour distance is ≥ 2× held-out real data's share and at least 5 points above it.
- mode collapse: on data with known modes, modes without samples while most samples (≥ 50 %) sit on a mode;
  otherwise the mean nearest-neighbour distance among samples below 0.5× that among as many real items.
- close to real data: the run's main distance (summary.json) against real data's floor at the same number of
  items: "yes" within the floor's noise (2 × its spread over draws of real items for FD, 2 standard errors
  of the difference for KID), "no" above it (an alarm beyond 2× the floor), "unclear" below it beyond the
  noise — no model beats real data, so the distance misleads there (e.g. pixel-space FD rewards blur).
- past its best: the sample metric measured during training (the same seeds each time) ends worse than its
  best value by more than max(20 % of it, 3 × the median change between consecutive evaluations), at least 3
  evaluations logged: an earlier model was better by that metric. The best of several noisy values is biased
  towards luck, and one fixed set of seeds has its own offset: on the default digits run the classifier FD of
  the in-training set rose 17 % from its best while other seed sets scored the same checkpoints alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..metrics.reference import against_floor, own_error

Answer = Literal["yes", "no", "unclear"]

TAIL = 0.2  # the share of training the "recent" judgements look at
MIN_TAIL_POINTS = 4
FLAT_REL = 0.01  # a change below 1 % of the loss is flat whatever the noise
DIVERGE_RATIO = 1.5  # ends this far above its best: diverged, trend or not
RISE_RATIO = 1.1  # ends this far above its best and still rising: diverging
COPY_FACTOR, COPY_MARGIN = 2.0, 0.05
HIGH_QUALITY_MIN = 0.5
DIVERSITY_MIN = 0.5
PAST_BEST_REL = 0.20  # a sample metric more than this much worse than its best (relative) ...
PAST_BEST_JITTER = 3.0  # ... and by more than this many median changes between consecutive evaluations
MIN_SAMPLE_EVALS = 3
FAR_FROM_FLOOR = 2.0  # a distance beyond this many times real data's floor is an alarm


@dataclass(frozen=True)
class Verdict:
    question: str  # e.g. "Converged?"
    answer: Answer
    text: str  # plain language, with the number it rests on
    alarm: bool  # True when the answer is bad news (drives the colour)


@dataclass(frozen=True)
class Trend:
    """A straight line fitted to the last part of a curve."""

    change: float  # fitted value at the window's end minus at its start
    stderr: float  # standard error of `change`
    level: float  # mean value in the window
    n: int  # points in the window

    @property
    def tolerance(self) -> float:
        return max(2.0 * self.stderr, FLAT_REL * abs(self.level))

    @property
    def direction(self) -> Literal["flat", "falling", "rising"]:
        if abs(self.change) <= self.tolerance:
            return "flat"
        return "falling" if self.change < 0 else "rising"

    def describe(self) -> str:
        rel = 100 * self.change / abs(self.level) if self.level else float("nan")
        tol = 100 * self.tolerance / abs(self.level) if self.level else float("nan")
        return f"moved {rel:+.1f}% over the last {self.n} validations (tolerance ±{tol:.1f}%)"


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def tail_trend(x: Sequence[float], y: Sequence[float], *, tail: float = TAIL,
               min_points: int = MIN_TAIL_POINTS) -> Trend | None:
    """A line fitted to the points in the last `tail` of the x range (at least `min_points` of them);
    None when there are too few points to judge."""
    xa, ya = _finite_pairs(x, y)
    if len(xa) < min_points + 1:  # the window must leave something before it
        return None
    start = xa[-1] - tail * (xa[-1] - xa[0])
    inside = xa >= start
    if inside.sum() < min_points:
        inside = np.zeros(len(xa), bool)
        inside[-min_points:] = True
    wx, wy = xa[inside], ya[inside]
    sxx = float(((wx - wx.mean()) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float(((wx - wx.mean()) * (wy - wy.mean())).sum() / sxx)
    resid = wy - (wy.mean() + slope * (wx - wx.mean()))
    noise = float(np.sqrt((resid ** 2).sum() / max(len(wx) - 2, 1)))
    span = float(wx[-1] - wx[0])
    return Trend(change=slope * span, stderr=noise * span / math.sqrt(sxx), level=float(wy.mean()), n=len(wx))


def converged(x: Sequence[float], val: Sequence[float], *, what: str = "fixed validation loss") -> Verdict:
    """Flat over the last 20 % of training within its noise."""
    q = "Converged?"
    trend = tail_trend(x, val)
    if trend is None:
        n = len(_finite_pairs(x, val)[0])
        return Verdict(q, "unclear", f"too few validations to judge ({n}; need {MIN_TAIL_POINTS + 1})", False)
    if trend.direction == "flat":
        return Verdict(q, "yes", f"the {what} {trend.describe()}: flat within its noise", False)
    if trend.direction == "falling":
        return Verdict(q, "no", f"the {what} {trend.describe()}: still improving, training longer should help",
                       False)
    return Verdict(q, "no", f"the {what} {trend.describe()}: rising (see Diverging?)", True)


def diverging(x: Sequence[float], val: Sequence[float], *, steps: Sequence[int] = (), last_step: int = 0,
              incidents: Sequence[dict[str, Any]] = (), stopped: str | None = None,
              last_loss: float | None = None, train_x: Sequence[float] = (),
              train_loss: Sequence[float] = ()) -> Verdict:
    """Validation rising, a non-finite loss, or the stability guard's rollbacks and stop.

    A validation loss that rises while the training loss (`train_x`, `train_loss`) still falls is overfitting,
    not instability: it is named as such (answer "no", with the alarm raised).
    """
    q = "Diverging?"
    rollbacks = [int(r.get("step", 0)) for r in incidents if r.get("action") == "rollback"]
    stops = [r for r in incidents if r.get("action") == "stop"]
    if stopped:
        return Verdict(q, "yes", f"the stability guard stopped the run: {stopped}", True)
    if stops:
        return Verdict(q, "yes", f"the stability guard stopped the run at step {stops[-1].get('step', '?')} after "
                       f"{len(rollbacks)} rollback(s): {stops[-1].get('outcome', 'recovery failed')}", True)
    if last_loss is not None and not math.isfinite(last_loss):
        return Verdict(q, "yes", f"the last logged training loss is {last_loss}", True)
    xa, ya = _finite_pairs(x, val)
    raw = np.asarray(val, dtype=np.float64)
    if len(raw) and not math.isfinite(raw[-1]):
        return Verdict(q, "yes", f"the last validation loss is {raw[-1]}", True)
    recent = [s for s in rollbacks if last_step and s >= (1 - TAIL) * last_step]
    if recent:
        return Verdict(q, "yes", f"{len(recent)} rollback(s) by the stability guard in the last 20% of the steps "
                       f"(last at step {recent[-1]}): the run is unstable", True)
    earlier = (f"; it recovered from {len(rollbacks)} earlier rollback(s) (last at step {rollbacks[-1]})"
               if rollbacks else "")
    if len(ya) < 2:
        return Verdict(q, "unclear", "too few validations to judge" + earlier, bool(rollbacks))
    best_i = int(np.argmin(ya))
    ratio = float(ya[-1] / ya[best_i]) if ya[best_i] > 0 else float("inf")
    where = f" at step {int(steps[best_i])}" if len(steps) == len(ya) else ""
    now = f"the raw validation loss ends at {ratio:.2f}× its best ({ya[best_i]:.4g}{where})"
    trend = tail_trend(xa, ya)
    rising = ratio >= DIVERGE_RATIO or (ratio >= RISE_RATIO and trend is not None and trend.direction == "rising")
    if not rising:
        return Verdict(q, "no", now + earlier, False)
    if trend is not None and trend.direction == "rising":
        now = f"{now} and {trend.describe()}"
    train_trend = tail_trend(train_x, train_loss) if len(train_loss) else None
    if train_trend is not None and train_trend.direction == "falling":
        return Verdict(q, "no", f"{now}, while the training loss still falls: overfitting rather than instability "
                       "(see Memorising?)" + earlier, True)
    return Verdict(q, "yes", now + earlier, True)


def memorising(copy_fraction: float | None, baseline: float | None, *, n_samples: int | None = None) -> Verdict:
    """Near-copies of training items well above the share real held-out items have."""
    q = "Memorising?"
    if copy_fraction is None or baseline is None or not math.isfinite(copy_fraction):
        return Verdict(q, "unclear", "no near-copy fraction with a held-out baseline is available", False)
    of = f" of {n_samples} samples" if n_samples else " of samples"
    figures = (f"{100 * copy_fraction:.1f}%{of} are near-copies of a training item, against "
               f"{100 * baseline:.1f}% of held-out real items")
    if copy_fraction >= COPY_FACTOR * baseline and copy_fraction >= baseline + COPY_MARGIN:
        return Verdict(q, "yes", figures + ": the model reproduces its training data", True)
    return Verdict(q, "no", figures, False)


def mode_collapse(*, modes_covered: int | None = None, modes_total: int | None = None,
                  high_quality: float | None = None, smallest_share: float | None = None,
                  diversity_ratio: float | None = None) -> Verdict:
    """Missed modes on data whose modes are known; else sample diversity against real data's."""
    q = "Mode collapse?"
    if modes_covered is not None and modes_total:
        hq = f"{100 * high_quality:.1f}%" if high_quality is not None else "an unknown share"
        if high_quality is not None and high_quality < HIGH_QUALITY_MIN:
            return Verdict(q, "unclear", f"{modes_covered} of {modes_total} modes receive samples, but only {hq} of "
                           "samples lie within 3 std of a mode: the model has not learnt the data yet", True)
        if modes_covered >= modes_total:
            small = (f"; the smallest mode gets {100 * smallest_share:.1f}% of samples (even: "
                     f"{100 / modes_total:.1f}%)" if smallest_share is not None else "")
            return Verdict(q, "no", f"all {modes_total} modes receive samples ({hq} of samples sit on a mode){small}",
                           False)
        return Verdict(q, "yes", f"only {modes_covered} of {modes_total} modes receive samples ({hq} of samples "
                       "sit on a mode)", True)
    if diversity_ratio is not None and math.isfinite(diversity_ratio):
        figures = (f"the mean nearest-neighbour distance among samples is {diversity_ratio:.2f}× that among as "
                   "many real items")
        if diversity_ratio < DIVERSITY_MIN:
            return Verdict(q, "yes", figures + ": samples are far less diverse than the data", True)
        return Verdict(q, "no", figures, False)
    return Verdict(q, "unclear", "no mode statistics or diversity figure is available", False)


def past_best(steps: Sequence[int], values: Sequence[float], *, metric: str, higher_is_better: bool,
              checkpoint: str | None = None) -> Verdict:
    """The in-training sample metric ends clearly worse than its best: a better model lies earlier in the run.

    `checkpoint`: the kept checkpoint of the best step, if any (summary.json's best_sample_metric)."""
    q = "Past its best?"
    pairs = [(int(s), float(v)) for s, v in zip(steps, values, strict=False)
             if isinstance(v, int | float) and math.isfinite(v)]
    if len(pairs) < MIN_SAMPLE_EVALS:
        return Verdict(q, "unclear", f"{len(pairs)} in-training sample evaluation(s) of {metric} logged; need "
                       f"{MIN_SAMPLE_EVALS} (train.sample_metrics_every, within train.eval_budget)", False)
    sign = -1.0 if higher_is_better else 1.0  # > 0: worse
    best_step, best = min(pairs, key=lambda p: (sign * p[1], -p[0]))
    last_step, last = pairs[-1]
    if best_step == last_step:
        return Verdict(q, "no", f"{metric} is at its best at the last evaluation (step {last_step:,}: {best:.4g})",
                       False)
    worse = sign * (last - best)
    jitter = float(np.median(np.abs(np.diff([v for _, v in pairs]))))
    tolerance = max(PAST_BEST_REL * abs(best), PAST_BEST_JITTER * jitter)
    where = (f"{metric} was best at step {best_step:,} ({best:.4g}); at the last evaluation (step {last_step:,}) it "
             f"is {last:.4g}, {abs(last - best):.3g} worse (margin {tolerance:.3g})")
    if worse > tolerance:
        kept = f"; checkpoint {checkpoint} is kept" if checkpoint else "; no checkpoint of that step is kept"
        return Verdict(q, "yes", f"{where}: an earlier model samples better by this metric{kept}", True)
    return Verdict(q, "no", f"{where}: within the evaluations' jitter", False)

__all__ = ["Trend", "Verdict", "close_to_real", "converged", "diverging", "gradient_reading", "loss_reading",
           "memorising", "mode_collapse", "nearest_reading", "past_best", "sample_metric_reading", "tail_trend"]


def close_to_real(quality: dict[str, Any]) -> Verdict:
    """The main distance of summary.json's samples against real data's floor at the same number of items."""
    q = "Close to real data?"
    metric, real = quality.get("metric"), quality.get("real_data") or {}
    if metric is None or metric == "high_quality" or not isinstance(quality.get(metric), int | float):
        return Verdict(q, "unclear", "no distance to real data in summary.json" +
                       (" (known modes: see mode collapse)" if metric == "high_quality" else ""), False)
    value = float(quality[metric])
    where, text = against_floor(metric, value, real, own_error(quality, metric))
    floor = real.get(metric)
    if where == "at":
        return Verdict(q, "yes", f"{metric} {text}", False)
    if where == "above":
        far = floor is not None and floor > 0 and value > FAR_FROM_FLOOR * floor
        return Verdict(q, "no", f"{metric} {text}" + (": far from real data" if far else ""), far)
    return Verdict(q, "unclear", f"{metric} {text}", where == "below")


NN_CLOSE, NN_FAR = 0.7, 1.3  # samples' median distance to the training set against held-out items': the band "alike"


def nearest_reading(sample_median: float | None, heldout_median: float | None) -> str:
    """What the samples' median distance to their nearest training item says, read against held-out real
    items' (fresh data from the same distribution): closer is copying, further is being off the data."""
    if sample_median is None or heldout_median is None or not heldout_median > 0:
        return "No held-out items to read the samples' distances against."
    r = sample_median / heldout_median
    if r < NN_CLOSE:
        return (f"Samples sit closer to a training item than fresh real data does ({r:.2f}× the held-out median): "
                "a sign of copying; the near-copy share above says how many.")
    if r > NN_FAR:
        return (f"Samples sit further from every training item than fresh real data does ({r:.2f}× the held-out "
                "median): not copies, but off the data — blurred, noisy or unlike any training item; the quality "
                "figures say how far.")
    return (f"Samples sit as close to the training items as fresh real data does ({r:.2f}× the held-out median, "
            f"within {NN_CLOSE:g}–{NN_FAR:g}×): no sign of copying, nor of drifting off the data.")


# Readings: one sentence under each panel of the report, stating what its curve says in numbers.
TREND_WORDS = {"flat": "settled", "falling": "still improving", "rising": "rising again"}
CLIPPED_MOST = 0.5  # above this share of logged steps clipped, clipping rather than the LR sets the step size


def loss_reading(steps: Sequence[float], values: Sequence[float], *,
                 what: str = "fixed validation loss (EMA weights)") -> str:
    """Where the loss curve started and ended, its lowest point, and its trend over the last 20 % of training."""
    xa, ya = _finite_pairs(steps, values)
    if len(xa) < 2:
        return f"Too few values of the {what} ({len(xa)}) to read its curve yet."
    a, z = float(ya[0]), float(ya[-1])
    text = f"The {what} went from {a:.4g} (step {int(xa[0]):,}) to {z:.4g} (step {int(xa[-1]):,}), " \
           f"{100 * (z - a) / a:+.0f}%" if a else f"The {what} went from {a:.4g} to {z:.4g}"
    i = int(np.argmin(ya))
    if i != len(ya) - 1 and ya[i] > 0:
        text += f"; its lowest was {float(ya[i]):.4g} at step {int(xa[i]):,} ({z / float(ya[i]):.2f}× that at the end)"
    trend = tail_trend(xa, ya)
    if trend is not None:
        text += f"; it {trend.describe()}: {TREND_WORDS[trend.direction]}"
    return text + "."


def gradient_reading(steps: Sequence[float], grad_norms: Sequence[float], clip: float | None) -> str:
    """The gradient norm before clipping in numbers: its typical size early and late, its largest excursion, and
    how often it was above the clipping norm (then the clip, not the LR, set the size of the step)."""
    xa, ga = _finite_pairs(steps, grad_norms)
    if not len(ga):
        return "No finite gradient norm was logged."
    med = float(np.median(ga))
    late = float(np.median(ga[xa >= xa[-1] - TAIL * (xa[-1] - xa[0])]))
    i = int(np.argmax(ga))
    text = (f"The gradient norm before clipping had a median of {med:.3g} over the {len(ga)} logged steps and "
            f"{late:.3g} over the last 20% of training; its largest, {float(ga[i]):.3g}"
            + (f" ({float(ga[i]) / med:.1f}× the median)" if med > 0 else "") + f", was at step {int(xa[i]):,}.")
    if clip is not None and clip > 0:
        share = float((ga > clip).mean())
        text += f" {100 * share:.0f}% of the logged steps were above the clipping norm {clip:g}"
        text += (": clipping, not the learning rate, set the size of most updates." if share > CLIPPED_MOST
                 else ".")
    return text


def sample_metric_reading(metric: str, steps: Sequence[float], values: Sequence[float], *, higher_is_better: bool,
                          floor: float | None = None) -> str:
    """The in-training sample metric from first to last evaluation, its best, and the last against real data's
    floor (what real training items score; samples cannot do better than real data)."""
    xa, ya = _finite_pairs(steps, values)
    if not len(xa):
        return f"No finite value of {metric} was logged."
    z = float(ya[-1])
    text = f"{metric} went from {float(ya[0]):.4g} (step {int(xa[0]):,}) to {z:.4g} (step {int(xa[-1]):,})"
    i = int(np.argmax(ya) if higher_is_better else np.argmin(ya))
    if i != len(ya) - 1:
        text += f"; its best was {float(ya[i]):.4g} at step {int(xa[i]):,}"
    if floor is not None and math.isfinite(floor) and floor > 0 and not higher_is_better:
        text += f"; the last is {z / floor:.2f}× what real training items score ({floor:.4g})"
    elif floor is not None and math.isfinite(floor):
        text += f"; real training items score {floor:.4g}"
    return text + "."
