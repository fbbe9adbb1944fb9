"""The training loop: one linear function with labelled sections (EDM2's training_loop.py, nanoGPT).

Sections: 1. data and normaliser  2. networks and optimiser  3. run directory and resume
4. the loop (batch → loss → backward → clip → step → EMA → log/validate/sample metrics/checkpoint/grid)
5. summary. Every random draw is derived from (seed, step), so resuming from a checkpoint reproduces an unbroken
run; evaluation draws only from generators of its own, so it never shifts the training's random numbers.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..data import Dataset, describe, load_data
from ..data.augment import AUG_DIM, augment, hflip
from ..data.export import save_samples
from ..data.normalise import Normaliser
from ..data.scan import scan
from ..diffusion import Denoiser, DenoisingLoss
from ..diffusion.noise import sample_sigma
from ..errors import ConfigError, SteadydiffError, TrainingStopped
from ..metrics import copy_fraction, frechet_distance, mode_stats
from ..nets import build_backbone, count_parameters
from ..sampling import generate, nfe
from ..typed_config import validate
from . import checkpoint as ckpt
from .config import RunConfig
from .ema import EMA, ema_beta
from .guard import (
    Damage,
    Guard,
    RobustHistory,
    Rollback,
    Snapshot,
    restore_snapshot,
    roundtrip_error,
    sigma_response,
    take_snapshot,
    weights_fingerprint,
)
from .optim import build_optimizer, clip_gradients, curriculum_share, lr_at, weight_penalty
from .order import Stream, batch_indices, derive_seed
from .phema import PowerEMA, write_snapshot
from .rundir import JsonlLog, check_resume_config, remove_newer, save_config
from .sample_metrics import SKIPPED, SampleMetrics, best_evaluation, is_due
from .tensorboard import TensorBoardLog
from .validation import FixedValidation, sigma_grid

log = logging.getLogger("steadydiff")

SIGMA_BINS = 8  # equal-probability bins of the training σ distribution, for per-σ statistics


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def measure_sigma_data(x: np.ndarray) -> float:
    """σ_data: the standard deviation of the normalised training data over all entries."""
    return float(np.std(x.astype(np.float64)))


def build_denoiser(cfg: RunConfig, item_shape: tuple[int, ...], sigma_data: float,
                   backbone: nn.Module | None = None) -> Denoiser:
    aug_dim = AUG_DIM if cfg.data.augment else 0  # train() refuses data.augment for vectors
    backbone = backbone if backbone is not None else build_backbone(cfg.net, item_shape, aug_dim=aug_dim)
    autocast = torch.bfloat16 if cfg.train.precision == "bf16" else None
    return Denoiser(backbone, sigma_data, cfg.diffusion.parameterization, autocast_dtype=autocast)


def takes_aug(backbone: nn.Module) -> bool:
    """Whether a backbone's forward accepts augmentation labels (`aug=`, or **kwargs)."""
    params = inspect.signature(backbone.forward).parameters.values()
    return any(p.name == "aug" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def make_loss(cfg: RunConfig) -> DenoisingLoss:
    d = cfg.diffusion
    return DenoisingLoss(noise=d.noise, p_mean=d.p_mean, p_std=d.p_std, weighting=d.weighting,
                         min_snr_gamma=d.min_snr_gamma)


@dataclass
class TrainResult:
    run_dir: Path
    config: RunConfig
    summary: dict[str, Any] = field(default_factory=dict)


def _summary_quality(ds: Dataset, norm: Normaliser, samples_user: np.ndarray) -> dict[str, Any]:
    """How well: mode statistics where modes are known; Fréchet distance and copies otherwise."""
    q: dict[str, Any] = {"n_samples": int(len(samples_user))}
    if not np.isfinite(samples_user).all():
        q["non_finite_samples"] = int((~np.isfinite(samples_user.reshape(len(samples_user), -1))).any(1).sum())
        return q
    if ds.modes is not None and ds.mode_std is not None:
        q.update(mode_stats(samples_user, ds.modes, ds.mode_std))
    train_n = np.asarray(norm.forward(ds.train)).reshape(len(ds.train), -1)
    samp_n = np.asarray(norm.forward(samples_user)).reshape(len(samples_user), -1)
    if len(ds.holdout) >= 2 and train_n.shape[1] <= 1024:
        held_n = np.asarray(norm.forward(ds.holdout)).reshape(len(ds.holdout), -1)
        k = min(len(train_n), len(samp_n))
        q["fd_data_space"] = round(frechet_distance(samp_n, held_n), 4)
        q["fd_data_space_train_floor"] = round(frechet_distance(train_n[:k], held_n), 4)
    q.update({k: round(v, 5) for k, v in copy_fraction(samp_n, train_n[:5000]).items()})
    if len(ds.holdout) >= 2:
        # Fresh real data also lands this close to a training item now and then (often, in 2-D):
        # the held-out items' share is the baseline a copy fraction has to be read against.
        held_n = np.asarray(norm.forward(ds.holdout)).reshape(len(ds.holdout), -1)
        q["copy_fraction_heldout"] = round(copy_fraction(held_n, train_n[:5000])["copy_fraction"], 5)
    return q


def train(cfg: RunConfig, out: str | Path, data: Any = None, *, progress: bool = True,
          backbone: nn.Module | None = None,
          batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> TrainResult:
    """Train (or resume) the run in `out`. `backbone` replaces the configured network F (any module called as
    F(x, c_noise, cond)); `batch_transform(step, x)` is applied to each normalised training batch after the
    built-in augmentation (a custom augmentation, or a fault planted to test the stability guard)."""
    cfg = validate(copy.deepcopy(cfg))
    tc, gc = cfg.train, cfg.guard
    run_dir = Path(out)
    device = resolve_device(tc.device)
    saved_cfg = check_resume_config(run_dir, cfg)  # refuse another run's directory before any work

    # 1. Data and normaliser ---------------------------------------------------------------------
    ds = load_data(cfg.data, data)
    fingerprint = hashlib.sha256(np.ascontiguousarray(ds.train).tobytes()).hexdigest()[:16]
    if saved_cfg is not None and (run_dir / "dataset.json").exists():
        before = json.loads((run_dir / "dataset.json").read_text()).get("fingerprint")
        if before not in (None, fingerprint):
            raise SteadydiffError(f"{run_dir} was trained on different data ({before}, now {fingerprint}); "
                                  "resume it with the same data, or choose a new --out for a new run")
    log.info(describe(ds))
    for note in ds.notes:
        log.info("data: %s", note)
    norm_path = run_dir / "normaliser.json"
    norm = Normaliser.from_dict(json.loads(norm_path.read_text())) if norm_path.exists() else \
        Normaliser.fit(ds.train, ds.kind)
    train_x = torch.as_tensor(np.asarray(norm.forward(ds.train), dtype=np.float32))
    n_items = len(train_x)
    if cfg.diffusion.sigma_data is None:  # resolved once, then written to config.toml
        cfg.diffusion.sigma_data = round(measure_sigma_data(train_x.numpy()), 6)
    sigma_data = cfg.diffusion.sigma_data
    cfg.diffusion.p_mean = cfg.diffusion.resolved_p_mean(ds.kind)  # written to config.toml as used
    explicit_augment = cfg.data.augment
    cfg.data.augment = cfg.data.resolved_augment(ds.kind, fresh=saved_cfg is None)
    if cfg.data.augment and backbone is not None and not takes_aug(backbone):
        if explicit_augment is not None:
            raise ConfigError(f"data.augment={cfg.data.augment} tells the network which transformation each training "
                              f"image saw, as forward(x, c_noise, cond, aug=labels of shape (N, {AUG_DIM})); the "
                              f"backbone {type(backbone).__name__}.forward takes no `aug` argument. Add one (e.g. "
                              "embed it beside c_noise), or set data.augment=0.")
        log.info("data: no augmentation: the backbone %s takes no `aug` argument (data.augment needs one)",
                 type(backbone).__name__)
        cfg.data.augment = 0.0
    if cfg.data.augment and ds.kind != "image":
        raise ConfigError(f"data.augment={cfg.data.augment} applies to images only; this data has items shaped "
                          f"{ds.item_shape}. Set data.augment=0.")
    if cfg.diffusion.sigma_min is None:  # resolved once from the data's value levels, then written
        cfg.diffusion.sigma_min = cfg.diffusion.resolved_sigma_min(norm.image_step(ds.train), sigma_data)
    batch = tc.batch_size
    if n_items < batch:
        batch = n_items
        log.warning("the data set has %d training items, fewer than one batch of %d: training with batches "
                    "of %d instead (set train.batch_size to silence this)", n_items, tc.batch_size, batch)
    total_samples = tc.steps * batch
    findings = scan_data(ds, train_x.numpy()) if gc.enabled else []

    # 2. Networks, loss, optimiser ---------------------------------------------------------------
    torch.manual_seed(derive_seed(tc.seed, Stream.INIT))  # initial weights depend on the seed alone
    net = build_denoiser(cfg, ds.item_shape, sigma_data, backbone=backbone).to(device)
    ema = EMA(net)
    phema = PowerEMA(net, tc.phema_stds) if tc.phema_every else None
    ema_net = copy.deepcopy(net).eval().requires_grad_(False)
    opt = build_optimizer(net.parameters(), tc)
    loss_fn = make_loss(cfg)
    n_params = count_parameters(net.backbone)
    _, bin_edges = sigma_grid(loss_fn, sigma_data, SIGMA_BINS)
    bin_edges = bin_edges.to(device)
    val_source = ds.holdout if len(ds.holdout) else ds.train
    val_items = torch.as_tensor(np.asarray(norm.forward(val_source[:tc.val_items]), dtype=np.float32))
    validation = FixedValidation.build(val_items.to(device), loss_fn, sigma_data, bins=SIGMA_BINS,
                                       seed=derive_seed(cfg.data.split_seed, Stream.VALIDATION))
    if gc.enabled and gc.canaries:
        start_canaries(net, norm, ds, device)

    # 3. Run directory and resume ----------------------------------------------------------------
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    save_config(run_dir, cfg)
    write_text_atomic(norm_path, json.dumps(norm.to_dict()))
    write_text_atomic(run_dir / "dataset.json", json.dumps({
        "name": ds.name, "kind": ds.kind, "item_shape": list(ds.item_shape), "n_train": len(ds.train),
        "n_holdout": len(ds.holdout), "columns": ds.columns, "notes": ds.notes, "description": describe(ds),
        "fingerprint": fingerprint,
        "modes": None if ds.modes is None else np.asarray(ds.modes).tolist(), "mode_std": ds.mode_std,
    }, indent=2))
    metrics_log = JsonlLog(run_dir / "metrics.jsonl")
    incidents = JsonlLog(run_dir / "incidents.jsonl")
    guard = Guard(gc, bins=SIGMA_BINS, device=device, incidents=incidents,
                  fused_optimizer=bool(opt.defaults.get("fused"))) if gc.enabled else None
    # The state at step 0 (weights from the seed alone), for a restart at a lower LR (Guard.observe_weights).
    initial = take_snapshot(0, 0, net, ema, opt, guard, phema=phema) \
        if guard is not None and gc.weight_growth and gc.growth_steps else None
    if guard is not None:
        guard.observe_weights(0, weight_norm(net.backbone))
    step, samples_seen, wall_before = 0, 0, 0.0
    existing = ckpt.list_checkpoints(run_dir / "checkpoints")
    if existing:
        state = ckpt.load_checkpoint(existing[-1])
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, samples_seen = state["state"]["step"], state["state"]["samples_seen"]
        wall_before = state["state"].get("wall_s", 0.0)
        if guard is not None and "guard" in state["state"]:
            guard.load(state["state"]["guard"], state["extra"]["guard"])
        if phema is not None and "phema" in state["state"]:
            phema.load_state_dict(state["extra"]["phema"], state["state"]["phema"])
        log.info("resuming %s from step %d (%d samples seen)", run_dir, step, samples_seen)
        if saved_cfg is not None and saved_cfg.train.steps != tc.steps and tc.lr_schedule == "cosine":
            log.warning("train.steps changed from %d to %d: the cosine LR schedule now spans the new length",
                        saved_cfg.train.steps, tc.steps)
    start_step = step
    remove_newer(run_dir / "phema", "snapshot-*.safetensors", samples_seen)
    metrics_log.truncate_after(step)
    incidents.truncate_after(step)
    board = TensorBoardLog(run_dir / "tensorboard", step=step) if tc.tensorboard else None
    probe = SampleMetrics(cfg, ds, norm, device) if tc.sample_metrics_every else None
    if step == 0:
        for f in findings:  # the data scan's warnings, once per run
            log.warning("data: %s", f.message)
            if guard is not None:
                guard.incident("data_scan", 0, "warned", code=f.code, message=f.message)
    log.info("training %s backbone, %s parameters, batch %d, lr %g, %d steps on %s",
             type(net.backbone).__name__, f"{n_params:,}", batch, tc.lr, tc.steps, device)

    def checkpoint_now() -> None:
        meta: dict[str, Any] = {}
        tensors: dict[str, dict[str, torch.Tensor]] = {}
        if guard is not None:
            meta["guard"], tensors["guard"] = guard.state_json(), guard.tensors()
        if phema is not None:
            meta["phema"], tensors["phema"] = phema.metadata(), phema.state_dict()
        ckpt.save_checkpoint(run_dir / "checkpoints", step, model=net.state_dict(), ema=ema.state_dict(),
                             optimizer=opt.state_dict(), keep=tc.keep_checkpoints, extra=tensors,
                             state={"step": step, "samples_seen": samples_seen, "batch_size": batch,
                                    "wall_s": wall_before + time.perf_counter() - t_start, **meta})

    def write_grid(tag: str) -> None:
        ema.copy_to(ema_net)
        x = generate(ema_net, ds.item_shape, cfg.sample.grid_n, seed=cfg.sample.grid_seed, settings=cfg.sample,
                     sigma_range=cfg.diffusion.sigma_range(sigma_data), device=device)
        user = np.asarray(norm.inverse(x.numpy()))
        np.save(run_dir / "samples" / f"{tag}.npy", user.astype(np.float32))
        if ds.kind == "image" or user.shape[1] >= 2:
            save_samples(run_dir / "samples" / f"{tag}.png", user, kind=ds.kind, value_range=norm.value_range,
                         reference=ds.train[:2000] if ds.kind == "vector" else None, title=f"{ds.name}, {tag}")

    def new_window() -> dict[str, Any]:
        return {"loss": torch.zeros((), device=device, dtype=torch.float64),
                "n": torch.zeros((), device=device, dtype=torch.float64), "t": time.perf_counter(), "samples": 0,
                "bin_sum": torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64),
                "bin_n": torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64), "grad": 0.0}

    # 4. The loop ---------------------------------------------------------------------------------
    net.train()
    t_start = time.perf_counter()
    window = new_window()
    last_loss = float("nan")
    eval_s = 0.0  # time spent on validation, canaries, sample metrics and grids (evaluation's share of the run)
    # In-memory snapshots for rollback: the newest few, plus the anchor taken at the last validation near the
    # best held-out loss (a collapse goes back there). A snapshot is only taken after a clean stretch.
    ring: list[Snapshot] = []
    anchor: Snapshot | None = None
    if guard is not None:
        ring.append(take_snapshot(step, samples_seen, net, ema, opt, guard, phema=phema))
    ema_print = weights_fingerprint(ema.params) if guard is not None else 0.0
    params = list(net.parameters())
    # Adaptive clipping compares with recent accepted gradient norms: the guard's (kept as logarithms, in the last
    # channel of its history), or its own when the guard is off.
    clip_history = RobustHistory(200, 1, device) if guard is None else None
    # In a log file (no terminal) the bar is redrawn every 30 s rather than twice a second.
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)

    def roll_back(decision: Rollback) -> None:
        nonlocal step, samples_seen, ring, anchor, window
        target = guard.choose(decision, ring, anchor, initial)
        keep_going = guard.rolled_back(decision, target)
        restore_snapshot(target, net, ema, opt, guard, phema)
        step, samples_seen = target.step, target.samples_seen
        remove_newer(run_dir / "phema", "snapshot-*.safetensors", samples_seen)
        remove_newer(run_dir / "samples", "step-*.*", step)  # grids of the abandoned stretch
        ring = [s for s in ring if s.step <= step] or [target]
        anchor = anchor if anchor is not None and anchor.step <= step else None
        metrics_log.truncate_after(step)
        if board is not None:
            board.truncate_after(step)
        ckpt.remove_after(run_dir / "checkpoints", step)  # written after the snapshot: possibly damaged
        bar.n = step
        bar.refresh()
        window = new_window()
        log.warning("stability guard: %s at step %d; rolled back to step %d with the LR × %g",
                    decision.reason, decision.step, step, guard.state.lr_scale)
        if not keep_going:
            checkpoint_now()
            bar.close()
            if board is not None:
                board.close()
            diagnosis = guard.diagnose(tc.precision, tc.lr, tc.grad_clip)
            write_text_atomic(run_dir / "summary.json", json.dumps(
                {"stopped": diagnosis, "steps": step, "stability": guard.summary()}, indent=2))
            raise TrainingStopped(f"{diagnosis} The last good state (step {step}) is saved in "
                                  f"{run_dir / 'checkpoints'}; change the settings and run `train` again to resume.")

    while step < tc.steps:
        if guard is not None and step in guard.state.skip_steps:
            # A batch that led to a rollback: replaying the run passes over it.
            samples_seen += batch
            step += 1
            bar.update(1)
        else:
            # Batch, in a data order derived from (seed, epoch); augmentation and noise from (seed, step).
            idx = batch_indices(n_items, tc.seed, samples_seen, batch)
            x = train_x[torch.from_numpy(idx)].to(device)
            if cfg.data.hflip and ds.kind == "image":
                x = hflip(x, torch.Generator().manual_seed(derive_seed(tc.seed, Stream.HFLIP, step)))
            aug_labels = None
            if cfg.data.augment:
                x, aug_labels = augment(x, cfg.data.augment,
                                        torch.Generator().manual_seed(derive_seed(tc.seed, Stream.AUGMENT, step)))
            if batch_transform is not None:
                x = batch_transform(step, x)
            torch.manual_seed(derive_seed(tc.seed, Stream.DROPOUT, step))
            g = torch.Generator().manual_seed(derive_seed(tc.seed, Stream.NOISE, step))

            lr = lr_at(samples_seen, tc, total_samples) * (guard.state.lr_scale if guard is not None else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            share = curriculum_share(samples_seen, tc)
            if share < 1:  # the σ curriculum: only the top `share` quantiles of the training σ distribution
                u = 1 - share + share * torch.rand(len(x), generator=g, dtype=torch.float64)
                sig = sample_sigma(len(x), loss_fn.noise, sigma_data=sigma_data, p_mean=loss_fn.p_mean,
                                   p_std=loss_fn.p_std, u=u).to(device)
                per_sample, sigma = loss_fn(net, x, generator=g, sigma=sig, aug=aug_labels)
            else:
                per_sample, sigma = loss_fn(net, x, generator=g, aug=aug_labels)
            loss = per_sample.mean()
            opt.zero_grad(set_to_none=True)
            (loss + weight_penalty(params, tc.l1, tc.l2) if tc.l1 or tc.l2 else loss).backward()
            if tc.grad_clip_adaptive > 0:
                recent = clip_history.values if clip_history is not None else guard.hist.values[:, -1].exp()
                grad_norm = clip_gradients(params, tc.grad_clip, tc.grad_clip_adaptive, recent)
                if clip_history is not None:
                    clip_history.push(grad_norm.reshape(1).float(), torch.ones((), dtype=torch.bool, device=device))
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else math.inf)
            with torch.no_grad():
                b = torch.bucketize(sigma.to(device), bin_edges)
                step_sum = torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64).index_add_(
                    0, b, per_sample.detach().double())
                step_n = torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64).index_add_(
                    0, b, torch.ones_like(per_sample, dtype=torch.float64))
            logged = (step + 1) % tc.log_every == 0 or step + 1 == tc.steps
            before = [p.detach().clone() for p in params] if logged else None  # for the update/weight ratio
            if guard is not None:
                bad = guard.gate(per_sample.detach(), b, grad_norm)
                guard.apply_gate(opt, bad)
                guard.note_step(step, idx)
                ok = (~bad).double()
            else:
                opt.step()
                ok = torch.ones((), device=device, dtype=torch.float64)
            if before is not None:
                window["update_ratio"] = update_ratio(params, before)
            samples_seen += batch
            step += 1
            ema.update(net, ema_beta(batch, samples_seen, tc.ema_halflife_samples, tc.ema_rampup))
            if phema is not None:
                phema.update(net, samples_seen)  # time in samples seen (DESIGN.md); profiles are scale-free

            # Statistics accumulate on the device; the host looks only when logging (no sync per step).
            # Steps the guard rejected are left out, so one bad batch does not hide the run's real loss.
            with torch.no_grad():
                window["loss"] += torch.where(ok > 0, loss.detach().double(), 0.0)
                window["n"] += ok
                window["bin_sum"] += torch.where(ok > 0, step_sum, 0.0)
                window["bin_n"] += step_n * ok
                window["grad"] = grad_norm.detach()
            window["samples"] += batch
            bar.update(1)

        if guard is not None and guard.due():
            decision = guard.check(train_x)
            if decision is not None and decision.needs_evidence:  # skipped steps: look for damage first
                t_eval = time.perf_counter()
                target = guard.choose(decision, ring, anchor, initial)
                decision = guard.confirm(decision, measure_damage(guard, step, target, net, ema_net, validation,
                                                                  loss_fn))
                eval_s += time.perf_counter() - t_eval
            if decision is not None:
                roll_back(decision)
                continue
            # A snapshot only after a clean stretch: no skipped step among the last `snapshot_every`.
            clean = guard.skipped_recently(step, gc.snapshot_every) == 0
            if clean and (not ring or step - ring[-1].step >= gc.snapshot_every):
                ring = [*ring[-1:], take_snapshot(step, samples_seen, net, ema, opt, guard, phema=phema)]

        if step % tc.log_every == 0 or step == tc.steps:
            now = time.perf_counter()
            n_ok = float(window["n"])
            last_loss = float(window["loss"]) / n_ok if n_ok else float("nan")
            rate = window["samples"] / max(now - window["t"], 1e-9)
            bins = (window["bin_sum"] / window["bin_n"].clamp(min=1)).tolist()
            lr = lr_at(samples_seen, tc, total_samples) * (guard.state.lr_scale if guard is not None else 1.0)
            record = {"step": step, "samples_seen": samples_seen, "loss": round(last_loss, 6), "lr": lr,
                      "grad_norm": round(float(window["grad"]), 6), "samples_per_s": round(rate, 1),
                      "wall_s": round(wall_before + now - t_start, 2),
                      "loss_bins": [round(v, 6) for v in bins], **weight_diagnostics(net.backbone, window, device)}
            decision = None
            if step % tc.val_every == 0 or step == tc.steps:
                t_eval = time.perf_counter()
                ema.copy_to(ema_net)
                net.eval()
                val_raw = validation.evaluate(net, loss_fn)
                net.train()
                val_ema = validation.evaluate(ema_net, loss_fn)
                record.update({"val_loss": round(val_raw["loss"], 6), "val_loss_bins": val_raw["bins"],
                               "val_loss_ema": round(val_ema["loss"], 6), "val_loss_ema_bins": val_ema["bins"]})
                if guard is not None:
                    if gc.canaries:
                        ema_print, dead = periodic_canaries(guard, step, net, ema, ds.item_shape, device,
                                                            val_ema["loss"], ema_print)
                        if dead:  # outputs that no longer depend on σ: the network died (e.g. LR far too high)
                            decision = Rollback(reason="dead_network", step=step, first_bad=step, anchor=True,
                                                evidence={"sigma_response": "below 1e-6"})
                    decision = decision or guard.observe_validation(step, val_raw["loss"], last_loss)
                    if initial is not None and step > gc.growth_steps:
                        initial = None  # past the window: a restart is no longer possible, free the memory
                    decision = decision or guard.observe_weights(step, weight_norm(net.backbone))
                    if decision is None and guard.near_best(val_raw["loss"]) and step > ring[0].step and \
                            guard.skipped_recently(step, gc.snapshot_every) == 0:
                        anchor = take_snapshot(step, samples_seen, net, ema, opt, guard, val_loss=val_raw["loss"],
                                               phema=phema)
                eval_s += time.perf_counter() - t_eval
                if decision is None and probe is not None and probe.unavailable is None and \
                        is_due(step, tc.steps, tc.sample_metrics_every, tc.val_every):
                    if probe.allowed(eval_s, time.perf_counter() - t_start, rate):
                        t_eval = time.perf_counter()
                        scores = probe.evaluate(ema_net)  # ema_net holds the EMA weights validated above
                        if scores is not None:
                            record["sample_metrics"] = scores
                        eval_s += time.perf_counter() - t_eval
                    else:
                        record["sample_metrics_skipped"] = SKIPPED
            if guard is not None:
                record["guard"] = {"skipped": len(guard.state.skip_steps), "rollbacks": len(guard.state.rollbacks),
                                   "lr_scale": guard.state.lr_scale}
            metrics_log.write(record)
            if board is not None:
                board.write(record)
            postfix = {"loss": f"{last_loss:.4f}", "samples_s": f"{rate:,.0f}", "lr": f"{lr:.2g}"}
            if guard is not None and guard.postfix():
                postfix["guard"] = guard.postfix()
            bar.set_postfix(postfix)
            window = new_window()
            if decision is not None:
                roll_back(decision)
                continue
        if phema is not None and (step % tc.phema_every == 0 or step == tc.steps) and phema.step > 0:
            write_snapshot(run_dir / "phema", phema.snapshot(torch.float16))
        if step % tc.checkpoint_every == 0 and step < tc.steps:
            checkpoint_now()
        if tc.sample_every and step % tc.sample_every == 0 and step < tc.steps:
            t_eval = time.perf_counter()
            write_grid(f"step-{step}")
            eval_s += time.perf_counter() - t_eval
    bar.close()
    loop_share = eval_s / max(time.perf_counter() - t_start, 1e-9)  # the share train.eval_budget governs

    # 5. Final checkpoint, samples and summary ----------------------------------------------------
    if step > start_step or not existing:
        checkpoint_now()
    wall = wall_before + time.perf_counter() - t_start
    t_eval = time.perf_counter()
    write_grid(f"step-{step}")
    ema.copy_to(ema_net)
    n_eval = min(1000, max(len(ds.holdout), 500))
    x = generate(ema_net, ds.item_shape, n_eval, seed=derive_seed(tc.seed, Stream.SUMMARY), settings=cfg.sample,
                 sigma_range=cfg.diffusion.sigma_range(sigma_data), device=device)
    samples_user = np.asarray(norm.inverse(x.numpy()))
    quality = _summary_quality(ds, norm, samples_user)
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    if probe is not None and any("sample_metrics" in r for r in records):
        probe.ensure_reference()  # a resumed call that evaluated nothing itself still names the metric
    eval_s += time.perf_counter() - t_eval
    summary = {
        "data": describe(ds), "backbone": type(net.backbone).__name__, "parameters": n_params,
        "steps": step, "samples_seen": samples_seen, "batch_size": batch, "wall_s": round(wall, 1),
        "sigma_data": sigma_data, "final_loss": round(last_loss, 6),
        # validation, canaries, sample metrics, grids and this summary's samples, as a share of this call's time
        "evaluation_share": round(eval_s / max(time.perf_counter() - t_start, 1e-9), 4),
        "evaluation_share_during_training": round(loop_share, 4),  # without this summary's samples
        "sampler": {"name": cfg.sample.sampler, "steps": cfg.sample.steps,
                    "nfe": nfe(cfg.sample.sampler, cfg.sample.steps)},
        "quality": quality,
    }
    if guard is not None:
        summary["stability"] = guard.summary()
    if probe is not None:
        summary["sample_metrics"] = probe.summary(records)
        if "metric" in summary["sample_metrics"]:
            # The best model by the chosen metric among the in-training evaluations, and its checkpoint if kept.
            best = best_evaluation(records, summary["sample_metrics"]["metric"],
                                   summary["sample_metrics"]["higher_is_better"])
            if best is not None:
                kept = (run_dir / "checkpoints" / f"step-{best['step']}").is_dir()
                summary["best_sample_metric"] = {**best, "checkpoint": f"step-{best['step']}" if kept else None}
    last_val = [r for r in records if "val_loss" in r]
    if last_val:
        summary["val_loss"] = last_val[-1]["val_loss"]
        summary["val_loss_ema"] = last_val[-1]["val_loss_ema"]
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    if board is not None:
        board.close()
    return TrainResult(run_dir=run_dir, config=cfg, summary=summary)


def measure_damage(guard: Guard, step: int, target: Snapshot, net: Denoiser, scratch: Denoiser,
                   validation: FixedValidation, loss_fn: DenoisingLoss) -> Damage:
    """The evidence `Guard.confirm` judges: the fixed held-out loss now and at the snapshot a rollback would
    restore (loaded into `scratch`, the EMA network's copy, which every other use refills first)."""
    net.eval()
    now = validation.evaluate(net, loss_fn)["loss"]
    net.train()
    scratch.load_state_dict(target.model)
    before = validation.evaluate(scratch, loss_fn)["loss"]
    return Damage(val_loss=now, val_loss_before=before, before_step=target.step,
                  skipped=guard.skipped_recently(step, guard.cfg.skip_window))


@torch.no_grad()
def update_ratio(params: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
    """‖Δw‖ / ‖w‖ over all parameters for one optimiser step: how much of the weights a step rewrites
    (healthy Adam training moves ~1e-3 of them per step; ≳1e-2 means the LR is rewriting the network)."""
    delta = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(torch._foreach_sub(params, before))))
    return delta / torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before))).clamp(min=1e-12)


@torch.no_grad()
def weight_norm(module: nn.Module) -> float:
    """‖w‖ over all parameters of a module, as one vector."""
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.detach() for p in module.parameters()]))))


def weight_diagnostics(backbone: nn.Module, window: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The logged step's update/weight ratio, the weight norm of each top-level block, and peak memory."""
    norms = {}
    for name, block in backbone.named_children():
        if any(True for _ in block.parameters()):
            norms[name] = round(weight_norm(block), 4)
    if device.type == "cuda":
        memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # peak resident memory of the process (Linux reports KiB, macOS bytes)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        memory_mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    out: dict[str, Any] = {"weight_norms": norms, "memory_mb": round(memory_mb, 1)}
    if "update_ratio" in window:
        out["update_ratio"] = float(f"{float(window['update_ratio']):.4g}")
    return out


def scan_data(ds: Dataset, normalised: np.ndarray) -> list[Any]:
    """The pre-training data scan (data/scan.py): constant features, outliers, duplicates."""
    return scan(ds.train, normalised, ds.kind, ds.columns)


def start_canaries(net: Denoiser, norm: Normaliser, ds: Dataset, device: torch.device) -> None:
    """Silent bugs that would waste the whole run are refused before it starts."""
    response = sigma_response(net.backbone, ds.item_shape, device, jitter=True)
    if not response >= 1e-6:  # NaN too: a jittered network whose output is ~0 is broken as well
        raise SteadydiffError(
            f"canary: the backbone {type(net.backbone).__name__}'s output does not change with the noise level "
            f"(relative change {response:.1e} between σ=0.05 and σ=20): it ignores its c_noise input, so it "
            "cannot learn to denoise at every noise level. Use c_noise in forward(x, c_noise, cond), or set "
            "guard.canaries=false to train it anyway.")
    error = roundtrip_error(norm, ds.train[:256])
    if error > 1e-3:
        raise SteadydiffError(f"canary: the normaliser does not invert (round-trip error {error:.2e} of the data's "
                              "std): samples would come back in the wrong units")


def periodic_canaries(guard: Guard, step: int, net: Denoiser, ema: EMA, item_shape: tuple[int, ...],
                      device: torch.device, val_ema: float, before: float) -> tuple[float, bool]:
    """At each validation: the EMA moves and copies buffers, the network responds to σ, EMA loss is finite.

    Returns the EMA's fingerprint for the next call, and whether the network's output no longer depends on σ.
    """
    now = weights_fingerprint(ema.params)
    if now == before:
        guard.incident("canary", step, "warned", check="ema_moves",
                       message="the EMA weights did not change since the last validation")
    bufs = dict(net.named_buffers())
    if any(not torch.equal(ema.buffers[k], bufs[k]) for k in ema.buffers):
        guard.incident("canary", step, "warned", check="ema_buffers",
                       message="EMA buffers differ from the model's: buffers must be copied, not averaged")
    dead = sigma_response(net.backbone, item_shape, device, jitter=False) < 1e-6
    if dead:
        guard.incident("canary", step, "rollback", check="sigma_response",
                       message="the network's output no longer changes with the noise level")
    if not math.isfinite(val_ema):
        guard.incident("canary", step, "warned", check="ema_validation", message=f"EMA validation loss is {val_ema}")
    return now, dead


__all__ = ["TrainResult", "build_denoiser", "train"]
