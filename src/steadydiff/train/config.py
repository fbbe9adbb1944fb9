"""Configuration of the training loop. Durations are counted in samples seen (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..data.config import DataConfig
from ..diffusion.config import DiffusionConfig
from ..errors import ConfigError
from ..nets.config import NetConfig
from ..sampling.config import SampleConfig, SamplerName

TENSORBOARD_INSTALL = "pip install 'steadydiff[tensorboard]' (or pip install tensorboard)"


@dataclass
class TrainConfig:
    steps: int = 3000
    # At most this many passes over the training items: train.steps is lowered to ⌈max_epochs · items / batch⌉
    # where that is fewer (loop.resolve_config). Longer training memorises a small data set: on wine (178 rows,
    # 20 % of cells emptied) 3,000 steps of 128 are 2,160 epochs, the samples lie 0.18 column-stds from their
    # closest training row (held-out rows: 1.96) and imputations are overconfident (90 % intervals cover 56 % of the
    # hidden cells); at 400 epochs they cover 87 % (BENCHMARKS.md, "Tables"). Series alike: sunspots' 209 windows
    # trained 3,000 steps give 91 % near-copies of training windows, 22 % at 400 epochs (BENCHMARKS.md, "Time
    # series"). None: 400 for vectors, tables and series; off (0) for images, where augmentation multiplies the
    # items and no measurement backs a cap. 0: off.
    max_epochs: float | None = None
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: Literal["adamw", "adam", "rmsprop"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_samples: int = 25_600  # linear LR warm-up
    lr_schedule: Literal["constant", "cosine", "inv-sqrt"] = "cosine"
    decay_samples: int = 100_000  # inv-sqrt: LR ∝ 1/sqrt(samples/decay_samples) past this point
    min_lr_ratio: float = 0.05  # cosine ends at lr × min_lr_ratio
    # Micro-batches per step: the batch is computed in this many parts whose gradients add up to the whole batch's
    # (for a batch larger than memory allows); the same training as one part, up to float rounding.
    accumulate: int = 1
    # Weight of the MMD diversity term (diffusion/loss.py, mmd_term): denoised estimates at moderate σ against the
    # clean batch. 0: off (BENCHMARKS.md, "uncertainty", has the evidence for and against).
    mmd_weight: float = 0.0
    # Ensemble (train/ensemble.py): K > 1 trains K complete runs, member k from seed train.seed + k (its own weights,
    # data order and noise), in OUT/members/k; `load(OUT)` samples them as one model (sample.ensemble). 1: one run.
    ensemble: int = 1
    # How the members train (train/batched.py): true — together, each step's network passes of all members batched
    # through torch.func.vmap (options that do not allow it: an error; a backbone vmap cannot batch: together, one
    # network pass after another, with a warning); false — one after another, bit for bit the single runs (batched
    # members match them to float rounding). Off by default: batched training measured slower on a CPU (0.89× for
    # the grid25 MLP, 0.54× for the digits U-Net; BENCHMARKS.md, "uncertainty"); gpu_smoke.py times it on a GPU.
    ensemble_batched: bool = False
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_clip_adaptive: float = 0.0  # also clip at this × the median norm of the last 200 steps; 0: off
    l1: float = 0.0  # penalty l1·Σ|w| on weight matrices and kernels (not biases or gains), added to the loss
    l2: float = 0.0  # penalty l2·Σw² on the same weights (unlike weight_decay, it goes through Adam's scaling)
    sigma_curriculum_samples: int = 0  # train on the highest noise levels first, widening to all over this many
    sigma_curriculum_start: float = 0.25  # samples; the share of the σ distribution (top quantiles) at the start
    ema_halflife_samples: int = 50_000  # EMA half-life (EDM's ema_halflife_kimg, in samples)
    # Half-life ≤ rampup × samples seen. While that bound holds, β ≈ 1 − ln2/(rampup·t) (t in steps) is the
    # power-function EMA with γ + 1 = ln2/rampup (Karras et al. 2024, Eq. 2): 0.04 gives γ ≈ 16.3, a width
    # σ_rel ≈ 0.05 of the run (EDM's 0.1 is σ_rel ≈ 0.10); post-hoc EMA lengths 0.03–0.15 did no better on a
    # validation split of digits (BENCHMARKS.md, defaults).
    ema_rampup: float = 0.04
    phema_stds: tuple[float, ...] = (0.05, 0.10)  # power-function EMA profiles tracked for post-hoc EMA (σ_rel)
    phema_every: int = 500  # steps between post-hoc EMA snapshots in RUN/phema/; 0: no post-hoc EMA
    # bf16, fp16: autocast for the backbone only; fp16 with a dynamic loss scale (train/scaler.py), whose overflow
    # steps the guard counts apart (fp16_overflow) and never treats as faults
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False  # torch.compile the training step's model (a failure falls back to eager, with a warning)
    seed: int = 0
    log_every: int = 50  # steps between metrics.jsonl lines
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    sample_every: int = 1000  # steps between sample grids (0: only at the end)
    val_every: int = 250  # steps between fixed-noise validation losses
    val_items: int = 128  # held-out items in the fixed validation set
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    # The checkpoint of the best in-training sample-metric evaluation is written and kept through rotation
    # (checkpoint="best" loads it); it needs train.sample_metrics_every.
    keep_best: bool = True
    device: str = "auto"  # auto: cuda when available, else cpu
    # CPU threads of torch: 0 measures a few steps with 1 thread and with the usable cores and keeps the faster
    # (threads.py); an OMP_NUM_THREADS in the environment is honoured. A resumed run keeps the count it started with.
    threads: int = 0
    # Under torchrun: seconds a collective operation waits for the other processes before the job ends with an
    # error (a process that died or hangs); rank 0's sample metrics and checkpoints must fit in it.
    dist_timeout_s: float = 900.0
    # Sample metrics during training (train/sample_metrics.py): fixed-seed samples of the EMA weights scored
    # against the held-out data, at the first validation at or after each multiple of this many steps; 0: off.
    sample_metrics_every: int = 250
    # The setting is cheap and fixed: the curve compares evaluations with one another (same seeds, sampler and
    # steps), so it needs a stable ranking, not the best sample quality. 256 samples exceed the 128 features of
    # the shipped digits/mnist classifiers, so the Fréchet distance's sample covariance has full rank.
    # DPM-Solver++(2M) (Lu et al. 2022) is second order at one network evaluation per step; at ~12 NFE it beat
    # Heun and Euler on digits and toy:grid25, and the evaluations cost a few percent of a default digits run
    # (BENCHMARKS.md, eval_share).
    sample_metrics_n: int = 256
    sample_metrics_sampler: SamplerName = "dpmpp-2m"
    sample_metrics_steps: int = 12  # network evaluations per sample: 1 per step, Heun 2·steps − 1
    # The most of the run's wall time that evaluation (validation, canaries, grids, sample metrics) may take:
    # a sample-metric evaluation that would push it past this share of the time so far is skipped.
    eval_budget: float = 0.10
    tensorboard: bool = False  # mirror every number of metrics.jsonl to RUN/tensorboard/ (needs tensorboard)
    # Condition on the labels or vectors the data carries (data/cond.py): auto does when there are any.
    conditional: Literal["auto", "on", "off"] = "auto"
    # Share of training items whose condition is dropped (the learned null), so one network is conditional and
    # unconditional (classifier-free guidance; Ho & Salimans 2022 use 0.1–0.2). 0.2 was chosen on a validation split
    # of digits (BENCHMARKS.md, defaults): guided samples as good as with 0.1 within the training-seed spread, and
    # unconditional samples (guidance 0) as good as a run trained without conditions, which 0.1 was not.
    cond_dropout: float = 0.2
    # Mask-conditioned training (data/masks.py, as CSDI trains an imputer): each item gets a random mask of known
    # values, shown to the network beside x; the loss counts the unknown entries. Kinds, comma-separated: boxes,
    # strokes, scattered, half (images), scattered (vectors), or all; "" (off). `mask_none`: share of items with
    # nothing known, so the network also samples from scratch.
    masks: str = ""
    mask_none: float = 0.1
    # A level per window for mask-conditioned series: each training item is shifted, per channel, by the mean of its
    # known entries (no shift where none is known), and `impute`/`forecast` shift the given values alike and add the
    # level back, so the network learns shapes relative to the context rather than absolute levels and continues a
    # series at levels no training window reached. RevIN's instance mean (Kim et al. 2022) taken over the context
    # only, as DeepAR scales by the conditioning range (Salinas et al. 2020). The scale (and σ_data) stays global: on
    # CO₂, σ_data measured about each window's level instead gave the same errors with narrower, worse-covering
    # intervals (BENCHMARKS.md, series).
    window_level: bool = False
    # Super-resolution (train.cond=lowres in other tools' terms): the network reads a copy of each image averaged over
    # lowres × lowres blocks as extra input channels and learns the detail; sample it with Model.upscale or
    # `steadydiff sample --lowres`. 0: off.
    lowres: int = 0

    def check(self) -> None:
        positive = {"train.steps": self.steps, "train.batch_size": self.batch_size, "train.lr": self.lr,
                    "train.log_every": self.log_every, "train.checkpoint_every": self.checkpoint_every,
                    "train.ema_halflife_samples": self.ema_halflife_samples,
                    "train.keep_checkpoints": self.keep_checkpoints,
                    "train.val_every": self.val_every, "train.val_items": self.val_items,
                    "train.decay_samples": self.decay_samples, "train.accumulate": self.accumulate,
                    "train.dist_timeout_s": self.dist_timeout_s}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        non_negative = {"train.warmup_samples": self.warmup_samples, "train.sample_every": self.sample_every,
                        "train.grad_clip": self.grad_clip, "train.grad_clip_adaptive": self.grad_clip_adaptive,
                        "train.l1": self.l1, "train.l2": self.l2, "train.mmd_weight": self.mmd_weight,
                        "train.sigma_curriculum_samples": self.sigma_curriculum_samples,
                        "train.phema_every": self.phema_every,
                        "train.sample_metrics_every": self.sample_metrics_every, "train.threads": self.threads}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be ≥ 0, got {value}")
        if not self.phema_stds or not all(0 < v < 0.3 for v in self.phema_stds) or \
                len(set(self.phema_stds)) != len(self.phema_stds):
            raise ConfigError(f"train.phema_stds must be distinct values in (0, 0.3), got {self.phema_stds}")
        if not 0 < self.sigma_curriculum_start <= 1:
            raise ConfigError(f"train.sigma_curriculum_start must lie in (0, 1], got {self.sigma_curriculum_start}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must lie in [0, 1), got {self.betas}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.max_epochs is not None and not self.max_epochs >= 0:
            raise ConfigError(f"train.max_epochs is the most passes over the training items (0: no limit), got "
                              f"{self.max_epochs}")
        if self.ensemble < 1:
            raise ConfigError(f"train.ensemble is the number of members to train (1: a single run, K ≥ 2: an ensemble "
                              f"of K runs from seeds train.seed … train.seed + K − 1), got {self.ensemble}")
        if self.sample_metrics_n < 6:  # metrics.reference.Reference needs more samples than its k = 5 neighbours
            raise ConfigError(f"train.sample_metrics_n must be ≥ 6, got {self.sample_metrics_n}")
        if self.sample_metrics_steps < 1:
            raise ConfigError(f"train.sample_metrics_steps must be ≥ 1, got {self.sample_metrics_steps}")
        if self.lowres < 0 or self.lowres == 1:
            raise ConfigError(f"train.lowres is the downsampling factor (≥ 2), or 0 for off; got {self.lowres}")
        if self.lowres and self.masks:
            raise ConfigError("train.lowres and train.masks each give the network extra input channels; choose one")
        if self.window_level and not self.masks:
            raise ConfigError("train.window_level=true shifts each window by the mean of its known values, so it needs "
                              "mask-conditioned training: set train.masks (e.g. train.masks=suffix for forecasts), or "
                              "train.window_level=false")
        if not 0 <= self.mask_none <= 1:
            raise ConfigError(f"train.mask_none must lie in [0, 1], got {self.mask_none}")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"train.cond_dropout must lie in [0, 1) (at 1 the network never sees a condition), "
                              f"got {self.cond_dropout}")
        if not 0 < self.eval_budget <= 1:
            raise ConfigError(f"train.eval_budget (the share of wall time evaluation may take) must lie in (0, 1], "
                              f"got {self.eval_budget}")
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401  (the optional package train.tensorboard writes through)
            except ImportError:
                raise ConfigError(f"train.tensorboard=true needs the tensorboard package, which is not installed: "
                                  f"{TENSORBOARD_INSTALL}") from None


@dataclass
class GuardConfig:
    """The stability guard (train/guard.py): what it watches and how it recovers. Steps are optimiser steps."""

    enabled: bool = True
    check_every: int = 0  # steps between host looks at the device-side flags; 0: every step on a CPU, 10 on a GPU
    history: int = 200  # steps of per-σ-bin loss and gradient-norm history for the robust statistics
    min_history: int = 50  # steps of history before spikes and explosions are judged
    # A σ-bin's loss (the geometric mean of its items' losses) this many robust std (1.4826·MAD, scaled to the
    # items in the bin) above the bin's median, and this many times the median, is a spike ...
    spike_z: float = 8.0
    spike_ratio: float = 3.0
    grad_z: float = 8.0  # ... and so is a gradient norm (before clipping) this far above its median ...
    grad_ratio: float = 10.0
    # ... but a finite step is skipped only when the other statistic agrees: it too this many robust std and
    # times above its median (a hard, healthy batch moves one of them, a corrupted batch or a failing model both).
    confirm_z: float = 4.0
    confirm_ratio: float = 3.0
    # This many skipped steps within `skip_window` steps make the loop look for damage: a fixed held-out loss
    # above `damage_ratio` × its value at the last snapshot, or more than half the window skipped. Only damage
    # rolls back and lowers the LR; skips alone never do.
    max_skips: int = 3
    skip_window: int = 200
    damage_ratio: float = 1.25
    snapshot_every: int = 100  # steps between in-memory snapshots of the whole training state
    collapse_ratio: float = 1.5  # fixed validation loss above best × this ...
    collapse_patience: int = 2  # ... at this many validations in a row is a collapse
    lr_backoff: float = 0.5  # LR factor applied at each rollback
    max_rollbacks: int = 4  # this many rollbacks within `rollback_window` steps: stop with a diagnosis
    rollback_window: int = 2000
    plateau_patience: int = 0  # validations without a 1 % improvement before the LR is lowered; 0: off
    plateau_factor: float = 0.5
    # An LR too high for the model inflates its weights (Adam's steps have a fixed size, so they random-walk the
    # norm up; normalisation layers hide it from the loss) and the run never learns fine detail, even after the LR
    # is lowered: restart from step 0 at `growth_backoff` × the LR. (Healthy runs: BENCHMARKS.md.)
    weight_growth: float = 2.5  # backbone weight norm above this × its step-0 norm within `growth_steps`; 0: off
    growth_steps: int = 2000
    growth_backoff: float = 0.25
    canaries: bool = True  # checks at start and at each validation (see train/guard.py)
    # A conditional run whose validation loss rises by less than this share when the items' conditions are
    # shuffled ignores its condition (an incident); judged from step `cond_after` on (BENCHMARKS.md, conditional).
    cond_min_gain: float = 0.01
    cond_after: int = 500

    def check(self) -> None:
        positive = {"guard.history": self.history, "guard.min_history": self.min_history,
                    "guard.spike_z": self.spike_z, "guard.spike_ratio": self.spike_ratio, "guard.grad_z": self.grad_z,
                    "guard.confirm_z": self.confirm_z,
                    "guard.grad_ratio": self.grad_ratio, "guard.max_skips": self.max_skips,
                    "guard.skip_window": self.skip_window, "guard.snapshot_every": self.snapshot_every,
                    "guard.collapse_ratio": self.collapse_ratio, "guard.collapse_patience": self.collapse_patience,
                    "guard.max_rollbacks": self.max_rollbacks, "guard.rollback_window": self.rollback_window}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.check_every < 0 or self.plateau_patience < 0 or self.growth_steps < 0:
            raise ConfigError("guard.check_every, guard.plateau_patience and guard.growth_steps must be ≥ 0")
        if self.weight_growth and self.weight_growth <= 1:
            raise ConfigError(f"guard.weight_growth must be > 1 (or 0 to turn it off), got {self.weight_growth}")
        if self.min_history > self.history:
            raise ConfigError(f"guard.min_history ({self.min_history}) cannot exceed guard.history ({self.history})")
        for name, value in (("guard.spike_ratio", self.spike_ratio), ("guard.grad_ratio", self.grad_ratio),
                            ("guard.confirm_ratio", self.confirm_ratio), ("guard.damage_ratio", self.damage_ratio)):
            if not value > 1:
                raise ConfigError(f"{name} must be > 1 (a ratio to the median or to the value before), got {value}")
        for name, value in (("guard.lr_backoff", self.lr_backoff), ("guard.plateau_factor", self.plateau_factor),
                            ("guard.growth_backoff", self.growth_backoff)):
            if not 0 < value < 1:
                raise ConfigError(f"{name} must lie in (0, 1), got {value}")


@dataclass
class RunConfig:
    """Everything one training run needs, one dataclass per component; written to `runs/NAME/config.toml`."""

    data: DataConfig = field(default_factory=DataConfig)
    net: NetConfig = field(default_factory=NetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def sampling(self, sigma_data: float) -> dict[str, Any]:
        """The run's sampling settings as `sampling.generate` takes them (settings, σ range, training noise)."""
        return {"settings": self.sample, "sigma_range": self.diffusion.sigma_range(sigma_data),
                "training_noise": self.diffusion.noise}
