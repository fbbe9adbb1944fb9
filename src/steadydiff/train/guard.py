"""The stability guard (DESIGN.md, "Stability is a first-class layer"): named, counted detectors and recovery.

Detect on the device, decide on the host, never apply a bad update:

- every step, `Guard.gate` judges the batch against recent history with a few small tensor operations and no
  host synchronisation: a non-finite loss or gradient at once; a finite batch only when its loss in some
  noise-level bin (each σ-bin against its own running median and MAD, since losses differ by orders of
  magnitude across σ, with the threshold following how many items stand behind the bin's value) and its
  gradient norm agree that it is far out of range. A flagged update is never applied: fused optimisers read
  the flag as `found_inf` and skip the step on the device, as torch.amp's GradScaler does (others synchronise
  once per step). On a CPU, where the device is the host, the same arithmetic runs in NumPy: a third of the
  cost of forty tiny torch operations;
- every `check_every` steps the host reads the flags (`Guard.check`): each skipped step becomes an incident
  with its evidence. Skipped steps cannot harm the weights, so a burst of them is only a reason to look:
  `Guard.confirm` rolls back (to an in-memory snapshot, with a lower LR and the batches that led there
  skipped) when the fixed held-out loss is measurably worse than at that snapshot, or when most recent updates
  were rejected; otherwise training goes on at the same LR;
- at each validation, `Guard.observe_validation` watches the fixed-noise held-out loss, which moves only when
  the model does, for a silent collapse: well past its best and staying there. It rolls back to the anchor,
  the snapshot taken at the last validation near the best. A held-out loss that rises while the training
  loss stays at or below its level at the best validation is overfitting (memorisation of a small data
  set), not instability: it is reported once, and training goes on;
- at each validation within the first `growth_steps` steps, `Guard.observe_weights` compares the backbone's
  weight norm with its norm at step 0. An LR too high for the model inflates the weights (Adam's steps have
  a fixed size whatever the gradient's, so they random-walk the norm upward, and normalisation layers hide
  the growth from the loss), which leaves the run stuck far from the quality it could reach even once the
  LR decays. Nothing spikes and nothing turns non-finite: the loop restarts from step 0 at a lower LR;
- after `max_rollbacks` rollbacks within a window, `Guard.diagnose` says what happened and what to try, and
  the loop stops cleanly with the last good state on disk.

Canaries (`sigma_response`, `roundtrip_error`) catch silent bugs: a backbone that ignores its noise level, a
normaliser that does not invert, an EMA that does not move.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from ..sampling.guidance import null_like
from .config import GuardConfig
from .rundir import JsonlLog

NON_FINITE, SPIKE, EXPLOSION = 1, 2, 4
SCALER = 8  # fp16: the gradients overflowed at the loss scale (train/scaler.py): not a fault, never learnt from
PENDING_HEAD = ("flags", "grad_norm", "first_bad", "n_bad")  # then per channel: deviations, z-scores, bin items
OVERFIT_TRAIN_RATIO = 1.1  # training loss within this of its value at the best validation: not a collapse
_MAD_TO_STD = 1.4826  # MAD × 1.4826 estimates the standard deviation of a normal distribution


class RobustHistory:
    """The last `size` accepted values of `channels` series, on the device, with their median and MAD.

    `push` keeps the previous entry where a value is missing (NaN, e.g. an empty σ-bin) or the step was
    rejected, so a spike never enters the statistics it is judged by. `refresh` recomputes median and MAD.
    The guard keeps logarithms here (of losses and gradient norms), so a ratio is a difference and the MAD is a
    relative spread that means the same at every noise level.
    """

    def __init__(self, size: int, channels: int, device: torch.device):
        self.size = size
        self.values = torch.full((size, channels), math.nan, device=device)
        self.median = torch.full((channels,), math.nan, device=device)
        self.mad = torch.full((channels,), math.nan, device=device)
        self.count = torch.zeros(channels, device=device)
        self.pos = 0

    def push(self, value: torch.Tensor, accept: torch.Tensor) -> None:
        row = self.values[self.pos % self.size]
        row.copy_(torch.where(accept & torch.isfinite(value), value, row))
        self.pos += 1

    def refresh(self) -> None:
        self.median = torch.nanmedian(self.values, dim=0).values
        self.mad = torch.nanmedian((self.values - self.median).abs(), dim=0).values
        self.count = torch.isfinite(self.values).sum(0).float()

    def deviation(self, value: torch.Tensor, spread_scale: torch.Tensor | float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value − median, robust standard deviation 1.4826·MAD × `spread_scale`) per channel."""
        return value - self.median, (_MAD_TO_STD * self.mad * spread_scale).clamp(min=1e-6)

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.copy_(state["values"])
        self.pos = int(state["pos"])
        self.refresh()


@dataclass
class Snapshot:
    """The whole training state at one step, in memory. Randomness and data order derive from the step."""

    step: int
    samples_seen: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    detectors: dict[str, Any]
    val_loss: float | None = None
    phema: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None  # power-function EMA state, metadata


def take_snapshot(step: int, samples_seen: int, net: nn.Module, ema: Any, opt: torch.optim.Optimizer,
                  guard: Guard, val_loss: float | None = None, phema: Any = None) -> Snapshot:
    clone = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return Snapshot(step=step, samples_seen=samples_seen, model=clone,
                    ema={k: v.clone() for k, v in ema.state_dict().items()},
                    optimizer=copy.deepcopy(opt.state_dict()), detectors=copy.deepcopy(guard.detector_state()),
                    val_loss=val_loss,
                    phema=None if phema is None else ({k: v.clone() for k, v in phema.state_dict().items()},
                                                      copy.deepcopy(phema.metadata())))


def restore_snapshot(snap: Snapshot, net: nn.Module, ema: Any, opt: torch.optim.Optimizer, guard: Guard,
                     phema: Any = None) -> None:
    """Write a snapshot back. Copies go in, so the snapshot stays intact for a later rollback
    (Optimizer.load_state_dict keeps the tensors it is given)."""
    net.load_state_dict(snap.model)
    if phema is not None and snap.phema is not None:
        phema.load_state_dict(*snap.phema)
    ema.load_state_dict(snap.ema)
    opt.load_state_dict(copy.deepcopy(snap.optimizer))
    guard.load_detector_state(copy.deepcopy(snap.detectors))


@dataclass
class Rollback:
    """A decision to restore a snapshot: `anchor` after a collapse, else the newest one before `first_bad`."""

    reason: str  # the guard that asked for it
    step: int  # where it was decided
    first_bad: int  # the first step of the trouble: the snapshot must be older
    anchor: bool = False
    skip: list[int] = field(default_factory=list)  # steps whose batches are skipped when the run replays them
    restart: bool = False  # back to the state at step 0 (the LR, not a stretch of training, was wrong)
    lr_factor: float | None = None  # None: guard.lr_backoff
    # Skipped steps alone prove nothing (a skipped update cannot harm the weights): such a decision is only a
    # reason to look, and stands once `Guard.confirm` has found damage. The others carry their evidence.
    needs_evidence: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)  # what showed the damage, for incidents and diagnosis


@dataclass
class Damage:
    """What the loop measured when skipped steps asked for a look (Guard.confirm judges it)."""

    val_loss: float  # fixed held-out loss of the current raw weights
    val_loss_before: float  # the same for the snapshot a rollback would return to
    before_step: int
    skipped: int  # steps skipped within the last guard.skip_window steps


@dataclass
class GuardState:
    """The guard's host-side decisions so far: saved with every checkpoint (as JSON), so a resumed run decides as
    an unbroken one would."""

    lr_scale: float = 1.0
    skip_steps: set[int] = field(default_factory=set)  # every skipped step, also those a rollback skips on replay
    counts: dict[str, int] = field(default_factory=dict)  # incidents by guard
    flagged: list[int] = field(default_factory=list)  # recent steps skipped because the model misbehaved
    rollbacks: list[int] = field(default_factory=list)
    best_val: float = math.inf
    train_at_best: float = math.inf  # the training loss when the held-out loss was at its best
    overfitting: int | None = None  # step of the overfitting warning, once per run
    bad_vals: int = 0
    plateau_vals: int = 0
    watch_recovery: int | None = None  # step of the last rollback until it proves itself
    nonfinite_model_steps: int = 0
    init_norm: float | None = None  # the backbone's weight norm at step 0
    growth: float | None = None  # the weight growth that caused the last restart
    evidence: dict[str, Any] = field(default_factory=dict)  # what the last rollback's damage check measured

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict: the set as a sorted list, an infinite loss as null."""
        out = asdict(self)
        out["skip_steps"] = sorted(self.skip_steps)
        for name in ("best_val", "train_at_best"):
            out[name] = out[name] if math.isfinite(out[name]) else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuardState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.skip_steps = set(state.skip_steps)
        state.best_val = math.inf if state.best_val is None else float(state.best_val)
        state.train_at_best = math.inf if state.train_at_best is None else float(state.train_at_best)
        return state


class Guard:
    """All detectors, their counters and the recovery state of one run. See the module docstring."""

    def __init__(self, cfg: GuardConfig, *, bins: int, device: torch.device, incidents: JsonlLog,
                 fused_optimizer: bool):
        self.cfg = cfg
        self.device = device
        self.log = incidents
        self.check_every = cfg.check_every or (1 if device.type == "cpu" else 10)
        self.refresh_every = max(1, min(25, cfg.min_history // 2))
        self.fused = fused_optimizer
        # On a CPU the device is the host: no synchronisation to avoid, but ~40 tiny torch operations cost
        # ~0.7 ms of dispatch a step (4 % of a small MLP's step), so the same arithmetic runs in NumPy.
        self.host_gate = device.type == "cpu"
        self._verdicts = (torch.tensor(False), torch.tensor(True))
        # One history, channels 0…bins−1 the σ-bins' mean log-loss, channel `bins` the log gradient norm, so the
        # gate judges them all with a few vector operations; the thresholds per channel are set once here.
        self.bins = bins
        self.hist = RobustHistory(cfg.history, bins + 1, device)
        self.strict_z = torch.tensor([cfg.spike_z] * bins + [cfg.grad_z], device=device)
        self.strict_log = torch.tensor([math.log(cfg.spike_ratio)] * bins + [math.log(cfg.grad_ratio)], device=device)
        # Per step since the last check: PENDING_HEAD (flags, gradient norm, batch position of the first item with
        # a non-finite loss, how many items had one), then each channel's deviation from its median (log ratio)
        # and robust z-score, and the items in each σ-bin.
        self.pending = torch.zeros(self.check_every, len(PENDING_HEAD) + 3 * bins + 2, device=device)
        self.pending_steps: list[int] = []
        self.pending_items: deque[np.ndarray] = deque(maxlen=self.check_every)
        self.state = GuardState()  # host-side decisions, saved with checkpoints (state_json)
        self.t0 = time.perf_counter()

    # -- device side, every step ----------------------------------------------------------------------------
    @torch.no_grad()
    def gate(self, per_sample: torch.Tensor, bin_index: torch.Tensor, grad_norm: torch.Tensor,
             overflow: torch.Tensor | None = None) -> torch.Tensor:
        """A bool tensor: True when this step's update must not be applied. No host synchronisation.

        `per_sample` is the batch's loss per item, `bin_index` each item's σ-bin, and `grad_norm` the gradient
        norm before clipping. A non-finite loss or gradient is rejected at once. A finite step is rejected only
        when the loss and the gradient norm agree: one of them far outside its recent range (a spike or an
        explosion) and the other clearly raised too. A hard but healthy batch (a few items between modes, whose
        loss is hundreds of times the bin's median) moves one of them alone, and is trained on.

        The loss statistic of a σ-bin is the mean log-loss of its items (the log of their geometric mean): a
        batch that is corrupted, or a model that has gone wrong, lifts every item, while one hard item lifts it
        by only log(its ratio) / (items in the bin). Its spread shrinks as 1/√n with the n items behind it, so the
        threshold is scaled by √(n_typical / n) (`n_typical` = batch / bins, the bins being equally likely).

        `overflow` (fp16) marks a step whose gradients overflowed at the loss scale: rejected, flagged SCALER
        alone, and kept out of the history — the scaler's business, not evidence about the model.
        """
        if self.host_gate:
            return self._gate_host(per_sample, bin_index, grad_norm, overflow)
        c = self.cfg
        over = torch.zeros((), dtype=torch.bool, device=per_sample.device) if overflow is None else overflow
        bad_items = ~torch.isfinite(per_sample)
        finite = ~bad_items.any() & (torch.isfinite(grad_norm) | over)
        log_loss = per_sample.float().clamp(min=1e-30).log().nan_to_num(0.0, 0.0, 0.0)  # non-finite: judged above
        sums = log_loss.new_zeros(self.bins, 2).index_add_(0, bin_index, torch.stack([torch.ones_like(log_loss),
                                                                                      log_loss], 1))
        n, bin_log = sums[:, 0], sums[:, 1] / sums[:, 0]  # NaN for an empty bin: never judged
        log_g = grad_norm.reshape(1).float().clamp(min=1e-30).log()
        scale = torch.cat([(per_sample.numel() / self.bins / n.clamp(min=1)).sqrt(), n.new_ones(1)])
        stat = torch.cat([bin_log, log_g])
        dev, spread = self.hist.deviation(stat, scale)
        ready = self.hist.count >= c.min_history
        high = ready & (dev > torch.maximum(self.strict_z * spread, self.strict_log))
        raised = ready & (dev > (c.confirm_z * spread).clamp(min=math.log(c.confirm_ratio)))
        spike = high[:-1].any() & raised[-1] & ~over  # a σ-bin's loss far out, the gradient norm agreeing
        explode = high[-1] & raised[:-1].any() & ~over  # the gradient norm far out, a σ-bin's loss agreeing
        bad = ~finite | spike | explode
        flags = (~finite).float() * NON_FINITE + spike.float() * SPIKE + explode.float() * EXPLOSION + \
            over.float() * SCALER
        head = torch.stack([flags, grad_norm.reshape(()).float(), bad_items.float().argmax().float(),
                            bad_items.float().sum()])
        self.pending[len(self.pending_steps) % self.check_every] = torch.cat([head, dev, dev / spread, n])
        self.hist.push(stat, ~bad & ~over)
        bad = bad | over
        if self.hist.pos % self.refresh_every == 0:
            self.hist.refresh()
        return bad

    def _gate_host(self, per_sample: torch.Tensor, bin_index: torch.Tensor, grad_norm: torch.Tensor,
                   overflow: torch.Tensor | None = None) -> torch.Tensor:
        """`gate` in NumPy on CPU tensors (shared memory, no copies): the same float32 arithmetic, step for step,
        writing the same history and pending rows (tests/test_guard.py holds the two paths to each other)."""
        c, h, k, f32 = self.cfg, self.hist, self.bins, np.float32
        loss = per_sample.detach().float().numpy()
        g = f32(grad_norm.detach().float().reshape(()).item())
        over = overflow is not None and bool(overflow)
        bad_items = ~np.isfinite(loss)
        finite = not bad_items.any() and (bool(np.isfinite(g)) or over)
        idx = bin_index.numpy()
        stat = np.empty(k + 1, dtype=f32)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_loss = np.log(np.maximum(loss, f32(1e-30)))
            log_loss[~np.isfinite(log_loss)] = 0.0  # non-finite: judged above
            n = np.bincount(idx, minlength=k).astype(f32)
            stat[:k] = np.bincount(idx, weights=log_loss, minlength=k) / n  # NaN for an empty bin: never judged
            stat[k] = np.log(max(g, f32(1e-30)))
            scale = np.ones(k + 1, dtype=f32)
            scale[:k] = np.sqrt(loss.size / k / np.maximum(n, 1))
            dev = stat - h.median.numpy()
            spread = np.maximum(f32(_MAD_TO_STD) * h.mad.numpy() * scale, f32(1e-6))
            ready = h.count.numpy() >= c.min_history
            high = ready & (dev > np.maximum(self.strict_z.numpy() * spread, self.strict_log.numpy()))
            raised = ready & (dev > np.maximum(f32(c.confirm_z) * spread, f32(math.log(c.confirm_ratio))))
            z = dev / spread
        spike = bool(high[:-1].any() and raised[-1]) and not over
        explode = bool(high[-1] and raised[:-1].any()) and not over
        bad = not finite or spike or explode
        pending = self.pending[len(self.pending_steps) % self.check_every].numpy()
        pending[:len(PENDING_HEAD)] = ((not finite) * NON_FINITE + spike * SPIKE + explode * EXPLOSION + over * SCALER,
                                       g, bad_items.argmax(), bad_items.sum())
        pending[len(PENDING_HEAD):] = np.concatenate([dev, z, n])
        bad = bad or over
        if not bad:
            row, keep = h.values[h.pos % h.size].numpy(), np.isfinite(stat)
            row[keep] = stat[keep]
        h.pos += 1
        if h.pos % self.refresh_every == 0:
            h.refresh()
        return self._verdicts[bad]

    def apply_gate(self, opt: torch.optim.Optimizer, bad: torch.Tensor) -> None:
        """Step the optimiser unless `bad`: on the device for fused optimisers, else after one sync."""
        if self.fused:
            opt.found_inf = bad.float()  # read by fused Adam/AdamW: the whole step, moments included, is skipped
            opt.step()
        elif not bool(bad):
            opt.step()

    def note_step(self, step: int, items: np.ndarray) -> None:
        """Remember which step and training items the last gated update belonged to."""
        self.pending_steps.append(step)
        self.pending_items.append(items)

    # -- host side ----------------------------------------------------------------------------------------------
    def due(self) -> bool:
        return len(self.pending_steps) >= self.check_every

    def incident(self, what: str, step: int, action: str, **detail: Any) -> None:
        self.state.counts[what] = self.state.counts.get(what, 0) + 1
        record = {"step": step, "guard": what, "action": action, "lr_scale": self.state.lr_scale,
                  "wall_s": round(time.perf_counter() - self.t0, 2), **detail}
        self.log.write(record)

    def check(self, train_x: torch.Tensor) -> Rollback | None:
        """Read the flags of the steps since the last check and log them with their evidence.

        Returns a decision that needs evidence (`Rollback.needs_evidence`) when `max_skips` steps were skipped
        within `skip_window` steps: the loop then measures the damage and `confirm` decides.
        """
        n = len(self.pending_steps)
        if n == 0:
            return None
        rows = self.pending[:n].cpu().numpy()
        steps, items = self.pending_steps, list(self.pending_items)[-n:]
        self.pending_steps = []
        decision = None
        for row, step, idx in zip(rows, steps, items, strict=True):
            flags = int(row[0])
            if not flags:
                continue
            if flags == SCALER:  # fp16's loss scale halved: the scaler's routine, neither a fault nor a skip to judge
                self.state.counts["fp16_overflow"] = self.state.counts.get("fp16_overflow", 0) + 1
                continue
            r = self._evidence_row(row)
            self.state.skip_steps.add(step)
            if flags & NON_FINITE:
                n_bad, batch = int(r["n_bad"]), len(idx)
                if 0 < n_bad < batch:  # some items, not the model: name them (position in batch → data index)
                    item = int(idx[int(r["first_bad"])])
                    source = "holds non-finite values in the data set" if not torch.isfinite(train_x[item]).all() \
                        else "is finite in the data set, so it was corrupted after loading (augmentation or " \
                        "batch_transform)"
                    self.incident("non_finite", step, "skipped step", items_non_finite=n_bad, first_item=item,
                                  outcome="update not applied", detail=f"training item {item} {source}")
                    continue
                self.state.nonfinite_model_steps += 1
                self.incident("non_finite", step, "skipped step", items_non_finite=n_bad, outcome="update not applied",
                              detail="the loss or gradients of the whole batch are non-finite: the model overflows")
            else:
                what = "loss_spike" if flags & SPIKE else "grad_explosion"
                self.incident(what, step, "skipped step", outcome="update not applied", **_spike_evidence(r),
                              batch_items=[int(i) for i in idx])
            self.state.flagged.append(step)
            recent = [s for s in self.state.flagged if s > step - self.cfg.skip_window]
            if len(recent) >= self.cfg.max_skips and decision is None:
                decision = Rollback(reason="repeated_skips", step=step, first_bad=recent[0], skip=recent,
                                    needs_evidence=True)
        horizon = steps[-1] - max(self.cfg.skip_window, self.cfg.snapshot_every)
        self.state.flagged = [s for s in self.state.flagged if s > horizon]  # older ones no longer matter
        if decision is None and self.state.watch_recovery is not None and steps[-1] - self.state.watch_recovery >= \
                self.cfg.snapshot_every and not any(s > self.state.watch_recovery for s in self.state.flagged):
            self.incident("recovery", steps[-1], "none", outcome=f"recovered: {steps[-1] - self.state.watch_recovery} "
                          "steps without incident since the rollback")
            self.state.watch_recovery = None
        return decision

    def _evidence_row(self, row: np.ndarray) -> dict[str, float]:
        """One pending row as named values, with the σ-bin furthest above its median (in robust z)."""
        k, head = self.bins, len(PENDING_HEAD)
        r = dict(zip(PENDING_HEAD, (float(v) for v in row[:head]), strict=True))
        dev, z, n = row[head:head + k + 1], row[head + k + 1:head + 2 * k + 2], row[head + 2 * k + 2:]
        worst = int(np.argmax(np.nan_to_num(z[:k], nan=-np.inf)))
        return {**r, "bin": worst, "loss_ratio": float(np.exp(dev[worst])), "loss_z": float(z[worst]),
                "bin_items": float(n[worst]), "grad_ratio": float(np.exp(dev[k])), "grad_z": float(z[k])}

    def skipped_recently(self, step: int, window: int) -> int:
        """Steps skipped within the last `window` steps up to `step`."""
        return sum(1 for s in self.state.skip_steps if step - window < s <= step)

    def confirm(self, decision: Rollback, damage: Damage) -> Rollback | None:
        """Keep a decision that needs evidence only when the model is measurably worse, or no longer trains.

        Damage is a fixed held-out loss above `damage_ratio` × its value at the snapshot a rollback would return
        to (non-finite included), or more than half of the last `skip_window` steps skipped (the weights are
        hardly updated any more). Otherwise the skips were hard or corrupted batches whose updates were never
        applied: training goes on at the same LR, and the look is logged with what it measured.
        """
        c = self.cfg
        ratio = damage.val_loss / damage.val_loss_before if damage.val_loss_before > 0 else math.inf
        evidence = {"val_loss": _finite_or_text(damage.val_loss), "val_loss_before": round(damage.val_loss_before, 6),
                    "before_step": damage.before_step, "val_ratio": _finite_or_text(ratio),
                    "damage_ratio": c.damage_ratio, "skipped_in_window": damage.skipped, "window": c.skip_window}
        worse = not math.isfinite(damage.val_loss) or ratio > c.damage_ratio
        stalled = damage.skipped > c.skip_window / 2
        self.state.flagged = []
        if not worse and not stalled:
            self.incident("damage_check", decision.step, "none", **evidence,
                          outcome=f"no damage: {len(decision.skip)} skipped steps, held-out loss {ratio:.3g}× its "
                          f"value at step {damage.before_step} (limit {c.damage_ratio}×); training goes on at the "
                          "same LR")
            return None
        decision.evidence = {**evidence, "damage": "held-out loss worse" if worse else "updates stalled"}
        decision.needs_evidence = False
        return decision

    def observe_validation(self, step: int, val_loss: float, train_loss: float = math.nan) -> Rollback | None:
        """Collapse and plateau on the fixed-noise held-out loss (raw weights: they move first); `train_loss` is
        the training loss of the steps since the last log line, which tells overfitting from a collapse."""
        c = self.cfg
        if not math.isfinite(val_loss):
            self.incident("collapse", step, "rollback", val_loss=str(val_loss), best=self.state.best_val)
            return Rollback(reason="collapse", step=step, first_bad=step, anchor=True,
                            evidence={"val_loss": str(val_loss), "best": _finite_or_text(self.state.best_val)})
        if val_loss < self.state.best_val:
            improved = val_loss < 0.99 * self.state.best_val
            self.state.best_val = val_loss
            self.state.train_at_best = train_loss if math.isfinite(train_loss) else math.inf
            self.state.bad_vals = 0
            if improved:
                self.state.plateau_vals = 0
            return None
        self.state.plateau_vals += 1
        fits = math.isfinite(train_loss) and math.isfinite(self.state.train_at_best) and \
            train_loss <= OVERFIT_TRAIN_RATIO * self.state.train_at_best
        if val_loss > c.collapse_ratio * self.state.best_val and fits:
            # The model still fits its training data as well as at its best: it is learning the training items
            # rather than their distribution (memorising), which no rollback or lower LR cures.
            self.state.bad_vals = 0
            if self.state.overfitting is None:
                self.state.overfitting = step
                self.incident("overfitting", step, "warned", val_loss=round(val_loss, 6),
                              best=round(self.state.best_val, 6),
                              train_loss=round(train_loss, 6), train_at_best=round(self.state.train_at_best, 6),
                              message="the held-out loss rises while the training loss does not: the model is "
                              "memorising its training data. More data, augmentation (data.hflip), dropout or "
                              "fewer steps help; `steadydiff eval` and `steadydiff report` measure the copies")
        elif val_loss > c.collapse_ratio * self.state.best_val:
            self.state.bad_vals += 1
            if self.state.bad_vals >= c.collapse_patience:
                self.incident("collapse", step, "rollback", val_loss=round(val_loss, 6),
                              best=round(self.state.best_val, 6), validations=self.state.bad_vals)
                self.state.bad_vals = 0
                return Rollback(reason="collapse", step=step, first_bad=step, anchor=True,
                                evidence={"val_loss": round(val_loss, 6), "best": round(self.state.best_val, 6),
                                          "val_ratio": round(val_loss / self.state.best_val, 3)})
        else:
            self.state.bad_vals = 0
        if c.plateau_patience and self.state.plateau_vals >= c.plateau_patience:
            self.state.lr_scale *= c.plateau_factor
            self.state.plateau_vals = 0
            self.incident("plateau", step, f"lr × {c.plateau_factor}", val_loss=round(val_loss, 6),
                          best=round(self.state.best_val, 6))
        return None

    def observe_weights(self, step: int, norm: float) -> Rollback | None:
        """Weight growth since step 0 (see the module docstring); `norm` is the backbone's weight norm."""
        c = self.cfg
        if step == 0 or self.state.init_norm is None:
            self.state.init_norm = self.state.init_norm or norm
            return None
        if not c.weight_growth or step > c.growth_steps or not math.isfinite(norm):
            return None
        ratio = norm / self.state.init_norm
        if ratio <= c.weight_growth:
            return None
        self.state.growth = ratio
        self.incident("weight_growth", step, "restart", ratio=round(ratio, 3), norm=round(norm, 4),
                      init_norm=round(self.state.init_norm, 4), limit=c.weight_growth)
        return Rollback(reason="weight_growth", step=step, first_bad=0, restart=True, lr_factor=c.growth_backoff,
                        evidence={"weight_ratio": round(ratio, 3)})

    def near_best(self, val_loss: float) -> bool:
        """Whether a validation is good enough to become the collapse anchor."""
        return math.isfinite(val_loss) and val_loss <= 1.1 * self.state.best_val

    def choose(self, decision: Rollback, ring: list[Snapshot], anchor: Snapshot | None,
               initial: Snapshot | None = None) -> Snapshot | None:
        if decision.restart and initial is not None:
            return initial
        if decision.anchor and anchor is not None:
            return anchor
        older = [s for s in ring if s.step < decision.first_bad]
        if older:
            return older[-1]
        return ring[0] if ring else anchor

    def rolled_back(self, decision: Rollback, target: Snapshot) -> bool:
        """Book a rollback to `target`; False when recovery has failed too often and training must stop."""
        self.state.rollbacks.append(decision.step)
        factor = self.cfg.lr_backoff if decision.lr_factor is None else decision.lr_factor
        self.state.lr_scale *= factor
        self.state.skip_steps.update(s for s in decision.skip if s >= target.step)
        self.state.flagged = []
        self.state.bad_vals = 0
        if target.step == 0:  # a fresh start: the held-out losses of the abandoned run are no yardstick
            self.state.best_val, self.state.train_at_best, self.state.plateau_vals = math.inf, math.inf, 0
        self.state.watch_recovery = decision.step
        recent = [s for s in self.state.rollbacks if s > decision.step - self.cfg.rollback_window]
        give_up = len(recent) > self.cfg.max_rollbacks
        self.state.evidence = decision.evidence
        self.incident(decision.reason, decision.step, "stop" if give_up else "rollback",
                      to_step=target.step, lr_scale_after=self.state.lr_scale, skipped_steps=sorted(decision.skip),
                      **decision.evidence,
                      outcome="recovery failed too often" if give_up else f"restored step {target.step}, "
                      f"lr × {factor}")
        return not give_up

    def diagnose(self, precision: str, lr: float, grad_clip: float) -> str:
        """What happened, the likely cause and what to try, in plain words."""
        st = self.state
        c = st.counts
        clip = ", and train.grad_clip=1" if grad_clip == 0 or grad_clip > 1 else ""
        parts = [f"training stopped after {len(st.rollbacks)} rollbacks (incidents: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")."]
        if st.nonfinite_model_steps and precision != "fp32":
            parts.append(f"Likely cause: overflow in reduced precision ({precision}): the loss or gradients became "
                         "non-finite on finite data. Try train.precision=fp32, or a lower train.lr.")
        elif st.nonfinite_model_steps:
            parts.append("Likely cause: the model's outputs or gradients overflow on finite data. Try a lower "
                         f"train.lr (now {lr:g}) and a longer train.warmup_samples{clip}.")
        elif c.get("weight_growth"):
            parts.append(f"Likely cause: the learning rate is too high for this model: its weights grew "
                         f"{st.growth or 0:.1f}× within {self.cfg.growth_steps} steps even at {st.lr_scale:g}× "
                         f"the LR. Try train.lr={lr * st.lr_scale:g}, or magnitude-preserving layers "
                         "(net.unet.mp / net.mlp.mp).")
        elif st.evidence.get("damage") == "updates stalled":
            parts.append(f"Likely cause: most updates were rejected ({st.evidence['skipped_in_window']} of the last "
                         f"{st.evidence['window']} steps), so the weights hardly train: batches corrupted after "
                         "loading (augmentation or batch_transform), or a learning rate too high for this model. "
                         f"Check the data pipeline, or try train.lr={lr / 4:g}{clip}.")
        else:
            parts.append(f"Likely cause: the learning rate is too high for this model: the held-out loss got worse "
                         f"even at {st.lr_scale:g}× the LR. Try train.lr={lr / 4:g} "
                         f"and a longer train.warmup_samples{clip}.")
        if st.evidence:
            parts.append("Evidence at the last rollback: " + ", ".join(f"{k} {v}" for k, v in st.evidence.items())
                         + ".")
        return " ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {"incidents": dict(sorted(self.state.counts.items())), "skipped_steps": len(self.state.skip_steps),
                "rollbacks": len(self.state.rollbacks), "lr_scale": self.state.lr_scale}

    def postfix(self) -> str | None:
        """A few characters for the progress bar, or None when all is well."""
        if not self.state.counts:
            return None
        return f"{len(self.state.skip_steps)} skipped, {len(self.state.rollbacks)} rollbacks"

    # -- state ------------------------------------------------------------------------------------------------
    def detector_state(self) -> dict[str, Any]:
        return {"history": self.hist.state_dict()}

    def load_detector_state(self, state: dict[str, Any]) -> None:
        self.hist.load_state_dict(state["history"])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Detector histories, for the checkpoint's safetensors file."""
        return {"history": self.hist.values.contiguous()}

    def state_json(self) -> dict[str, Any]:
        return {**self.state.to_json(), "position": self.hist.pos}

    def load(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.state = GuardState.from_json(state)
        self.hist.load_state_dict({"values": tensors["history"], "pos": state["position"]})


def _finite_or_text(value: float) -> float | str:
    return round(value, 6) if math.isfinite(value) else str(value)


def _spike_evidence(r: dict[str, float]) -> dict[str, Any]:
    """A skipped finite step's evidence: the σ-bin's loss and the gradient norm against their medians."""
    return {"sigma_bin": int(r["bin"]), "loss_ratio": round(r["loss_ratio"], 3), "loss_z": round(r["loss_z"], 1),
            "bin_items": int(r["bin_items"]), "grad_norm": float(f"{r['grad_norm']:.4g}"),
            "grad_ratio": round(r["grad_ratio"], 3), "grad_z": round(r["grad_z"], 1),
            "detail": f"σ-bin {int(r['bin'])}: geometric-mean loss of its {int(r['bin_items'])} items "
                      f"{r['loss_ratio']:.3g}× its median ({r['loss_z']:.1f} robust std); gradient norm "
                      f"{r['grad_ratio']:.3g}× its median ({r['grad_z']:.1f} robust std)"}


# -- canaries --------------------------------------------------------------------------------------------------


@torch.no_grad()
def sigma_response(backbone: nn.Module, item_shape: tuple[int, ...], device: torch.device, *,
                   jitter: bool) -> float:
    """Relative change of the backbone's output between two noise levels, for one fixed input.

    A backbone that ignores c_noise gives exactly 0. At initialisation the output layer is zero (so the output
    is 0 at every σ): with `jitter`, a copy with every parameter perturbed is asked instead. Returns NaN when
    the output is still too small to judge (|F| < 1e-2 on average: early training, when F is mostly the
    output layer's bias; a trained F has unit scale, EDM's c_out sees to that), with jitter after growing it
    100-fold.
    """
    # A small network's jittered output can stay under the size threshold (a 32-wide MLP: ~5e-3 for some seeds),
    # so the jitter grows tenfold until the output can be judged; a network that ignores c_noise gives 0 at any size.
    for gain in (1.0, 10.0, 100.0) if jitter else (None,):
        net = backbone
        if gain is not None:
            net = copy.deepcopy(backbone)
            g = torch.Generator().manual_seed(0)
            for p in net.parameters():
                # A scalar is a gain (EDM2's zero-initialised output gain among them): move it to order one.
                scale = 0.05 * float(p.detach().float().std()) if p.numel() > 1 else 0.5
                p.add_(torch.randn(p.shape, generator=g).to(p.device, p.dtype) * (scale + 0.01) * gain)
        was_training = net.training
        net.eval()
        x = torch.randn((4, *item_shape), generator=torch.Generator().manual_seed(1)).to(device)
        lo = net(x, torch.full((4,), math.log(0.05) / 4, device=device))
        hi = net(x, torch.full((4,), math.log(20.0) / 4, device=device))
        net.train(was_training)
        size = float(lo.abs().mean() + hi.abs().mean()) / 2
        if size >= 1e-2:
            return float((lo - hi).abs().mean()) / size
    return math.nan


@torch.no_grad()
def cond_response(backbone: nn.Module, item_shape: tuple[int, ...], device: torch.device,
                  cond: torch.Tensor) -> float:
    """Relative change of a jittered copy's output (see `sigma_response`) between the given conditions and none:
    exactly 0 for a backbone that never reads `cond`."""
    net = copy.deepcopy(backbone)
    g = torch.Generator().manual_seed(0)
    for p in net.parameters():
        scale = 0.05 * float(p.detach().float().std()) if p.numel() > 1 else 0.5
        p.add_(torch.randn(p.shape, generator=g).to(p.device, p.dtype) * (scale + 0.01))
    net.eval()
    n = len(cond)
    x = torch.randn((n, *item_shape), generator=torch.Generator().manual_seed(1)).to(device)
    c_noise = torch.full((n,), math.log(1.0) / 4, device=device)
    given = net(x, c_noise, cond)
    none = net(x, c_noise, null_like(cond))
    size = float(given.abs().mean() + none.abs().mean()) / 2
    return float((given - none).abs().mean()) / max(size, 1e-12)


def roundtrip_error(normaliser: Any, x: np.ndarray) -> float:
    """Largest |inverse(forward(x)) − x| over the observed (not NaN) values, relative to their spread."""
    x = np.asarray(x, dtype=np.float64)
    back = np.asarray(normaliser.inverse(np.asarray(normaliser.forward(x))), dtype=np.float64)
    seen = ~np.isnan(x)
    if not seen.any():
        return 0.0
    spread = float(np.std(x[seen])) or 1.0
    return float(np.max(np.abs(back - x)[seen])) / spread


def weights_fingerprint(tensors: dict[str, torch.Tensor]) -> float:
    """One number that changes whenever any weight does: a weighted sum of the tensors' sums, in float64."""
    sums = torch.stack([t.detach().double().sum() for t in tensors.values()])
    return float((sums * torch.linspace(1, 2, len(sums), dtype=torch.float64, device=sums.device)).sum())


__all__ = ["EXPLOSION", "NON_FINITE", "SPIKE", "Damage", "Guard", "GuardState", "RobustHistory", "Rollback", "Snapshot",
           "restore_snapshot", "roundtrip_error", "sigma_response", "take_snapshot", "weights_fingerprint"]
