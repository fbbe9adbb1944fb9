"""Ensemble members trained together (train.ensemble_batched): K single runs advanced in lockstep in one process,
each step's forward and backward passes of all members computed as one through torch.func — the members' parameters
stacked along a new first dimension and the network vmapped over them (the model-ensembling recipe of torch.func:
`stack_module_state`, `functional_call`, `vmap`).

Everything else stays each member's own, exactly as in a single run (loop.py): its batch, σ and noise from its own
seed, its optimiser, gradient clipping, stability guard (a skipped step, rollback or restart of one member touches
no other), EMA, validation, checkpoints, logs and summary. Only the network evaluation is shared, so a batched step
differs from the single run's by float rounding (a batched matrix product may sum in another order); over a long
run training amplifies such differences, as it does those between thread counts, so a batched member ends as another
draw of its single run's training rather than a copy (BENCHMARKS.md, "uncertainty"). With dropout, its masks come
from one generator for all members (vmap's `randomness="different"`), so that part is statistically, not bitwise,
the single run's.

Members at different steps (one rolled back, or resumed from an older checkpoint) still share each network
evaluation: only shapes must agree, not positions. What cannot be batched trains member by member, still in
lockstep: a backbone vmap cannot batch (found by a trial step at start), and the options whose step is more than one
forward and backward pass — train.accumulate, train.mmd_weight, fp16's loss scale, train.compile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, vmap

from ..diffusion import Denoiser, DenoisingLoss
from ..errors import TrainingStopped
from ..nets import for_vmap
from .config import RunConfig
from .loop import (
    Batch,
    Parts,
    RunState,
    after_step,
    checkpoint,
    draw_step,
    finish_step,
    skip_replayed_step,
    train_batch,
    train_step,
)
from .optim import weight_penalty

log = logging.getLogger("steadydiff")


def why_not_batched(cfg: RunConfig) -> str | None:
    """Why a member's step is more than one forward and backward pass of the network (None: it can be batched)."""
    tc = cfg.train
    if tc.accumulate > 1:
        return "train.accumulate > 1 (micro-batches per step)"
    if tc.mmd_weight:
        return "train.mmd_weight (the MMD term is computed per member)"
    if tc.precision == "fp16":
        return "train.precision=fp16 (each member keeps its own loss scale)"
    if tc.compile:
        return "train.compile (each member's network is compiled on its own)"
    return None


@dataclass
class Member:
    """One member as the lockstep loop holds it."""

    index: int
    p: Parts
    st: RunState
    resumed: bool
    start_step: int

    @property
    def live(self) -> bool:
        return self.st.step < self.p.cfg.train.steps


class _Bound:
    """The template denoiser called with one member's parameters (inside vmap: one slice of the stacked ones); it
    offers what DenoisingLoss reads from a denoiser besides calling it."""

    def __init__(self, template: Denoiser, weights: dict[str, torch.Tensor]):
        self.template, self.weights = template, weights
        self.sigma_data, self.parameterization = template.sigma_data, template.parameterization

    def __call__(self, *args: Any) -> torch.Tensor:
        return functional_call(self.template, self.weights, args)


def batched_losses(template: Denoiser, nets: Sequence[Denoiser], loss_fn: DenoisingLoss, batches: Sequence[Batch],
                   sigmas: Sequence[torch.Tensor], noises: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The per-sample losses of K members on their own batches in one vmapped evaluation of `template` (a
    member's network prepared by nets.for_vmap), and their gradients: each member's parameters' .grad is set to the
    gradient of its mean loss (what its own backward pass would give). Returns the K per-sample losses (detached)."""
    named = [dict(net.named_parameters()) for net in nets]
    buffers = [dict(net.named_buffers()) for net in nets]
    stacked = {name: torch.stack([n[name].detach() for n in named]).requires_grad_(q.requires_grad)
               for name, q in named[0].items()}
    stacked.update({name: torch.stack([b[name] for b in buffers]) for name in buffers[0]})
    # Only the inputs a batch has are vmapped (None stays None for every member: the batches share their layout).
    keys = [k for k in ("aug", "cond", "extra", "target") if getattr(batches[0], k) is not None]
    inputs = {"x": torch.stack([b.x for b in batches]), "sigma": torch.stack(list(sigmas)),
              "n": torch.stack(list(noises)), **{k: torch.stack([getattr(b, k) for b in batches]) for k in keys}}

    def one(weights: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> torch.Tensor:
        per_sample, _ = loss_fn(_Bound(template, weights), given["x"], generator=None, sigma=given["sigma"],
                                n=given["n"], **{k: given[k] for k in keys})
        return per_sample

    losses = vmap(one, randomness="different")(stacked, inputs)  # (K, batch)
    losses.mean(dim=1).sum().backward()  # member k's parameters get the gradient of its own mean loss alone
    for k, params in enumerate(named):
        for name, q in params.items():
            grad = stacked[name].grad
            q.grad = None if grad is None else grad[k]
    return list(losses.detach().unbind(0))


def batched_step(template: Denoiser, members: Sequence[Member]) -> None:
    """One optimiser step of each member, their network evaluations batched (batched_losses)."""
    drawn = [draw_step(m.p, m.st) for m in members]
    for m in members:
        m.p.opt.zero_grad(set_to_none=True)
    losses = batched_losses(template, [m.p.net for m in members], members[0].p.loss_fn, [d[0] for d in drawn],
                            [d[1] for d in drawn], [d[2] for d in drawn])
    for m, (batch, sigma, _), local in zip(members, drawn, losses, strict=True):
        tc = m.p.cfg.train
        if tc.l1 or tc.l2:  # the penalty's gradient adds to the loss's, as in share_backward
            weight_penalty(m.p.params, tc.l1, tc.l2).backward()
        finish_step(m.p, m.st, batch, sigma, local)


def trial(members: Sequence[Member]) -> str | None:
    """Whether vmap can batch these members' networks: one batched evaluation of two items each, its gradients
    discarded (None), or the reason it cannot."""
    # without the user's batch_transform, as loop.calibration_step: the trial is no training step
    batches = [train_batch(m.p, m.st, transform=False).rows(slice(0, 2)) for m in members]
    try:
        batched_losses(for_vmap(members[0].p.net), [m.p.net for m in members], members[0].p.loss_fn, batches,
                       [torch.ones(len(b.x), device=b.x.device) for b in batches],
                       [torch.zeros_like(b.x) for b in batches])
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        for m in members:
            m.p.opt.zero_grad(set_to_none=True)
    return None


def train_lockstep(members: list[Member], batched: bool,
                   on_step: Callable[[Member], None] | None = None) -> None:
    """Advance every member to its last step: each round, one step of every live member (batched where `batched`),
    then each member's guard, log, validation, rollback and outputs as its single run does them (loop.after_step).
    A member whose guard replays past a skipped batch passes that step alone."""
    template = for_vmap(members[0].p.net) if batched else None
    while True:
        live = [m for m in members if m.live]
        if not live:
            return
        stepping = []
        for m in live:
            if m.p.guard is not None and m.st.step in m.p.guard.state.skip_steps:
                skip_replayed_step(m.p, m.st)
            else:
                stepping.append(m)
        if batched and len(stepping) > 1:
            batched_step(template, stepping)
        else:
            for m in stepping:
                train_step(m.p, m.st)
        for m in live:
            try:
                after_step(m.p, m.st)
            except TrainingStopped as exc:  # this member's guard gave up: the others keep their progress
                for other in live:
                    if other is not m and other.live:
                        checkpoint(other.p, other.st)
                raise TrainingStopped(f"member {m.index} ({m.p.run_dir}): {exc}") from exc
            if on_step is not None:
                on_step(m)

