"""The training loop: one linear function with labelled sections (EDM2's training_loop.py, nanoGPT).

Sections: 1. data and normaliser  2. networks and optimiser  3. run directory and resume
4. the loop (batch → loss → backward → clip → step → EMA → log/validate/sample metrics/checkpoint/grid)
5. summary. Every random draw is derived from (seed, step), so resuming from a checkpoint reproduces an unbroken
run; evaluation draws only from generators of its own, so it never shifts the training's random numbers.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.flop_counter
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_npy_atomic, write_text_atomic
from ..data import Dataset, describe, fit_normaliser, image_levels, load_data
from ..data.augment import AUG_DIM, augment, hflip
from ..data.cond import CondSpec, blocked_classes, draw_conditions, model_conditions
from ..data.export import save_samples
from ..data.masks import draw_masks, lowres_of, parse_masks, whole_blocks, window_level
from ..data.normalise import Normaliser
from ..data.scan import scan
from ..diffusion import Denoiser, DenoisingLoss
from ..diffusion.loss import mmd_term
from ..diffusion.noise import sample_sigma
from ..errors import ConfigError, SteadydiffError, TrainingStopped
from ..metrics import mode_stats
from ..metrics.reference import (
    FEATURE_NET_FILE,
    MAX_TABLE_COLUMNS,
    PRDC_K,
    RANKED,
    SAMPLES_FILE,
    Reference,
    default_metric,
)
from ..metrics.tables import table_scores
from ..nets import build_backbone, count_parameters
from ..sampling import generate, nfe, null_like
from ..threads import REDUCED_PRECISION_FLAGS, choose_threads, slow_reduced_precision
from ..typed_config import validate
from . import checkpoint as ckpt
from . import distributed as dist
from .batches import Reader, StreamedItems
from .config import RunConfig
from .distributed import World
from .ema import EMA, ema_beta
from .guard import (
    Damage,
    Guard,
    RobustHistory,
    Rollback,
    Snapshot,
    cond_response,
    restore_snapshot,
    roundtrip_error,
    sigma_response,
    take_snapshot,
    weights_fingerprint,
)
from .optim import build_optimizer, clip_gradients, curriculum_share, lr_at, weight_penalty
from .order import Stream, batch_indices, derive_seed
from .phema import PowerEMA, write_snapshot
from .rundir import JsonlLog, NullLog, check_resume_config, remove_newer, save_config
from .sample_metrics import SKIPPED, SampleMetrics, best_evaluation, is_due, rounded
from .scaler import LossScaler
from .tensorboard import TensorBoardLog
from .validation import FixedValidation, sigma_grid

log = logging.getLogger("steadydiff")

SIGMA_BINS = 8  # equal-probability bins of the training σ distribution, for per-σ statistics


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def measure_sigma_data(x: torch.Tensor | StreamedItems) -> float:
    """σ_data: the standard deviation of the normalised training data over all (observed) entries."""
    if isinstance(x, StreamedItems):
        return x.std()
    return float(np.nanstd(x.numpy().astype(np.float64)))


# The data scan of a streamed set reads training items drawn at random, at most 20,000 and at most 32 MiB of float32
# (so its sample, held twice — user units and normalised — stays small beside the run whatever the item size)
SCAN_SAMPLE, SCAN_SAMPLE_BYTES = 20_000, 32 << 20


def normalised_items(ds: Dataset, norm: Normaliser) -> torch.Tensor | StreamedItems:
    """The normalised training items: a tensor in memory, or read on demand for streamed data (data.stream)."""
    if ds.streamed:
        return StreamedItems(ds.train, norm)
    return torch.as_tensor(np.asarray(norm.forward(ds.train), dtype=np.float32))


def data_workers(cfg: RunConfig, ds: Dataset, device: torch.device) -> int:
    """DataLoader workers for streamed batches: data.workers, else 0 on a CPU and 2 on a GPU (DataConfig)."""
    if not ds.streamed:
        return 0
    if cfg.data.workers is not None:
        return cfg.data.workers
    return 2 if device.type == "cuda" else 0


def build_denoiser(cfg: RunConfig, item_shape: tuple[int, ...], sigma_data: float,
                   backbone: nn.Module | None = None, cond: CondSpec | None = None) -> Denoiser:
    aug_dim = AUG_DIM if cfg.data.augment else 0  # train() refuses data.augment for vectors
    if backbone is None:
        backbone = build_backbone(cfg.net, item_shape, aug_dim=aug_dim, extra=extra_channels(cfg, item_shape),
                                  cond_classes=cond.n_classes if cond is not None and cond.kind == "class" else 0,
                                  cond_dim=cond.dim if cond is not None and cond.kind == "vector" else 0,
                                  cond_tokens=(cond.tokeniser.size, cond.max_len) if cond is not None and
                                  cond.kind == "text" else (0, 0))
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
    return Denoiser(backbone, sigma_data, cfg.diffusion.parameterization, autocast_dtype=autocast)


def extra_channels(cfg: RunConfig, item_shape: tuple[int, ...]) -> int:
    """Extra input channels (features, for vectors) beside x: the known values and the mask of a mask-conditioned
    network, the low-resolution image of a super-resolution one."""
    return 2 * int(item_shape[0]) if cfg.train.masks else int(item_shape[0]) if cfg.train.lowres else 0


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
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json (empty on processes other than rank 0)
    net: Denoiser | None = None  # the trained network, raw weights, as this process holds it
    skipped_steps: list[int] = field(default_factory=list)  # the steps the stability guard skipped


def summary_quality(ds: Dataset, norm: Normaliser, samples_user: np.ndarray,
                    labels: np.ndarray | None = None, run_dir: Path | None = None) -> dict[str, Any]:
    """How well, by the one definition `steadydiff eval` and the in-training sample metrics use too
    (metrics.reference.Reference in its default feature space): every metric of the samples, what as many real
    training items score (`real_data`, the floor), and `metric`, the one to read first. Data with too few
    held-out items gets mode statistics only (where modes are known) and the reason in `unscored`."""
    q: dict[str, Any] = {"n_samples": int(len(samples_user))}
    try:
        ref = Reference(ds, norm, len(samples_user), cache=None if run_dir is None else run_dir / FEATURE_NET_FILE)
    except SteadydiffError as exc:
        q["unscored"] = str(exc)
        if ds.modes is not None and ds.mode_std is not None and np.isfinite(samples_user).all():
            q.update(rounded(mode_stats(samples_user.reshape(len(samples_user), -1), ds.modes, ds.mode_std)))
        if ds.kind == "vector" and np.isfinite(samples_user).all() and ds.item_shape[0] <= MAX_TABLE_COLUMNS:
            # a table with too few complete rows is still scored column by column, missing values read as absent
            held = len(ds.holdout) >= PRDC_K + 1
            q.update(rounded(table_scores(ds.holdout if held else ds.train, samples_user, norm.table)))
            q["table_scores_against"] = "held-out rows" if held else "training rows (no held-out rows to use)"
            if held:
                q["real_data"] = rounded(table_scores(ds.holdout, ds.train[:len(samples_user)], norm.table))
        return q
    scores = ref.score(samples_user, labels=labels)
    if "non_finite_samples" in scores:
        return {**q, **scores}
    return {**q, "metric": default_metric(ref), "space": ref.space, **rounded(scores),
            "real_data": rounded(ref.real_data)}


@dataclass
class Parts:
    """What a run is made of: fixed once `setup` has built it (sections 1–3)."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    world: World  # this process among the training processes (rank 0 of 1 without torchrun)
    ds: Dataset
    norm: Normaliser
    # the normalised training items (missing entries at 0, the observed mean); streamed data: read on demand
    train_x: torch.Tensor | StreamedItems
    train_obs: torch.Tensor | None  # 1 where a training entry is observed (None: the data has no missing values)
    cond: CondSpec | None  # the run's condition (None: unconditional)
    mask_kinds: tuple[str, ...]  # train.masks, parsed ('' : no mask-conditioned training)
    train_cond: torch.Tensor | None  # the training items' conditions as the network reads them
    batch: int  # the global batch: every process draws it whole and trains on its share
    net: Denoiser
    model: nn.Module  # what the training step calls: `net`, or `net` in DistributedDataParallel
    ema: EMA
    phema: PowerEMA | None
    ema_net: Denoiser  # holds the EMA weights while they are evaluated; scratch for a snapshot's weights
    opt: torch.optim.Optimizer
    loss_fn: DenoisingLoss
    bin_edges: torch.Tensor  # the inner edges of the SIGMA_BINS σ-bins
    validation: FixedValidation
    guard: Guard | None
    metrics_log: JsonlLog
    board: TensorBoardLog | None
    probe: SampleMetrics | None
    params: list[torch.nn.Parameter]
    clip_history: RobustHistory | None  # adaptive clipping's own history when the guard (which keeps one) is off
    batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None
    reader: Reader | None = None  # streamed batches (data.stream); None: indexed from train_x in memory
    scaler: LossScaler | None = None  # fp16's dynamic loss scale (train.precision=fp16)

    @property
    def sigma_data(self) -> float:
        return float(self.cfg.diffusion.sigma_data)  # resolved by setup

    @property
    def total_samples(self) -> int:
        return self.cfg.train.steps * self.batch

    def lr(self, samples_seen: int) -> float:
        return lr_at(samples_seen, self.cfg.train, self.total_samples) * \
            (self.guard.state.lr_scale if self.guard is not None else 1.0)


@dataclass
class RunState:
    """What changes as the run trains (section 4): position, the logging window, snapshots for rollback."""

    step: int
    samples_seen: int
    wall_before: float  # wall seconds spent by earlier calls on this run (a resumed run)
    bar: Any  # the progress bar
    window: dict[str, Any] = field(default_factory=dict)  # statistics since the last log line, on the device
    t_start: float = field(default_factory=time.perf_counter)
    last_loss: float = math.nan
    eval_s: float = 0.0  # time spent on validation, canaries, sample metrics and grids (evaluation's share)
    # In-memory snapshots for rollback: the newest few, plus the anchor taken at the last validation near the
    # best held-out loss (a collapse goes back there), and the state at step 0 for a restart at a lower LR.
    ring: list[Snapshot] = field(default_factory=list)
    anchor: Snapshot | None = None
    initial: Snapshot | None = None
    ema_print: float = 0.0  # the EMA weights' fingerprint at the last validation (the EMA must move)
    best_written: int | None = None  # the step whose checkpoint train.keep_best has just written


def train(cfg: RunConfig, out: str | Path, data: Any = None, *, progress: bool = True,
          backbone: nn.Module | None = None,
          batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> TrainResult:
    """Train (or resume) the run in `out`. `backbone` replaces the configured network F (any module called as
    F(x, c_noise, cond)); `batch_transform(step, x)` is applied to each normalised training batch after the
    built-in augmentation (a custom augmentation, or a fault planted to test the stability guard).

    Under torchrun each process calls `train` alike (train/distributed.py); rank 0 writes the run directory and
    returns the summary, the others an empty one."""
    cfg = validate(copy.deepcopy(cfg))
    world, device = dist.from_environment(resolve_device(cfg.train.device), cfg.train.dist_timeout_s)
    try:
        return run(cfg, Path(out), data, backbone, batch_transform, progress, world, device)
    except (torch.distributed.DistError, RuntimeError) as exc:
        if world.active and is_collective_failure(exc):
            raise dist.lost_peer(world, exc, out) from exc
        raise
    finally:
        dist.close(world)


def is_collective_failure(exc: BaseException) -> bool:
    """Whether an error came from torch.distributed's transport (a peer that died or timed out)."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("gloo", "nccl", "connection closed", "connection reset", "timed out"))


def run(cfg: RunConfig, run_dir: Path, data: Any, backbone: nn.Module | None,
        batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None, progress: bool, world: World,
        device: torch.device) -> TrainResult:
    p, st, resumed = setup(cfg, run_dir, data, backbone, batch_transform, progress and world.main, world, device)
    tc, start_step = p.cfg.train, st.step

    # 4. The loop: one optimiser step, the guard's look, a log line, outputs ----------------------
    while st.step < tc.steps:
        if p.guard is not None and st.step in p.guard.state.skip_steps:
            skip_replayed_step(p, st)  # a batch that led to a rollback: replaying the run passes over it
        else:
            train_step(p, st)
        after_step(p, st)
    return finish(p, st, resumed, start_step)


def after_step(p: Parts, st: RunState) -> None:
    """After an optimiser step: the guard's look, a log line (with validation when due), then a rollback or the
    outputs due at this step."""
    tc = p.cfg.train
    decision = guard_check(p, st) if p.guard is not None and p.guard.due() else None
    if decision is None and (st.step % tc.log_every == 0 or st.step == tc.steps):
        decision = log_and_validate(p, st)
    if decision is not None:
        roll_back(p, st, decision)
    else:
        write_outputs(p, st)


def finish(p: Parts, st: RunState, resumed: bool, start_step: int) -> TrainResult:
    """Section 5: the final checkpoint, samples and summary (rank 0; the other processes return their weights)."""
    st.bar.close()
    if p.reader is not None:
        p.reader.close()
    if not p.world.main:
        return TrainResult(run_dir=p.run_dir, config=p.cfg, net=p.net, skipped_steps=skipped(p))
    loop_share = st.eval_s / max(time.perf_counter() - st.t_start, 1e-9)  # the share train.eval_budget governs

    # 5. Final checkpoint, samples and summary ----------------------------------------------------
    if st.step > start_step or not resumed:
        checkpoint(p, st)
    summary = summarise(p, st, loop_share)
    write_text_atomic(p.run_dir / "summary.json", json.dumps(summary, indent=2))
    if p.board is not None:
        p.board.close()
    return TrainResult(run_dir=p.run_dir, config=p.cfg, summary=summary, net=p.net, skipped_steps=skipped(p))


def skipped(p: Parts) -> list[int]:
    return sorted(p.guard.state.skip_steps) if p.guard is not None else []


def setup(cfg: RunConfig, run_dir: Path, data: Any, backbone: nn.Module | None,
          batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None,
          progress: bool, world: World = dist.SINGLE, device: torch.device | None = None
          ) -> tuple[Parts, RunState, bool]:
    """Sections 1–3: data and normaliser, networks and optimiser, the run directory and what it resumes from.
    Returns the run's parts, its state (at the resumed step), and whether a checkpoint was resumed."""
    cfg = validate(copy.deepcopy(cfg))
    tc, gc = cfg.train, cfg.guard
    device = resolve_device(tc.device) if device is None else device
    saved_cfg = check_resume_config(run_dir, cfg)  # refuse another run's directory before any work
    world.barrier()  # every process has read the directory as it was before rank 0 writes to it

    # 1. Data and normaliser ---------------------------------------------------------------------
    ds = load_data(cfg.data, data)
    fingerprint = ds.fingerprint
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
        fit_normaliser(ds.train, ds.kind, ds.columns, ds.table)
    train_x = normalised_items(ds, norm)
    resolve_config(cfg, ds, norm, train_x, backbone, fresh=saved_cfg is None)
    train_x, train_obs = observed(train_x) if isinstance(train_x, torch.Tensor) else (train_x, None)
    if train_obs is not None:
        log.info("data: %.3g%% of the training values are missing: the loss counts observed values only, and "
                 "the run is mask-conditioned (train.masks=%s), so `impute` fills gaps", 100 * ds.missing_share,
                 tc.masks)
    cond = ds.condition(tc.conditional)
    if cond is not None:
        log.info("data: %s", cond.describe())
    if saved_cfg is not None and (run_dir / "dataset.json").exists():
        before = json.loads((run_dir / "dataset.json").read_text()).get("condition")
        if before != (None if cond is None else cond.to_dict()):
            then = "without a condition" if before is None else CondSpec.from_dict(before).describe()
            raise SteadydiffError(f"{run_dir} was trained {then}, "
                                  f"now {'without one' if cond is None else cond.describe()}; resume it with the same "
                                  "data and train.conditional, or choose a new --out for a new run")
    train_cond = None if cond is None else torch.as_tensor(model_conditions(cond, ds.conditions("train")))
    batch = tc.batch_size if world.active else training_batch(tc.batch_size, len(train_x), tc.accumulate)
    if batch != tc.batch_size:
        log.warning("the data set has %d training items, fewer than one batch of %d: training with batches "
                    "of %d instead (set train.batch_size to silence this)", len(train_x), tc.batch_size, batch)
    dist.check_batch(batch, world, tc.accumulate)
    findings = scan_data(ds, train_x, norm) if gc.enabled and world.main else []

    # 2. Networks, loss, optimiser ---------------------------------------------------------------
    sigma_data = cfg.diffusion.sigma_data
    torch.manual_seed(derive_seed(tc.seed, Stream.INIT))  # initial weights depend on the seed alone
    net = build_denoiser(cfg, ds.item_shape, sigma_data, backbone=backbone, cond=cond).to(device)
    ema = EMA(net)
    phema = PowerEMA(net, tc.phema_stds) if tc.phema_every else None
    opt = build_optimizer(net.parameters(), tc)
    loss_fn = make_loss(cfg)
    _, bin_edges = sigma_grid(loss_fn, sigma_data, SIGMA_BINS)
    val_split = "holdout" if len(ds.holdout) else "train"
    val_source = ds.holdout if val_split == "holdout" else ds.train
    val_items, val_obs = observed(torch.as_tensor(np.asarray(norm.forward(val_source[:tc.val_items]),
                                                            dtype=np.float32)))
    val_cond = None if cond is None else \
        torch.as_tensor(model_conditions(cond, ds.conditions(val_split)[:tc.val_items])).to(device)
    validation = FixedValidation.build(val_items.to(device), loss_fn, sigma_data, bins=SIGMA_BINS,
                                       seed=derive_seed(cfg.data.split_seed, Stream.VALIDATION), cond=val_cond,
                                       extra=lowres_of(val_items, tc.lowres).to(device) if tc.lowres else None,
                                       target=None if val_obs is None else val_obs.to(device), world=world)
    if gc.enabled and gc.canaries:
        start_canaries(net, norm, ds, device, val_cond)

    # 3. Run directory and resume ----------------------------------------------------------------
    if world.main:
        write_run_files(cfg, run_dir, ds, norm, cond)
    logs = JsonlLog if world.main else NullLog
    guard = Guard(gc, bins=SIGMA_BINS, device=device, incidents=logs(run_dir / "incidents.jsonl"),
                  fused_optimizer=bool(opt.defaults.get("fused"))) if gc.enabled else None
    model = net
    if world.active:  # gradients averaged over the processes (the same global mean as one process's batch)
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    p = Parts(cfg=cfg, run_dir=run_dir, device=device, world=world, ds=ds, norm=norm, train_x=train_x,
              train_obs=train_obs, cond=cond,
              mask_kinds=parse_masks(tc.masks, ds.kind),
              train_cond=train_cond, batch=batch, net=net, model=model,
              ema=ema, phema=phema, ema_net=copy.deepcopy(net).eval().requires_grad_(False), opt=opt,
              loss_fn=loss_fn, bin_edges=bin_edges.to(device), validation=validation, guard=guard,
              metrics_log=logs(run_dir / "metrics.jsonl"), board=None, probe=None,
              params=list(net.parameters()), clip_history=RobustHistory(200, 1, device) if guard is None else None,
              batch_transform=batch_transform)
    if tc.precision == "fp16":
        p.scaler = LossScaler(device)
    if device.type == "cpu" and slow_reduced_precision(tc.precision):
        log.warning("train.precision=%s on a CPU without %s instructions: steps run many times slower than fp32 here "
                    "(no fast kernels); use train.precision=fp32 on this machine", tc.precision,
                    " or ".join(REDUCED_PRECISION_FLAGS[tc.precision]))
    if ds.streamed:
        workers = data_workers(cfg, ds, device)
        # Under torchrun a process reads only its share of each batch (batches.py), unless a user's batch_transform,
        # which sees the whole batch, might read the other rows.
        mine = world.shard(batch) if world.active and batch_transform is None else None
        p.reader = Reader(train_x, tc.seed, batch, p.total_samples, workers=workers, pin=device.type == "cuda",
                          rows=mine)
        log.info("data: streamed from disk, %d DataLoader worker(s) reading ahead%s", workers,
                 f", this process's {mine.stop - mine.start} of each batch's {batch} items" if mine else "")
    # The state at step 0 (weights from the seed alone), for a restart at a lower LR (Guard.observe_weights).
    initial = take_snapshot(0, 0, net, ema, opt, guard, phema=phema) \
        if guard is not None and gc.weight_growth and gc.growth_steps else None
    if guard is not None:
        guard.observe_weights(0, weight_norm(net.backbone))
    resumed = bool(ckpt.list_checkpoints(run_dir / "checkpoints"))
    step, samples_seen, wall_before, threads = resume(p, saved_cfg)
    if world.main:
        remove_newer(run_dir / "phema", "snapshot-*.safetensors", samples_seen)
        p.metrics_log.truncate_after(step)
        forget_best_after(run_dir, step)
        (guard.log if guard is not None else JsonlLog(run_dir / "incidents.jsonl")).truncate_after(step)
    p.board = TensorBoardLog(run_dir / "tensorboard", step=step) if tc.tensorboard and world.main else None
    p.probe = SampleMetrics(cfg, ds, norm, device, cond, sample_extras(p, tc.sample_metrics_n),
                            cache=run_dir / FEATURE_NET_FILE) \
        if tc.sample_metrics_every and world.main else None
    if step == 0:
        for f in findings:  # the data scan's warnings, once per run
            log.warning("data: %s", f.message)
            if guard is not None:
                guard.incident("data_scan", 0, "warned", code=f.code, message=f.message)
    log.info("training %s backbone, %s parameters, batch %d, lr %g, %d steps on %s",
             type(net.backbone).__name__, f"{count_parameters(net.backbone):,}", batch, tc.lr, tc.steps, device)
    if world.active:
        log.info("distributed: %d processes (%s), %d items each of the global batch %d; lr %g; samples/s in the "
                 "log are the whole job's", world.size, "NCCL" if device.type == "cuda" else "gloo",
                 batch // world.size, batch, tc.lr)

    net.train()
    # In a log file (no terminal) the bar is redrawn every 30 s rather than twice a second.
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    st = RunState(step=step, samples_seen=samples_seen, wall_before=wall_before, bar=bar,
                  window=new_window(device), initial=initial)
    if tc.compile:
        p.model = compile_model(p.model, lambda m: calibration_step(p, st, m))
        p.opt.zero_grad(set_to_none=True)
    if device.type == "cpu":
        # the count a resumed run started with (thread counts may round sums differently: resume stays exact)
        keep = threads if not tc.threads and not os.environ.get("OMP_NUM_THREADS") else 0
        n, why = choose_threads(tc.threads or keep, lambda: calibration_step(p, st), processes=world.size)
        p.opt.zero_grad(set_to_none=True)
        log.info("threads: %d per process (%s)", n, "the count the run started with" if keep else why)
    if guard is not None:
        st.ring.append(take_snapshot(step, samples_seen, net, ema, opt, guard, phema=phema))
        st.ema_print = weights_fingerprint(ema.params)
    return p, st, resumed


def calibration_step(p: Parts, st: RunState, model: nn.Module | None = None) -> None:
    """A training step's forward and backward pass on this process's share of the current batch, without the
    user's batch_transform and without an update: what choose_threads times and compile_model tries."""
    batch = train_batch(p, st, transform=False).rows(p.world.shard(p.batch))
    batch = batch.rows(slice(0, len(batch.x) // p.cfg.train.accumulate))
    per_sample, _ = p.loss_fn(p.model if model is None else model, batch.x, generator=torch.Generator().manual_seed(0),
                              aug=batch.aug, cond=batch.cond, extra=batch.extra, target=batch.target)
    per_sample.mean().backward()


def compile_model(model: nn.Module, trial: Callable[[nn.Module], None]) -> nn.Module:
    """train.compile: the training step's model through torch.compile (the weights stay the same tensors, so
    checkpoints, EMA and the guard's snapshots are untouched). Compilation happens at the first call, so one
    forward and backward pass is tried at once; when it fails the run goes on uncompiled, with a warning."""
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model)
        trial(compiled)
    except Exception as exc:  # noqa: BLE001 — any compiler failure: the eager model is always correct
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        log.warning("train.compile: torch.compile failed (%s: %s); training without it", type(exc).__name__, first)
        return model
    log.info("train.compile: the model is compiled (%.0f s)", time.perf_counter() - t0)
    return compiled


def write_run_files(cfg: RunConfig, run_dir: Path, ds: Dataset, norm: Normaliser, cond: CondSpec | None) -> None:
    """config.toml, normaliser.json, dataset.json and what `sample` needs of the condition (rank 0 only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    save_config(run_dir, cfg)
    write_text_atomic(run_dir / "normaliser.json", json.dumps(norm.to_dict()))
    write_text_atomic(run_dir / "dataset.json", json.dumps({
        "name": ds.name, "kind": ds.kind, "item_shape": list(ds.item_shape), "n_train": len(ds.train),
        "n_holdout": len(ds.holdout), "columns": ds.columns, "notes": ds.notes, "description": describe(ds),
        "fingerprint": ds.fingerprint,
        "modes": None if ds.modes is None else np.asarray(ds.modes).tolist(), "mode_std": ds.mode_std,
        "mode_weights": None if ds.mode_weights is None else np.asarray(ds.mode_weights).tolist(),
        "condition": None if cond is None else cond.to_dict(), "skipped_files": ds.skipped,
        "missing": ds.missing_by_column(),
    }, indent=2))
    if cond is not None and cond.kind == "vector":  # what `sample` draws conditions from when given none
        np.save(run_dir / "conditions.npy", ds.conditions("train").astype(np.float32))
    if cond is not None and cond.kind == "text":
        write_text_atomic(run_dir / "captions.json", json.dumps(list(ds.train_captions)))


def resolve_config(cfg: RunConfig, ds: Dataset, norm: Normaliser, train_x: torch.Tensor | StreamedItems,
                   backbone: nn.Module | None, *, fresh: bool) -> None:
    """Settings resolved from the data when a run starts, then written to config.toml as used: σ_data, the
    training noise's P_mean, augmentation and the sampling σ_min."""
    if cfg.train.window_level and ds.kind != "series":
        raise ConfigError(f"train.window_level=true shifts each series window by its own level; this data holds "
                          f"{ds.kind} items shaped {ds.item_shape}. Set train.window_level=false, or give series "
                          "(data.kind=series).")
    if cfg.diffusion.sigma_data is None:
        cfg.diffusion.sigma_data = round(measure_sigma_data(train_x), 6)
    cfg.diffusion.p_mean = cfg.diffusion.resolved_p_mean(ds.kind)
    explicit_augment = cfg.data.augment
    cfg.data.augment = cfg.data.resolved_augment(ds.kind, fresh=fresh)
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
    if cfg.diffusion.sigma_min is None:  # from the data's value levels
        levels = image_levels(ds.train)
        step = None if levels is None else norm.image_step(levels)
        cfg.diffusion.sigma_min = cfg.diffusion.resolved_sigma_min(step, cfg.diffusion.sigma_data)
    if ds.missing_share and not cfg.train.masks:
        # Missing values: the network must be told which values it is given (CSDI's conditional mask), and a
        # mask-conditioned run is what imputes them afterwards.
        cfg.train.masks = "scattered"
    tc = cfg.train
    if tc.max_epochs is None:
        tc.max_epochs = VECTOR_MAX_EPOCHS if ds.kind in ("vector", "series") else 0.0
    steps = epoch_capped_steps(tc.steps, tc.max_epochs, len(train_x), tc.batch_size, tc.accumulate)
    if steps < tc.steps:
        log.warning("train: %d steps instead of train.steps=%d: that many would pass over the %d training items %.0f "
                    "times, and longer training memorises a small data set (train.max_epochs=%g; 0 trains every step "
                    "asked for)", steps, tc.steps, len(train_x),
                    tc.steps * training_batch(tc.batch_size, len(train_x), tc.accumulate) / len(train_x),
                    tc.max_epochs)
        tc.steps = steps


VECTOR_MAX_EPOCHS = 400.0  # train.max_epochs for vectors, tables and series (config.py says why)


def training_batch(batch_size: int, items: int, accumulate: int = 1) -> int:
    """The batch a one-process run trains with: train.batch_size, or the whole data set (a multiple of
    train.accumulate) when it holds fewer items."""
    return batch_size if items >= batch_size else max(1, items - items % accumulate)


def epoch_capped_steps(steps: int, max_epochs: float, items: int, batch_size: int, accumulate: int = 1) -> int:
    """train.steps, lowered where that many steps of the batch the run trains with would pass over the items more
    than `max_epochs` times (0: no limit)."""
    if not max_epochs or items <= 0:
        return steps
    return max(1, min(steps, math.ceil(max_epochs * items / training_batch(batch_size, items, accumulate))))


def plan(cfg: RunConfig, data: Any = None, backbone: nn.Module | None = None
         ) -> tuple[RunConfig, Dataset, Denoiser]:
    """What `train` would resolve and build for a new run, without training (for --dry-run): a copy of the
    config with the settings taken from the data filled in, the data, and the denoiser."""
    cfg = copy.deepcopy(cfg)
    ds = load_data(cfg.data, data)
    norm = fit_normaliser(ds.train, ds.kind, ds.columns, ds.table)
    resolve_config(cfg, ds, norm, normalised_items(ds, norm), backbone, fresh=True)
    net = build_denoiser(cfg, ds.item_shape, cfg.diffusion.sigma_data, backbone=backbone,
                         cond=ds.condition(cfg.train.conditional))
    return cfg, ds, net


def measure_step(cfg: RunConfig, ds: Dataset, net: Denoiser, processes: int = 1, repeats: int = 3
                 ) -> dict[str, float]:
    """One training step of `net` (from `plan`) at the configured batch, measured here for --dry-run: FLOPs per
    sample of forward and backward (torch's FlopCounterMode), seconds per step (median of `repeats` after a warm-up, at
    the thread count a run would choose, compiled with train.compile), samples/s, peak memory and the estimated
    training time. The items are Gaussian at σ_data: the cost of a step does not depend on their values."""
    tc, device = cfg.train, resolve_device(cfg.train.device)
    net = net.to(device).train()
    per = max(1, tc.batch_size // processes // tc.accumulate)  # one micro-batch of one process
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(per, *ds.item_shape, generator=g) * cfg.diffusion.sigma_data).to(device)
    k = extra_channels(cfg, ds.item_shape)
    extra = torch.zeros(per, k, *ds.item_shape[1:], device=device) if k else None
    opt, loss_fn = build_optimizer(net.parameters(), tc), make_loss(cfg)
    model: nn.Module = net

    def forward_backward(m: nn.Module | None = None) -> None:
        loss, _ = loss_fn(model if m is None else m, x, generator=g, extra=extra)
        loss.mean().backward()

    if tc.compile:
        model = compile_model(net, forward_backward)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for _ in range(tc.accumulate):
            forward_backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    threads = choose_threads(tc.threads, step, processes=processes)[0] if device.type == "cpu" else 0
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        forward_backward(net)
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    peak = weight_diagnostics(net.backbone, {}, device)["memory_mb"]
    return {"flops_per_sample": counter.get_total_flops() / per, "step_s": step_s, "threads": threads,
            "compiled": model is not net,
            "samples_per_s": tc.batch_size / step_s, "peak_memory_mb": peak, "estimate_s": step_s * tc.steps}


def resume(p: Parts, saved_cfg: RunConfig | None) -> tuple[int, int, float, int]:
    """Load the newest checkpoint, if any, into the parts; returns (step, samples seen, wall seconds so far, the
    thread count it trained with (0: unknown))."""
    existing = ckpt.list_checkpoints(p.run_dir / "checkpoints")
    if not existing:
        return 0, 0, 0.0, 0
    intact, damaged = ckpt.newest_intact(existing)
    p.world.barrier()  # every process has chosen before rank 0 moves a damaged one aside
    # set aside, not deleted: the user may still want to look at or repair it
    for path, problem in damaged if p.world.main else ():
        aside = path.with_name(f".damaged-{path.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning("checkpoint %s is damaged (%s); it is moved to %s and training resumes from %s, so the steps "
                    "after that are trained again", path.name, problem, aside.name,
                    intact.name if intact is not None else "step 0")
        os.replace(path, aside)
    if intact is None:
        return 0, 0, 0.0, 0
    state = ckpt.load_checkpoint(intact)
    p.net.load_state_dict(state["model"])
    p.ema.load_state_dict(state["ema"])
    p.opt.load_state_dict(state["optimizer"])
    step, samples_seen = state["state"]["step"], state["state"]["samples_seen"]
    if p.guard is not None and "guard" in state["state"]:
        p.guard.load(state["state"]["guard"], state["extra"]["guard"])
    if p.phema is not None and "phema" in state["state"]:
        p.phema.load_state_dict(state["extra"]["phema"], state["state"]["phema"])
    if p.scaler is not None and "scaler" in state["state"]:
        p.scaler.load_state_dict(state["state"]["scaler"])
    log.info("resuming %s from step %d (%d samples seen)", p.run_dir, step, samples_seen)
    tc = p.cfg.train
    if saved_cfg is not None and saved_cfg.train.steps != tc.steps and tc.lr_schedule == "cosine":
        log.warning("train.steps changed from %d to %d: the cosine LR schedule now spans the new length",
                    saved_cfg.train.steps, tc.steps)
    return step, samples_seen, state["state"].get("wall_s", 0.0), int(state["state"].get("threads", 0))


def new_window(device: torch.device) -> dict[str, Any]:
    """Statistics of the steps since the last log line, accumulated on the device (no host sync per step)."""
    return {"loss": torch.zeros((), device=device, dtype=torch.float64),
            "n": torch.zeros((), device=device, dtype=torch.float64), "t": time.perf_counter(), "samples": 0,
            "bin_sum": torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64),
            "bin_n": torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64), "grad": 0.0}


def skip_replayed_step(p: Parts, st: RunState) -> None:
    st.samples_seen += p.batch
    st.step += 1
    st.bar.update(1)


@dataclass
class Batch:
    idx: np.ndarray  # item indices
    x: torch.Tensor  # normalised, augmented items
    aug: torch.Tensor | None = None  # augmentation labels (data.augment)
    cond: torch.Tensor | None = None  # conditions as the network reads them, some dropped (train.cond_dropout)
    extra: torch.Tensor | None = None  # known values and their mask (train.masks)
    target: torch.Tensor | None = None  # which entries the loss counts (train.masks: the unknown ones)

    def rows(self, share: slice) -> Batch:
        """This process's share of the global batch (`idx` stays global: the guard names items by it)."""
        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[share]
        return Batch(idx=self.idx, x=self.x[share], aug=cut(self.aug), cond=cut(self.cond), extra=cut(self.extra),
                     target=cut(self.target))


def train_batch(p: Parts, st: RunState, transform: bool = True) -> Batch:
    """The step's global batch: the data order from (seed, epoch), augmentation, condition dropout and masks from
    (seed, step), then the user's batch_transform. Every process draws it whole, so its share is what one process
    training the global batch would have there (each augments the whole batch: cheap beside the network); streamed
    data is read from disk for the process's share only (batches.py)."""
    cfg, step = p.cfg, st.step
    idx = batch_indices(len(p.train_x), cfg.train.seed, st.samples_seen, p.batch)
    x = p.train_x[torch.from_numpy(idx)] if p.reader is None else p.reader.get(st.samples_seen, idx)
    x = x.to(p.device, non_blocking=p.reader is not None)
    if cfg.data.hflip and p.ds.kind == "image":
        x = hflip(x, torch.Generator().manual_seed(derive_seed(cfg.train.seed, Stream.HFLIP, step)))
    aug_labels = None
    if cfg.data.augment:
        x, aug_labels = augment(x, cfg.data.augment,
                                torch.Generator().manual_seed(derive_seed(cfg.train.seed, Stream.AUGMENT, step)))
    if p.batch_transform is not None and transform:
        x = p.batch_transform(step, x)
    cond = None
    if p.train_cond is not None:
        cond = p.train_cond[torch.from_numpy(idx)]
        g = torch.Generator().manual_seed(derive_seed(cfg.train.seed, Stream.COND_DROPOUT, step))
        dropped = torch.rand(len(idx), generator=g) < cfg.train.cond_dropout
        cond = torch.where(dropped.reshape(-1, *([1] * (cond.dim() - 1))), null_like(cond), cond).to(p.device)
    batch = Batch(idx=idx, x=x, aug=aug_labels, cond=cond)
    if p.mask_kinds:
        g = torch.Generator().manual_seed(derive_seed(cfg.train.seed, Stream.MASKS, step))
        known = draw_masks(len(idx), p.ds.item_shape, p.mask_kinds, cfg.train.mask_none, g).to(p.device)
        if p.norm.table is not None:
            known = whole_blocks(known, p.norm.table.one_hot_spans())
        target, flag = 1 - known, known
        if p.train_obs is not None:  # missing values are neither given nor learnt (CSDI's observed mask)
            obs = p.train_obs[torch.from_numpy(idx)].to(p.device)
            known, target = known * obs, target * obs
            # an item whose observed values were all drawn as known has nothing left to learn: nothing is given
            empty = (target.flatten(1).sum(1) == 0).reshape(-1, *([1] * (known.dim() - 1)))
            known = torch.where(empty, torch.zeros_like(known), known)
            target = torch.where(empty, obs, target)
            # The mask channel reads −1 where the data has no value: the noisy input there is a stand-in the
            # network learns to disregard (at sampling, every value is real: no −1 is ever given).
            flag = known - (1 - obs)
        if cfg.train.window_level:
            # The item as the network learns it: its level (per channel, the mean of the known values it is given)
            # taken off, so the clean target, the noisy input and the known-value channel are relative to the context
            # (config.py). Missing values stay at 0, now the context's level: neither given nor learnt.
            level = window_level(x, known)
            x = x - (level if p.train_obs is None else level * obs)
            batch.x = x
        batch.extra, batch.target = torch.cat([x * known, flag], dim=1), target
    if cfg.train.lowres:
        batch.extra = lowres_of(x, cfg.train.lowres)
    return batch


def train_step(p: Parts, st: RunState) -> None:
    """One optimiser step: batch → loss per sample → backward → clip → the guard's gate → step → EMA. Under
    torchrun, each process computes the loss of its share; the gradients are averaged (DDP) and the per-sample
    losses gathered, so the guard of every process judges the whole batch alike."""
    batch, sigma, noise = draw_step(p, st)
    p.opt.zero_grad(set_to_none=True)
    local = share_backward(p, batch, sigma, noise)
    finish_step(p, st, batch, sigma, local)


def draw_step(p: Parts, st: RunState) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """The step's batch, σ and noise (each a function of the seed and the step), with the step's LR set and the
    global generator seeded for dropout."""
    tc, device = p.cfg.train, p.device
    batch = train_batch(p, st)
    # dropout masks of this process's items (with several processes, statistically but not bitwise one process's)
    torch.manual_seed(derive_seed(tc.seed, Stream.DROPOUT, st.step, *((p.world.rank,) if p.world.active else ())))
    # Drawn where they are used: on a GPU its own generator (no host-to-device copy of the noise each step; the
    # numbers then differ from a CPU run's, deterministically per seed); on the CPU the same numbers as ever.
    g = torch.Generator(device=device).manual_seed(derive_seed(tc.seed, Stream.NOISE, st.step))
    for group in p.opt.param_groups:
        group["lr"] = p.lr(st.samples_seen)
    # σ, then the noise, of every item of the global batch (the order DenoisingLoss draws them in)
    share = curriculum_share(st.samples_seen, tc)
    u = None
    if share < 1:  # the σ curriculum: only the top `share` quantiles of the training σ distribution
        u = 1 - share + share * torch.rand(len(batch.x), generator=g, dtype=torch.float64, device=device)
    sigma = sample_sigma(len(batch.x), p.loss_fn.noise, sigma_data=p.sigma_data, p_mean=p.loss_fn.p_mean,
                         p_std=p.loss_fn.p_std, u=u, generator=None if u is not None else g, device=device)
    noise = torch.randn(batch.x.shape, generator=g, dtype=batch.x.dtype, device=device)
    return batch, sigma, noise


def finish_step(p: Parts, st: RunState, batch: Batch, sigma: torch.Tensor, local: torch.Tensor) -> None:
    """The step after the backward pass (gradients in the parameters' .grad; `local`, this process's per-sample
    losses): clip, the guard's gate, the optimiser step, EMA and the logging window."""
    tc, guard, params, device, idx = p.cfg.train, p.guard, p.params, p.device, batch.idx
    per_sample = p.world.gather(local)  # the whole batch's losses, for the guard and the log
    loss = per_sample.mean()
    if p.scaler is not None:
        p.scaler.unscale_(params)  # the gradients in their own units before clipping and the step
    if tc.grad_clip_adaptive > 0:
        recent = p.clip_history.values if p.clip_history is not None else guard.hist.values[:, -1].exp()
        grad_norm = clip_gradients(params, tc.grad_clip, tc.grad_clip_adaptive, recent)
        if p.clip_history is not None:
            keep = torch.ones((), dtype=torch.bool, device=device) if p.scaler is None else torch.isfinite(grad_norm)
            p.clip_history.push(grad_norm.reshape(1).float(), keep)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else math.inf)
    overflow = None if p.scaler is None else p.scaler.overflowed(per_sample.detach(), grad_norm)
    with torch.no_grad():
        b = torch.bucketize(sigma.to(device), p.bin_edges)
        step_sum = torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64).index_add_(
            0, b, per_sample.detach().double())
        step_n = torch.zeros(SIGMA_BINS, device=device, dtype=torch.float64).index_add_(
            0, b, torch.ones_like(per_sample, dtype=torch.float64))
    logged = (st.step + 1) % tc.log_every == 0 or st.step + 1 == tc.steps
    before = [q.detach().clone() for q in params] if logged else None  # for the update/weight ratio
    if guard is not None:
        bad = guard.gate(per_sample.detach(), b, grad_norm, overflow)
        guard.apply_gate(p.opt, bad)
        guard.note_step(st.step, idx)
        ok = (~bad).double()
    elif overflow is not None:
        if not bool(overflow):
            p.opt.step()
        ok = (~overflow).double()
    else:
        p.opt.step()
        ok = torch.ones((), device=device, dtype=torch.float64)
    if p.scaler is not None:
        p.scaler.update(overflow)
    window = st.window
    if before is not None:
        window["update_ratio"] = update_ratio(params, before)
    st.samples_seen += p.batch
    st.step += 1
    p.ema.update(p.net, ema_beta(p.batch, st.samples_seen, tc.ema_halflife_samples, tc.ema_rampup))
    if p.phema is not None:
        p.phema.update(p.net, st.samples_seen)  # time in samples seen (DESIGN.md); profiles are scale-free
    # Steps the guard rejected are left out, so one bad batch does not hide the run's real loss.
    with torch.no_grad():
        window["loss"] += torch.where(ok > 0, loss.detach().double(), 0.0)
        window["n"] += ok
        window["bin_sum"] += torch.where(ok > 0, step_sum, 0.0)
        window["bin_n"] += step_n * ok
        window["grad"] = grad_norm.detach()
    window["samples"] += p.batch
    st.bar.update(1)


def share_backward(p: Parts, batch: Batch, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The loss of this process's share of the global batch and its gradient (of the share's mean loss), in
    train.accumulate micro-batches whose gradients add up to the share's (DDP averages them over the processes
    once, after the last); returns the share's per-sample losses (detached)."""
    tc = p.cfg.train
    rows = p.world.shard(len(batch.x))
    mine, k = batch.rows(rows), tc.accumulate
    penalty = weight_penalty(p.params, tc.l1, tc.l2) if tc.l1 or tc.l2 else None
    if k == 1 and not tc.mmd_weight:
        local, _ = p.loss_fn(p.model, mine.x, generator=None, sigma=sigma[rows], n=noise[rows], aug=mine.aug,
                             cond=mine.cond, extra=mine.extra, target=mine.target)
        scaled(p, local.mean() + penalty if penalty is not None else local.mean()).backward()
        return local.detach()
    n, per = len(mine.x), len(mine.x) // k
    parts = []
    for j in range(k):
        cut = slice(j * per, (j + 1) * per)
        part = mine.rows(cut)
        sync = contextlib.nullcontext() if j == k - 1 or not p.world.active else p.model.no_sync()
        with sync:
            out, _, denoised = p.loss_fn(p.model, part.x, generator=None, sigma=sigma[rows][cut],
                                         n=noise[rows][cut], aug=part.aug, cond=part.cond, extra=part.extra,
                                         target=part.target, want_denoised=True)
            share = out.sum() / n  # the micro-batches' gradients sum to the share's mean
            if tc.mmd_weight:  # each micro-batch's own MMD, averaged over them
                share = share + tc.mmd_weight / k * mmd_term(denoised, part.x, sigma[rows][cut], p.sigma_data)
            scaled(p, share + penalty if penalty is not None and j == 0 else share).backward()
        parts.append(out.detach())
    return torch.cat(parts)


def scaled(p: Parts, loss: torch.Tensor) -> torch.Tensor:
    """The loss to differentiate: times fp16's loss scale (train/scaler.py), else as it is."""
    return loss if p.scaler is None else loss * p.scaler.scale


def guard_check(p: Parts, st: RunState) -> Rollback | None:
    """The guard's look at the flags since its last one; skipped steps are judged on evidence of damage. With no
    rollback, a snapshot after a clean stretch (no skipped step among the last `snapshot_every`)."""
    guard, gc = p.guard, p.cfg.guard
    decision = guard.check(p.train_x)
    if decision is not None and decision.needs_evidence:
        t_eval = time.perf_counter()
        target = guard.choose(decision, st.ring, st.anchor, st.initial)
        decision = guard.confirm(decision, measure_damage(guard, st.step, target, p.net, p.ema_net, p.validation,
                                                          p.loss_fn))
        st.eval_s += time.perf_counter() - t_eval
    if decision is None and guard.skipped_recently(st.step, gc.snapshot_every) == 0 and \
            (not st.ring or st.step - st.ring[-1].step >= gc.snapshot_every):
        st.ring = [*st.ring[-1:], take_snapshot(st.step, st.samples_seen, p.net, p.ema, p.opt, guard, phema=p.phema)]
    return decision


def log_and_validate(p: Parts, st: RunState) -> Rollback | None:
    """A metrics.jsonl line; at validation points also the fixed validation loss, the guard's validation-time
    detectors and canaries, and (within the evaluation budget) sample metrics. Returns a rollback decision."""
    tc, guard, window, step = p.cfg.train, p.guard, st.window, st.step
    now = time.perf_counter()
    n_ok = float(window["n"])
    st.last_loss = float(window["loss"]) / n_ok if n_ok else float("nan")
    rate = window["samples"] / max(now - window["t"], 1e-9)
    bins = (window["bin_sum"] / window["bin_n"].clamp(min=1)).tolist()
    lr = p.lr(st.samples_seen)
    record = {"step": step, "samples_seen": st.samples_seen, "loss": round(st.last_loss, 6), "lr": lr,
              "grad_norm": round(float(window["grad"]), 6), "samples_per_s": round(rate, 1),
              "wall_s": round(st.wall_before + now - st.t_start, 2),
              "loss_bins": [round(v, 6) for v in bins], **weight_diagnostics(p.net.backbone, window, p.device)}
    decision = None
    if step % tc.val_every == 0 or step == tc.steps:
        decision = validate_now(p, st, record)
        if decision is None and p.probe is not None and p.probe.unavailable is None and \
                is_due(step, tc.steps, tc.sample_metrics_every, tc.val_every):
            if p.probe.allowed(st.eval_s, time.perf_counter() - st.t_start, rate):
                t_eval = time.perf_counter()
                scores = p.probe.evaluate(p.ema_net)  # ema_net holds the EMA weights validated above
                if scores is not None:
                    record["sample_metrics"] = scores
                st.eval_s += time.perf_counter() - t_eval
            else:
                record["sample_metrics_skipped"] = SKIPPED
    if guard is not None:
        record["guard"] = {"skipped": len(guard.state.skip_steps), "rollbacks": len(guard.state.rollbacks),
                           "lr_scale": guard.state.lr_scale}
    p.metrics_log.write(record)
    if "sample_metrics" in record and tc.keep_best:
        keep_best(p, st)
    if p.board is not None:
        p.board.write(record)
    postfix = {"loss": f"{st.last_loss:.4f}", "samples_s": f"{rate:,.0f}", "lr": f"{lr:.2g}"}
    if guard is not None and guard.postfix():
        postfix["guard"] = guard.postfix()
    st.bar.set_postfix(postfix)
    st.window = new_window(p.device)
    return decision


def validate_now(p: Parts, st: RunState, record: dict[str, Any]) -> Rollback | None:
    """The fixed validation loss of the raw and EMA weights (into `record`), then the guard's judgement of it:
    canaries, collapse, weight growth, and a new collapse anchor near the best."""
    guard, gc, step = p.guard, p.cfg.guard, st.step
    t_eval = time.perf_counter()
    p.ema.copy_to(p.ema_net)
    p.net.eval()
    val_raw = p.validation.evaluate(p.net, p.loss_fn)
    p.net.train()
    val_ema = p.validation.evaluate(p.ema_net, p.loss_fn)
    record.update({"val_loss": round(val_raw["loss"], 6), "val_loss_bins": val_raw["bins"],
                   "val_loss_ema": round(val_ema["loss"], 6), "val_loss_ema_bins": val_ema["bins"]})
    if p.cond is not None:
        record.update(condition_use(p, val_raw))
    decision = None
    if guard is not None:
        if p.cond is not None and gc.canaries and step >= gc.cond_after:
            condition_canary(guard, step, record["cond_gain"], gc.cond_min_gain)
        if gc.canaries:
            st.ema_print, dead = periodic_canaries(guard, step, p.net, p.ema, p.ds.item_shape, p.device,
                                                   val_ema["loss"], st.ema_print)
            if dead:  # outputs that no longer depend on σ: the network died (e.g. LR far too high)
                decision = Rollback(reason="dead_network", step=step, first_bad=step, anchor=True,
                                    evidence={"sigma_response": "below 1e-6"})
        decision = decision or guard.observe_validation(step, val_raw["loss"], st.last_loss)
        if st.initial is not None and step > gc.growth_steps:
            st.initial = None  # past the window: a restart is no longer possible, free the memory
        decision = decision or guard.observe_weights(step, weight_norm(p.net.backbone))
        if decision is None and guard.near_best(val_raw["loss"]) and step > st.ring[0].step and \
                guard.skipped_recently(step, gc.snapshot_every) == 0:
            st.anchor = take_snapshot(step, st.samples_seen, p.net, p.ema, p.opt, guard, val_loss=val_raw["loss"],
                                      phema=p.phema)
    st.eval_s += time.perf_counter() - t_eval
    return decision


def condition_use(p: Parts, given: dict[str, Any]) -> dict[str, Any]:
    """How much the raw weights use the condition on the fixed validation batch: the loss with no condition (the
    unconditional branch) and with the conditions of other items, and `cond_gain`, the relative loss a shuffled
    condition adds. A network that ignores its condition (labels shuffled by a data bug, an embedding that is never
    read) has a gain near 0; per-class losses for class conditions."""
    p.net.eval()
    null = p.validation.evaluate(p.net, p.loss_fn, conditions="null")["loss"]
    shuffled = p.validation.evaluate(p.net, p.loss_fn, conditions="shuffled")["loss"]
    p.net.train()
    out = {"val_loss_null": round(null, 6), "val_loss_shuffled": round(shuffled, 6),
           "cond_gain": round((shuffled - given["loss"]) / max(given["loss"], 1e-12), 6)}
    if "classes" in given:
        out["val_loss_classes"] = {p.cond.classes[k]: v for k, v in given["classes"].items()}
    return out


def condition_canary(guard: Guard, step: int, gain: float, min_gain: float) -> None:
    """An incident when the network does no better with the right condition than with another item's."""
    if not gain >= min_gain:
        guard.incident("canary", step, "warned", check="condition_ignored", cond_gain=gain, min_gain=min_gain,
                       message=f"the network ignores its condition: a shuffled condition raises the validation loss "
                               f"by {100 * gain:.2f} % (a network that uses it: ≥ {100 * min_gain:g} %). Check that "
                               "the labels belong to their items and that the backbone reads `cond`")


def roll_back(p: Parts, st: RunState, decision: Rollback) -> None:
    """Restore the snapshot the guard chooses and forget everything written after it; stop with a diagnosis
    (TrainingStopped, the last good state checkpointed) when recovery has failed too often."""
    guard, run_dir = p.guard, p.run_dir
    target = guard.choose(decision, st.ring, st.anchor, st.initial)
    keep_going = guard.rolled_back(decision, target)
    restore_snapshot(target, p.net, p.ema, p.opt, guard, p.phema)
    st.step, st.samples_seen = target.step, target.samples_seen
    st.ring = [s for s in st.ring if s.step <= st.step] or [target]
    st.anchor = st.anchor if st.anchor is not None and st.anchor.step <= st.step else None
    if p.world.main:
        remove_newer(run_dir / "phema", "snapshot-*.safetensors", st.samples_seen)
        remove_newer(run_dir / "samples", "step-*.*", st.step)  # grids of the abandoned stretch
        p.metrics_log.truncate_after(st.step)
        if p.board is not None:
            p.board.truncate_after(st.step)
        ckpt.remove_after(run_dir / "checkpoints", st.step)  # written after the snapshot: possibly damaged
        forget_best_after(run_dir, st.step)
    st.bar.n = st.step
    st.bar.refresh()
    st.window = new_window(p.device)
    log.warning("stability guard: %s at step %d; rolled back to step %d with the LR × %g",
                decision.reason, decision.step, st.step, guard.state.lr_scale)
    if not keep_going:
        st.bar.close()
        tc = p.cfg.train
        diagnosis = guard.diagnose(tc.precision, tc.lr, tc.grad_clip)
        if p.world.main:
            checkpoint(p, st)
            if p.board is not None:
                p.board.close()
            write_text_atomic(run_dir / "summary.json", json.dumps(
                {"stopped": diagnosis, "steps": st.step, "stability": guard.summary()}, indent=2))
        raise TrainingStopped(f"{diagnosis} The last good state (step {st.step}) is saved in "
                              f"{run_dir / 'checkpoints'}; change the settings and run `train` again to resume.")


def metric_records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def keep_best(p: Parts, st: RunState) -> None:
    """train.keep_best: when this step's sample metrics are the best so far, checkpoint it and record it in
    checkpoints/best.json, which rotation spares (the previous best is then rotated out like any other)."""
    ref = p.probe.reference if p.probe is not None else None
    if ref is None:
        return
    metric = default_metric(ref)
    best = best_evaluation(metric_records(p.run_dir), metric, RANKED[metric])
    if best is None or best["step"] != st.step:
        return
    root = p.run_dir / "checkpoints"
    if not (root / f"step-{st.step}").is_dir():
        checkpoint(p, st)  # first, so best.json never names a checkpoint that is not there
        st.best_written = st.step
    ckpt.mark_best(root, best)


def forget_best_after(run_dir: Path, step: int) -> None:
    """After a resume or rollback to `step`: a best recorded beyond it belongs to training that is redone, so the
    best is found again among the evaluations that remain (and kept if its checkpoint is)."""
    root = run_dir / "checkpoints"
    info = ckpt.best_step(root)
    if info is None or info <= step:
        return
    old = json.loads((root / ckpt.BEST_FILE).read_text())
    best = best_evaluation(metric_records(run_dir), old["metric"], old["higher_is_better"])
    ckpt.mark_best(root, best if best is not None and (root / f"step-{best['step']}").is_dir() else None)


def write_outputs(p: Parts, st: RunState) -> None:
    """What is due at this step: a post-hoc EMA snapshot, a checkpoint, a sample grid (rank 0 writes them)."""
    tc, step = p.cfg.train, st.step
    if not p.world.main:
        return
    if p.phema is not None and (step % tc.phema_every == 0 or step == tc.steps) and p.phema.step > 0:
        write_snapshot(p.run_dir / "phema", p.phema.snapshot(torch.float16))
    if step % tc.checkpoint_every == 0 and step < tc.steps and st.best_written != step:
        checkpoint(p, st)
    if tc.sample_every and step % tc.sample_every == 0 and step < tc.steps:
        t_eval = time.perf_counter()
        write_grid(p, f"step-{step}")
        st.eval_s += time.perf_counter() - t_eval


def checkpoint(p: Parts, st: RunState) -> None:
    meta: dict[str, Any] = {}
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    if p.guard is not None:
        meta["guard"], tensors["guard"] = p.guard.state_json(), p.guard.tensors()
    if p.phema is not None:
        meta["phema"], tensors["phema"] = p.phema.metadata(), p.phema.state_dict()
    if p.scaler is not None:
        meta["scaler"] = p.scaler.state_dict()
    ckpt.save_checkpoint(p.run_dir / "checkpoints", st.step, model=p.net.state_dict(), ema=p.ema.state_dict(),
                         optimizer=p.opt.state_dict(), keep=p.cfg.train.keep_checkpoints, extra=tensors,
                         state={"step": st.step, "samples_seen": st.samples_seen, "batch_size": p.batch,
                                "threads": torch.get_num_threads(),
                                "wall_s": st.wall_before + time.perf_counter() - st.t_start, **meta})


def sample_conditions(p: Parts, n: int, seed: int, *, blocked: bool = False
                      ) -> tuple[np.ndarray | None, torch.Tensor | None]:
    """Conditions of n samples (user units, and as the network reads them) for a conditional run: like the
    training items' (data.cond.draw_conditions), or for a grid one stretch per class; (None, None) otherwise."""
    if p.cond is None:
        return None, None
    if blocked and p.cond.kind == "class":
        values = blocked_classes(p.cond, n)
    else:
        values = draw_conditions(p.cond, n, seed, p.ds.conditions("train"))
    return values, torch.as_tensor(model_conditions(p.cond, values))


def sample_extras(p: Parts, n: int) -> torch.Tensor | None:
    """The extra inputs n samples of a super-resolution run get (train.lowres): the low-resolution copies of the
    held-out items (the training items where none are held out), in turn; None for other runs."""
    if not p.cfg.train.lowres:
        return None
    source = p.ds.holdout if len(p.ds.holdout) else p.ds.train
    items = np.asarray(p.norm.forward(source[np.arange(n) % len(source)]), dtype=np.float32)
    return lowres_of(torch.from_numpy(items), p.cfg.train.lowres)


def write_grid(p: Parts, tag: str) -> None:
    """A sample grid (PNG) and its samples (.npy, user units) of the EMA weights, from the run's grid seed."""
    cfg, ds = p.cfg, p.ds
    p.ema.copy_to(p.ema_net)
    _, cond = sample_conditions(p, cfg.sample.grid_n, cfg.sample.grid_seed, blocked=True)
    x = generate(p.ema_net, ds.item_shape, cfg.sample.grid_n, seed=cfg.sample.grid_seed,
                 **cfg.sampling(p.sigma_data), device=p.device, cond=cond, extra=sample_extras(p, cfg.sample.grid_n))
    user = np.asarray(p.norm.inverse(x.numpy()))
    np.save(p.run_dir / "samples" / f"{tag}.npy", user.astype(np.float32))
    if ds.kind in ("image", "series") or user.shape[1] >= 2:
        reference = ds.train[:2000] if ds.kind == "vector" else ds.holdout if ds.kind == "series" else None
        save_samples(p.run_dir / "samples" / f"{tag}.png", user, kind=ds.kind, value_range=p.norm.value_range,
                     reference=reference, title=f"{ds.name}, {tag}" + (" (grey: held-out series)"
                                                                      if ds.kind == "series" else ""))


def summarise(p: Parts, st: RunState, loop_share: float) -> dict[str, Any]:
    """summary.json: what was trained, how long, how well (the final grid and 500–1,000 EMA samples scored);
    `loop_share` is evaluation's share of the loop's wall time."""
    cfg, ds, run_dir = p.cfg, p.ds, p.run_dir
    wall = st.wall_before + time.perf_counter() - st.t_start
    t_eval = time.perf_counter()
    write_grid(p, f"step-{st.step}")
    p.ema.copy_to(p.ema_net)
    n_eval = min(1000, max(len(ds.holdout), 500))
    seed = derive_seed(cfg.train.seed, Stream.SUMMARY)
    values, cond = sample_conditions(p, n_eval, seed)
    x = generate(p.ema_net, ds.item_shape, n_eval, seed=seed, **cfg.sampling(p.sigma_data), device=p.device,
                 cond=cond, extra=sample_extras(p, n_eval))
    labels = values if p.cond is not None and p.cond.kind == "class" else None
    x_user = np.asarray(p.norm.inverse(x.numpy()), dtype=np.float32)
    # kept for the report's memorisation check, which reads rather than draws them again
    write_npy_atomic(run_dir / SAMPLES_FILE, x_user)
    write_text_atomic((run_dir / SAMPLES_FILE).with_suffix(".json"), json.dumps({
        "checkpoint": f"step-{st.step}", "weights": "ema", "sampler": cfg.sample.sampler, "steps": cfg.sample.steps,
        "seed": seed, "n": n_eval}, indent=2))
    quality = summary_quality(ds, p.norm, x_user, labels, run_dir)
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    if p.probe is not None and any("sample_metrics" in r for r in records):
        p.probe.ensure_reference()  # a resumed call that evaluated nothing itself still names the metric
    st.eval_s += time.perf_counter() - t_eval
    summary = {
        "data": describe(ds), "backbone": type(p.net.backbone).__name__,
        "parameters": count_parameters(p.net.backbone), "steps": st.step, "samples_seen": st.samples_seen,
        "batch_size": p.batch, "wall_s": round(wall, 1), "sigma_data": p.sigma_data,
        "final_loss": round(st.last_loss, 6),
        # validation, canaries, sample metrics, grids and this summary's samples, as a share of this call's time
        "evaluation_share": round(st.eval_s / max(time.perf_counter() - st.t_start, 1e-9), 4),
        "evaluation_share_during_training": round(loop_share, 4),  # without this summary's samples
        "sampler": {"name": cfg.sample.sampler, "steps": cfg.sample.steps,
                    "nfe": nfe(cfg.sample.sampler, cfg.sample.steps)},
        "quality": quality,
    }
    if ds.skipped:
        summary["skipped_files"] = len(ds.skipped)  # unreadable files left out (dataset.json lists them)
    if p.guard is not None:
        summary["stability"] = p.guard.summary()
    if p.probe is not None:
        summary["sample_metrics"] = p.probe.summary(records)
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
    return summary


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


def observed(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised items with their missing (NaN) entries set to 0 — the observed mean — and the mask of observed
    entries (None where nothing is missing)."""
    obs = ~torch.isnan(x)
    if bool(obs.all()):
        return x, None
    return torch.where(obs, x, torch.zeros((), dtype=x.dtype)), obs.to(x.dtype)


def scan_data(ds: Dataset, train_x: torch.Tensor | StreamedItems, norm: Normaliser) -> list[Any]:
    """The pre-training data scan (data/scan.py): constant features, outliers, duplicates. Missing values are
    scanned as their column's (channel's) observed mean, as the normalised items hold them. A streamed set is
    scanned on a sample (SCAN_SAMPLE; duplicates among them only), which the log says."""
    if isinstance(train_x, StreamedItems):
        per_item = 4 * int(np.prod(ds.item_shape))
        _, sample = ds.train.sample(max(1, min(SCAN_SAMPLE, SCAN_SAMPLE_BYTES // per_item)), seed=0)
        if len(sample) < len(ds.train):
            log.info("data: the scan reads %s of the %s training items, drawn at random (data.stream)",
                     f"{len(sample):,}", f"{len(ds.train):,}")
        return scan(sample, np.asarray(norm.forward(sample), dtype=np.float32), ds.kind, ds.columns)
    normalised = train_x.numpy()
    train = ds.train
    if ds.missing_share:
        axes = 0 if ds.kind == "vector" else (0, 2)
        train = np.where(np.isnan(train), np.nanmean(train, axis=axes, keepdims=True), train)
    return scan(train, normalised, ds.kind, ds.columns)


def start_canaries(net: Denoiser, norm: Normaliser, ds: Dataset, device: torch.device,
                   val_cond: torch.Tensor | None) -> None:
    """Silent bugs that would waste the whole run are refused before it starts."""
    if val_cond is not None:
        change = cond_response(net.backbone, ds.item_shape, device, val_cond[:8])
        if not change >= 1e-6:
            raise SteadydiffError(
                f"canary: the backbone {type(net.backbone).__name__}'s output does not change with its condition "
                f"(relative change {change:.1e} between the items' conditions and none): it ignores its `cond` "
                "input, so the run could not be conditional. Read cond in forward(x, c_noise, cond), or set "
                "train.conditional=off.")
    response = sigma_response(net.backbone, ds.item_shape, device, jitter=True)
    if not response >= 1e-6:  # NaN too: a jittered network whose output is ~0 is broken as well
        raise SteadydiffError(
            f"canary: the backbone {type(net.backbone).__name__}'s output does not change with the noise level "
            f"(relative change {response:.1e} between σ=0.05 and σ=20): it ignores its c_noise input, so it "
            "cannot learn to denoise at every noise level. Use c_noise in forward(x, c_noise, cond), or set "
            "guard.canaries=false to train it anyway.")
    error = roundtrip_error(norm, ds.train[:256])  # over the observed values (a missing one stays NaN)
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
