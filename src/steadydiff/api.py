"""The Python API: `train`, `load`, `Run`, `Model` (the CLI is a thin layer over these)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig, from_dict, load_toml
from .data.cond import CondSpec, draw_conditions, model_conditions, parse_conditions
from .data.masks import match_block_means, upsample_to, window_level
from .data.normalise import Normaliser
from .data.table import Table
from .diffusion import Denoiser
from .errors import SteadydiffError
from .sampling import derive_seed, generate
from .sampling import nfe as count_nfe
from .sampling.ensemble import ENSEMBLE_MODES, EnsembleDenoiser, member_of
from .sampling.mc_dropout import MCDropout
from .sampling.noise import sample_seeds
from .threads import threads_for_loading
from .train import checkpoint as ckpt
from .train.ensemble import member_dirs, read_ensemble, train_ensemble
from .train.loop import build_denoiser, extra_channels, resolve_device
from .train.loop import train as train_loop

log = logging.getLogger("steadydiff")


@dataclass
class Model:
    """A trained denoiser with its normaliser: samples come back in the user's units."""

    denoiser: Denoiser
    config: RunConfig
    normaliser: Normaliser
    item_shape: tuple[int, ...]
    kind: str
    columns: list[str] | None
    step: int
    device: torch.device
    cond: CondSpec | None = None  # the run's condition; None: unconditional
    # the training vectors (conditions.npy) or captions (captions.json) conditions are drawn from when none are given
    train_conditions: np.ndarray | None = None

    @property
    def table(self) -> Table | None:
        """A run on a CSV or parquet table: its column types (data/table.py). Samples are its rows of numbers (a
        one-hot or bit block per categorical column, named in `columns`); `table.decode(x)` gives their cells."""
        return self.normaliser.table

    @property
    def classes(self) -> list[str] | None:
        return list(self.cond.classes) if self.cond is not None and self.cond.kind == "class" else None

    def conditions(self, n: int, cond: Any = None, *, seed: int = 0) -> np.ndarray | None:
        """The conditions n samples get (class ids, or vectors in user units): `cond` checked against the run
        (see `sample`), or with None, drawn like the training items' (condition i from (seed, i) alone)."""
        if cond is None:
            return None if self.cond is None else draw_conditions(self.cond, n, seed, self.train_conditions)
        return parse_conditions(self.cond, cond, n)

    def sample(self, n: int, *, steps: int | None = None, sampler: str | None = None, seed: int = 0,
               cond: Any = None, guidance: float | None = None, schedule: str | None = None, batch_size: int = 500,
               normalised: bool = False, callback: Any = None, guide: Model | None = None, mc_dropout: int = 0,
               uncertainty: bool = False, ensemble: str | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """n samples (float32 array, user units). Sample i depends on (seed, i) and its condition only, never on
        the batch size.

        A conditional run takes `cond`: class names or ids (one, or one per sample), or condition vectors ((K,) or
        (n, K)); with None the conditions are drawn like the training items' (`conditions`). `guidance` is the
        classifier-free guidance weight (1: plain conditional, 0: unconditional; default sample.guidance); with
        `guide`, a weaker model of the same run (`load(run, ema=False)` or an earlier checkpoint), the guidance is
        autoguidance (Karras et al. 2024): D_guide + w·(D − D_guide), both with the same condition.
        `callback(info)` is called after each solver step with the solver's dict (x, denoised, sigma, ...), in
        normalised units. `mc_dropout` = M > 0 evaluates the denoiser M times per step with its dropout on and uses
        the mean (sampling/mc_dropout.py; a sample then also depends on its batch); with `uncertainty` the call
        returns (samples, spread): the passes' spread of the denoised estimate along the path, per value, in
        normalised units (zeros for a network trained without dropout). `ensemble` ("mixture" or "mean"; default
        sample.ensemble) chooses how an `Ensemble` combines its members; one model is an ensemble of one, for which
        both are the same."""
        mode = self._ensemble_mode(ensemble)
        if n < 1:
            raise SteadydiffError(f"n must be ≥ 1, got {n}")
        if guidance is not None and not (isinstance(guidance, int | float) and math.isfinite(guidance)):
            raise SteadydiffError(f"guidance must be a finite number (1: plain conditional, 0: unconditional), got "
                                  f"{guidance!r}")
        if self.cond is None and (cond is not None or guidance is not None):
            parse_conditions(None, cond, n)  # raises: an unconditional run takes neither
        if self.config.train.lowres:
            raise SteadydiffError(f"this run upsamples low-resolution images (train.lowres="
                                  f"{self.config.train.lowres}); draw its samples with model.upscale(low_res_images) "
                                  "or `steadydiff sample --lowres FILE.npy`")
        values = self.conditions(n, cond, seed=seed)
        c = None if values is None else torch.as_tensor(model_conditions(self.cond, values))
        if mc_dropout < 0:
            raise SteadydiffError(f"mc_dropout must be ≥ 0 (the dropout passes per step; 0: off), got {mc_dropout}")
        self._check_uncertainty(mc_dropout, uncertainty)
        kw = dict(steps=steps, sampler=sampler, schedule=schedule, callback=callback, guidance=guidance,
                  guide=None if guide is None else guide.denoiser)
        if mc_dropout < 1 and not uncertainty:
            x = self._generate(n, seed=seed, batch_size=batch_size, cond=c, mode=mode, **kw).numpy()
            return x if normalised else np.asarray(self.normaliser.inverse(x), dtype=np.float32)
        seeds, parts, spreads = sample_seeds(seed, n), [], []
        for s in range(0, n, batch_size):  # one spread-keeping wrapper per batch: its spread belongs to those samples
            chunk = seeds[s:s + batch_size]
            keeper = self._spread_keeper(chunk, mc_dropout, mode).eval()
            parts.append(generate(keeper, self.item_shape, len(chunk), seed=seed, seeds=chunk, batch_size=len(chunk),
                                  cond=None if c is None else c[s:s + batch_size], device=self.device,
                                  **self.config.sampling(self.denoiser.sigma_data), **kw))
            spreads.append(keeper.spread().cpu())
        x = torch.cat(parts).numpy()
        x = x if normalised else np.asarray(self.normaliser.inverse(x), dtype=np.float32)
        return (x, torch.cat(spreads).numpy().astype(np.float32)) if uncertainty else x

    def _ensemble_mode(self, ensemble: str | None) -> str:
        mode = self.config.sample.ensemble if ensemble is None else ensemble
        if mode not in ENSEMBLE_MODES:
            raise SteadydiffError(f"ensemble must be one of {', '.join(ENSEMBLE_MODES)} (mixture: each sample from one "
                                  f"member; mean: the members' denoisers averaged), got {ensemble!r}")
        return mode

    def _check_uncertainty(self, mc_dropout: int, uncertainty: bool) -> None:
        if uncertainty and mc_dropout < 2:
            raise SteadydiffError("uncertainty=True needs mc_dropout ≥ 2 passes (the spread of their estimates), or "
                                  "an ensemble (train.ensemble ≥ 2: the spread of its members' estimates)")

    def _spread_keeper(self, seeds: list[int], mc_dropout: int, mode: str) -> torch.nn.Module:
        """The denoiser of one batch of samples that keeps the spread of its estimates (`spread()`)."""
        return MCDropout(self.denoiser, mc_dropout, seed=derive_seed(seeds[0], mc_dropout), rows=len(seeds))

    def _generate(self, n: int, *, seed: int, mode: str | None = None, denoiser: torch.nn.Module | None = None,
                  **kw: Any) -> torch.Tensor:
        """`sampling.generate` with this model's denoiser (or `denoiser`, a wrapper of it) and sampling settings
        (normalised units); `mode` (the ensemble's way of combining members) matters to an `Ensemble` only."""
        return generate(self.denoiser if denoiser is None else denoiser, self.item_shape, n, seed=seed,
                        device=self.device, **self.config.sampling(self.denoiser.sigma_data), **kw)

    def _with_dropout(self, n: int, passes: int, *, seed: int, mode: str | None = None, **kw: Any) -> torch.Tensor:
        """`_generate` with the denoiser's dropout on (MC dropout, `passes` per step; a network without dropout
        gives the plain draws)."""
        # rows=0: no spread is kept (the batches of `_generate` differ in size; only the draws are wanted here)
        keeper = MCDropout(self.denoiser, passes, seed=derive_seed(seed, passes), rows=0).eval()
        return self._generate(n, seed=seed, mode=mode, denoiser=keeper, **kw)

    @torch.no_grad()
    def seconds_for(self, n: int, *, steps: int | None = None, sampler: str | None = None,
                    batch_size: int = 500, ensemble: str | None = None) -> float:
        """About how long `sample(n, steps=…, sampler=…)` takes here: one network evaluation of a batch, timed
        (after a warm-up), times the evaluations each batch needs. Guidance doubles it; this leaves that out.
        `ensemble` as in `sample` (one model: no difference)."""
        self._ensemble_mode(ensemble)
        cfg = self.config.sample
        nfe = self.nfe(steps or cfg.steps, sampler or cfg.sampler)
        b = min(n, batch_size)
        x = torch.zeros((b, *self.item_shape), device=self.device)
        sigma = torch.ones(b, device=self.device)
        c = None if self.cond is None else torch.as_tensor(
            model_conditions(self.cond, self.conditions(b, seed=0))).to(self.device)
        timings = []
        for _ in range(2):  # the first call pays for allocation
            t0 = time.perf_counter()
            self.denoiser(x, sigma, c) if c is not None else self.denoiser(x, sigma)
            timings.append(time.perf_counter() - t0)
        return timings[-1] * nfe * math.ceil(n / b)

    def forecast(self, history: Any, horizon: int, *, draws: int = 100, seed: int = 0, steps: int | None = None,
                 resample: int = 5, method: str = "auto", ensemble: str | None = None) -> np.ndarray:
        """`draws` sample paths of the next `horizon` steps of a series run, shaped (draws, channels, horizon), in
        user units: imputation of a window whose last `horizon` steps are unknown, the steps before them being
        the end of `history` ((T, channels) or (T,) for one channel; at least window − horizon steps). Draw k
        depends on (seed, k) alone. A run trained with suffix masks (train.masks) forecasts with its mask-
        conditioned network; any other with training-free replacement (`impute`). `ensemble` as in `sample`: with
        mixture each path comes from one member."""
        if self.kind != "series":
            raise SteadydiffError(f"forecasting needs a series run; this one holds {self.kind} items")
        channels, length = self.item_shape
        h = np.asarray(history, dtype=np.float64)
        h = h[:, None] if h.ndim == 1 else h
        if h.ndim != 2 or h.shape[1] != channels:
            raise SteadydiffError(f"the history must be shaped (steps, {channels}) — one column per channel of the "
                                  f"run — got {h.shape}")
        if not (isinstance(horizon, int | np.integer) and 1 <= horizon < length):
            raise SteadydiffError(f"the horizon must be between 1 and {length - 1} steps (the run's windows are "
                                  f"{length} steps and need some history), got {horizon!r}")
        context = length - int(horizon)
        if len(h) < context or not np.isfinite(h[-context:]).all():
            raise SteadydiffError(f"the forecast reads the last {context} steps of the history (window {length} − "
                                  f"horizon {horizon}), which must be complete numbers; the history has {len(h)} "
                                  "steps" + ("" if len(h) < context else ", some of them missing"))
        x = np.full((1, channels, length), np.nan, dtype=np.float32)
        x[0, :, :context] = h[-context:].T
        done = self.impute(x, draws=max(int(draws), 2), seed=seed, steps=steps, resample=resample, method=method,
                           ensemble=ensemble)
        return np.asarray(done[:int(draws), 0, :, context:], dtype=np.float32)

    def impute(self, x: Any, *, draws: int = 1, seed: int = 0, steps: int | None = None, sampler: str | None = None,
               resample: int = 5, cond: Any = None, guidance: float | None = None, batch_size: int = 500,
               method: str = "auto", ensemble: str | None = None, mc_dropout: int = 0,
               known_guidance: float = 1.0) -> np.ndarray:
        """Fill every NaN of `x` (user units, items shaped like the data's, or one item): known values come back
        unchanged, bit for bit. Returns (N, ...) completions, or (draws, N, ...) with `draws` > 1 (draw k of item i
        depends on (seed, k, i) alone). Training-free (sampling/impute.py): the known values replace the model's
        estimate of them at every step, with RePaint's resampling: every Heun step taken `resample` times (1: none;
        on a 2-D mixture, 1 left 26 % of completions between the modes the known value allows and 5 left 1 %, at
        5× the cost; tests/test_conditional.py). A conditional run imputes unconditionally unless `cond` is given
        (one per item). `method`: "replace" (the above), "masked" (a run trained with train.masks reads the known
        values and their mask as extra inputs, as CSDI does; no resampling) or "auto" (masked where the run was
        trained so). A run trained with train.window_level samples each item relative to its level (per channel,
        the mean of its known values) and adds the level back, by either method. `ensemble` as in `sample`: with
        mixture each draw comes from one member, chosen by the draw's seed. `mc_dropout` = M > 0 samples with the
        network's dropout left on, the mean of M passes per step (sampling/mc_dropout.py): each draw then also
        carries the network's own uncertainty (M = 1 most, as one dropped network per step), and depends on the
        batch it is drawn in. `known_guidance` w (masked method only) guides by the known values as classifier-free
        guidance guides by a class: D_∅ + w·(D_known − D_∅), the empty mask of training being the unconditional
        branch (sampling/guidance.py; 1: plain, two network passes per step otherwise)."""
        mode = self._ensemble_mode(ensemble)
        if mc_dropout < 0:
            raise SteadydiffError(f"mc_dropout must be ≥ 0 (the dropout passes per step; 0: off), got {mc_dropout}")
        if method not in ("auto", "replace", "masked"):
            raise SteadydiffError(f"method must be auto, replace or masked, got {method!r}")
        if method == "masked" and not self.config.train.masks:
            raise SteadydiffError("method='masked' needs a run trained with train.masks; use method='replace'")
        masked = method == "masked" or (method == "auto" and bool(self.config.train.masks))
        if not (isinstance(known_guidance, int | float) and math.isfinite(known_guidance)):
            raise SteadydiffError(f"known_guidance must be a finite number (1: plain), got {known_guidance!r}")
        if known_guidance != 1 and not masked:
            raise SteadydiffError(f"known_guidance={known_guidance:g} guides a mask-conditioned run by its known "
                                  "values; this imputation replaces them (method='replace'): train with train.masks "
                                  "or leave known_guidance at 1")
        arr = np.asarray(x, dtype=np.float32)
        single = arr.shape == self.item_shape
        arr = arr[None] if single else arr
        if arr.shape[1:] != self.item_shape:
            raise SteadydiffError(f"items to impute are shaped {arr.shape[1:]}; this run's items are shaped "
                                  f"{self.item_shape}")
        if np.isinf(arr).any():
            where = tuple(int(i) for i in np.argwhere(np.isinf(arr))[0])
            raise SteadydiffError(f"value {where} is infinite; mark unknown values with NaN, not Inf")
        if self.normaliser.table is not None:  # a category is known in its whole block, or unknown in it
            self.normaliser.table.check_rows(arr.reshape(len(arr), -1), "the items to impute")
        if draws < 1 or resample < 1:
            raise SteadydiffError(f"draws and resample must be ≥ 1, got {draws} and {resample}")
        n = len(arr)
        known = np.asarray(self.normaliser.forward(arr), dtype=np.float32)
        rows = np.concatenate([known] * draws)
        seeds = [derive_seed(seed, k, i) for k in range(draws) for i in range(n)]
        c = None
        if self.cond is not None:
            values = parse_conditions(self.cond, cond, n) if cond is not None else None
            c = torch.as_tensor(model_conditions(self.cond, values)) if values is not None else None
            if c is None:  # no condition: the unconditional branch (the known values carry the information)
                c, guidance = torch.as_tensor(model_conditions(self.cond, draw_conditions(self.cond, n, seed,
                                                                                       self.train_conditions))), 0.0
            c = c.repeat(draws, *([1] * (c.dim() - 1)))
        elif cond is not None or guidance is not None:
            parse_conditions(None, cond, n)  # raises: an unconditional run takes neither
        given = torch.from_numpy(rows)
        # train.window_level: the items' levels (per channel, the mean of the known values) come off before sampling
        # and back on after, as in training; the replacement path shifts alike, which moves the known values to
        # levels the network has seen
        level = window_level(given, ~torch.isnan(given)) if self.config.train.window_level else None
        kw = dict(steps=steps, sampler=sampler, batch_size=batch_size, cond=c, guidance=guidance,
                  known=given if level is None else given - level, resample=resample, seeds=seeds, masked=masked,
                  known_guidance=float(known_guidance))
        if mc_dropout:
            out = self._with_dropout(n * draws, mc_dropout, seed=seed, mode=mode, **kw)
        else:
            out = self._generate(n * draws, seed=seed, mode=mode, **kw)
        out = (out if level is None else out + level).numpy()
        user = np.asarray(self.normaliser.inverse(out), dtype=np.float32).reshape(draws, n, *self.item_shape)
        mask = ~np.isnan(arr)
        user = np.where(mask[None], arr[None], user)  # the known values exactly as given
        return (user[0, 0] if single else user[0]) if draws == 1 else (user[:, 0] if single else user)

    def upscale(self, low: Any, *, seed: int = 0, steps: int | None = None, sampler: str | None = None,
                cond: Any = None, guidance: float | None = None, batch_size: int = 500,
                exact: bool = True) -> np.ndarray:
        """Super-resolution with a run trained with train.lowres = f: images (N, C, H/f, W/f) in the user's units
        (rounded up for sizes f does not divide) → (N, C, H, W) samples whose block averages match them: exactly
        (`exact`: the network's output projected onto the images in the pixel range that have those block means,
        data/masks.match_block_means) or as the network gives them (`exact=False`)."""
        f = self.config.train.lowres
        if not f:
            raise SteadydiffError("this run was not trained for super-resolution; train one with train.lowres=2")
        arr = np.asarray(low, dtype=np.float32)
        arr = arr[None] if arr.ndim == 3 else arr
        c, h, w = self.item_shape
        want = (c, -(-h // f), -(-w // f))
        if arr.ndim != 4 or arr.shape[1:] != want or not np.isfinite(arr).all():
            raise SteadydiffError(f"low-resolution images must be finite and shaped (N, {want[0]}, {want[1]}, "
                                  f"{want[2]}) (this run's images are {h}×{w}, factor {f}); got {arr.shape}")
        n = len(arr)
        extra = upsample_to(torch.from_numpy(np.asarray(self.normaliser.forward(arr), np.float32)), (h, w))
        values = self.conditions(n, cond, seed=seed)
        cv = None if values is None else torch.as_tensor(model_conditions(self.cond, values))
        out = self._generate(n, seed=seed, steps=steps, sampler=sampler, batch_size=batch_size, cond=cv,
                             guidance=guidance, extra=extra).numpy()
        up = np.asarray(self.normaliser.inverse(out), dtype=np.float32)
        if not exact:
            return up
        # The network learns the block means only approximately (0.3 of 16 pixel units off on digits): the
        # nearest image in the pixel range that has them exactly
        return match_block_means(up, arr, f, self.normaliser.lo, self.normaliser.hi)

    def edit(self, x: Any, strength: float, *, seed: int = 0, steps: int | None = None, sampler: str | None = None,
             cond: Any = None, guidance: float | None = None, batch_size: int = 500) -> np.ndarray:
        """SDEdit (Meng et al. 2022): items `x` (user units) noised to the σ a share `strength` of the way up the
        step list and denoised from there, optionally towards a condition (`cond`, `guidance` as in `sample`).
        Strength near 0 returns x nearly unchanged, 1 is a fresh sample that ignores it."""
        arr = np.asarray(x, dtype=np.float32)
        single = arr.shape == self.item_shape
        arr = arr[None] if single else arr
        if arr.shape[1:] != self.item_shape or not np.isfinite(arr).all():
            raise SteadydiffError(f"items to edit must be finite and shaped {self.item_shape}, got "
                                  f"{arr.shape[1:]}" + ("" if np.isfinite(arr).all() else " with NaN/Inf (use impute)"))
        if not (isinstance(strength, int | float) and 0 < strength <= 1):
            raise SteadydiffError(f"strength must lie in (0, 1] (0: no change, 1: a fresh sample), got {strength!r}")
        n = len(arr)
        if self.cond is None and (cond is not None or guidance is not None):
            parse_conditions(None, cond, n)
        c = None
        if self.cond is not None:
            if cond is None:  # no condition asked for: the unconditional branch
                cond, guidance = draw_conditions(self.cond, n, seed, self.train_conditions), 0.0
            else:
                cond = parse_conditions(self.cond, cond, n)
            c = torch.as_tensor(model_conditions(self.cond, cond))
        out = self._generate(n, seed=seed, steps=steps, sampler=sampler, batch_size=batch_size, cond=c,
                             guidance=guidance, strength=float(strength),
                             init=torch.from_numpy(np.asarray(self.normaliser.forward(arr), np.float32))).numpy()
        user = np.asarray(self.normaliser.inverse(out), dtype=np.float32)
        return user[0] if single else user

    def nfe(self, steps: int | None = None, sampler: str | None = None) -> int:
        """Network evaluations one sample costs with these settings."""
        return count_nfe(sampler or self.config.sample.sampler, steps or self.config.sample.steps)


_PER_SAMPLE = ("cond", "known", "extra", "init")  # `generate` arguments with one row per sample


@dataclass
class Ensemble(Model):
    """K models of one data set trained from different seeds (train.ensemble; train/ensemble.py), sampled as one:
    every method of `Model` works, its `ensemble` argument (default sample.ensemble) choosing how the members are
    combined (sampling/ensemble.py). mixture: sample i (or draw k of an imputed item) comes from the member its own
    seed picks, so it depends on (seed, i) alone, at the cost of one model; mean: the members' denoisers averaged
    at every network evaluation, K times the cost. `sample(..., uncertainty=True)` returns (samples, spread): the
    members' disagreement on the denoised estimate along the path, per sample and per value, in normalised units
    (the same definition as MC dropout's spread; every member is evaluated at every step, K times the cost).
    `denoiser` is the members' mean (`EnsembleDenoiser`); `members` are the single models."""

    members: list[Model] = field(default_factory=list)

    @classmethod
    def of(cls, members: list[Model], seed: int | None = None) -> Ensemble:
        """The ensemble of models trained on the same data (same item shape and normaliser); `seed`: the ensemble's
        train.seed for its config (default: the first member's)."""
        if not members:
            raise SteadydiffError("an ensemble needs at least one member")
        first = members[0]
        for k, m in enumerate(members[1:], start=1):
            if m.item_shape != first.item_shape or m.normaliser.to_dict() != first.normaliser.to_dict() or \
                    (m.cond is None) != (first.cond is None):
                raise SteadydiffError(f"ensemble member {k} was not trained on the same data as member 0 (item shape "
                                      f"{m.item_shape} against {first.item_shape}, or another normaliser or condition)")
        cfg = copy.deepcopy(first.config)
        cfg.train.seed = cfg.train.seed if seed is None else seed
        cfg.train.ensemble = len(members)
        return cls(denoiser=EnsembleDenoiser([m.denoiser for m in members]).eval(), config=cfg,
                   normaliser=first.normaliser, item_shape=first.item_shape, kind=first.kind, columns=first.columns,
                   step=min(m.step for m in members), device=first.device, cond=first.cond,
                   train_conditions=first.train_conditions, members=list(members))

    def _check_uncertainty(self, mc_dropout: int, uncertainty: bool) -> None:
        if mc_dropout:
            raise SteadydiffError("MC dropout on an ensemble is not built; uncertainty=True gives the spread of the "
                                  "members' estimates. For MC dropout, load one member (RUN/members/0)")

    def _spread_keeper(self, seeds: list[int], mc_dropout: int, mode: str) -> torch.nn.Module:
        pick = torch.from_numpy(member_of(seeds, len(self.members))) if mode == "mixture" else None
        return EnsembleDenoiser([m.denoiser for m in self.members], pick=pick, rows=len(seeds))

    def _with_dropout(self, n: int, passes: int, *, seed: int, mode: str | None = None, **kw: Any) -> torch.Tensor:
        raise SteadydiffError("mc_dropout on an ensemble is not built: the members' spread is its uncertainty; "
                              "impute with one member (load OUT/members/K) for MC dropout")

    def _generate(self, n: int, *, seed: int, mode: str | None = None, **kw: Any) -> torch.Tensor:
        if (mode or self.config.sample.ensemble) == "mean":
            return super()._generate(n, seed=seed, **kw)  # `denoiser` is the members' mean
        # mixture: each sample's rows go to the member its seed picks, drawn there with that seed
        seeds = sample_seeds(seed, n) if kw.get("seeds") is None else list(kw["seeds"])
        pick = member_of(seeds, len(self.members))
        out = None
        for k, member in enumerate(self.members):
            rows = np.flatnonzero(pick == k)
            if not len(rows):
                continue
            idx = torch.from_numpy(rows)
            given = {key: v[idx] if key in _PER_SAMPLE and v is not None else v for key, v in kw.items()}
            part = member._generate(len(rows), **{**given, "seed": seed, "seeds": [seeds[i] for i in rows]})
            out = torch.empty((n, *part.shape[1:]), dtype=part.dtype) if out is None else out
            out[idx] = part
        assert out is not None  # n ≥ 1 rows, each picked by some member
        return out

    def seconds_for(self, n: int, *, steps: int | None = None, sampler: str | None = None,
                    batch_size: int = 500, ensemble: str | None = None) -> float:
        if self._ensemble_mode(ensemble) == "mixture":  # each sample from one member: one model's cost
            return self.members[0].seconds_for(n, steps=steps, sampler=sampler, batch_size=batch_size)
        return super().seconds_for(n, steps=steps, sampler=sampler, batch_size=batch_size, ensemble=ensemble)


@dataclass
class Run:
    dir: Path
    config: RunConfig
    summary: dict[str, Any]

    def load(self, ema: bool = True, checkpoint: str = "last") -> Model:
        return load(self.dir, ema=ema, checkpoint=checkpoint)


def _config_from_any(config: RunConfig | dict | str | Path | None) -> RunConfig:
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return copy.deepcopy(config)
    if isinstance(config, dict):
        return from_dict(config)
    return load_toml(config)


def train(config: RunConfig | dict | str | Path | None = None, data: Any = None, *, out: str | Path = "runs/run",
          progress: bool = True, backbone: torch.nn.Module | None = None,
          batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> Run:
    """Train (or resume, if `out` holds this run) and return the run.

    `data` may be a built-in name, a path, a numpy array or a torch Dataset; None uses config.data.source.
    `backbone` replaces the configured network F: any module called as F(x, c_noise, cond) that returns x's
    shape (pass the same module to `load`). `batch_transform(step, x)` is applied to every training batch, in
    normalised units, after the built-in augmentation.
    With train.ensemble = K > 1, K runs from seeds train.seed + k are trained one after another in out/members/k
    (train/ensemble.py); the run's summary then lists theirs, and `load(out)` gives an `Ensemble`.
    Raises `TrainingStopped` (a SteadydiffError) when the stability guard gives up, with its diagnosis.
    """
    cfg = _config_from_any(config)
    if isinstance(data, (str, Path)):
        cfg.data.source = str(data)
        data = None
    elif data is not None:  # record honestly what was trained on; its fingerprint guards a resume
        cfg.data.source = f"<{type(data).__name__} given to steadydiff.train>"
    if cfg.train.ensemble > 1:  # K runs in out/members/k (train/ensemble.py)
        members, summary = train_ensemble(cfg, out, data, progress=progress, backbone=backbone,
                                          batch_transform=batch_transform)
        return Run(dir=Path(out), config=cfg, summary={**summary, "member_summaries": members})
    info = read_ensemble(out)
    if info is not None:
        raise SteadydiffError(f"{out} holds an ensemble of {len(info['members'])} runs; resume it with "
                              f"train.ensemble={len(info['members'])}, or choose a new --out for a single run")
    result = train_loop(cfg, out, data, progress=progress, backbone=backbone, batch_transform=batch_transform)
    return Run(dir=result.run_dir, config=result.config, summary=result.summary)


def load(run_dir: str | Path, ema: bool = True, checkpoint: str = "last", device: str = "auto",
         backbone: torch.nn.Module | None = None) -> Model:
    """Load a trained model from a run directory (EMA weights by default); `backbone`: the module a run was
    trained with through `train(..., backbone=)`. A directory holding an ensemble (train.ensemble) gives an
    `Ensemble` of its members, each loaded alike (a copy of `backbone` each)."""
    run_dir = Path(run_dir)
    info = read_ensemble(run_dir)
    if info is not None:
        members = []
        for k, d in enumerate(member_dirs(run_dir, info)):
            if not ckpt.list_checkpoints(d / "checkpoints"):
                raise SteadydiffError(f"{run_dir} is an ensemble whose member {k} ({d}) has no checkpoint yet: run "
                                      f"`steadydiff train` on {run_dir} again to finish it (or load a finished "
                                      "member's directory alone)")
            members.append(load(d, ema=ema, checkpoint=checkpoint, device=device,
                                backbone=None if backbone is None else copy.deepcopy(backbone)))
        return Ensemble.of(members, seed=info["seed"])
    if not (run_dir / "config.toml").is_file():
        raise SteadydiffError(f"{run_dir} is not a steadydiff run directory (no config.toml); "
                              "train one with `steadydiff train --out DIR`")
    cfg = load_toml(run_dir / "config.toml")
    info = json.loads((run_dir / "dataset.json").read_text())
    norm = Normaliser.from_dict(json.loads((run_dir / "normaliser.json").read_text()))
    path = ckpt.resolve_checkpoint(run_dir, checkpoint)
    state = ckpt.load_checkpoint(path)
    dev = resolve_device(device)
    if cfg.diffusion.sigma_data is None:
        raise SteadydiffError(f"{run_dir / 'config.toml'} lacks diffusion.sigma_data; the run never started")
    cond = CondSpec.from_dict(info["condition"]) if info.get("condition") else None
    net = build_denoiser(cfg, tuple(info["item_shape"]), cfg.diffusion.sigma_data, backbone=backbone, cond=cond)
    net.load_state_dict(state["ema" if ema else "model"])
    net.to(dev).eval().requires_grad_(False)
    if dev.type == "cpu":  # the thread count that evaluates this network fastest here (threads.py)
        probe = torch.zeros(16, *info["item_shape"])
        extra = extra_channels(cfg, tuple(info["item_shape"]))
        given = torch.zeros(16, extra, *info["item_shape"][1:]) if extra else None
        with torch.no_grad():
            n, why = threads_for_loading(lambda: net(probe, torch.ones(16), extra=given))
        log.info("threads: %d (%s)", n, why)
    vectors = None
    if cond is not None and cond.kind == "vector":
        vectors = np.load(run_dir / "conditions.npy", allow_pickle=False)
    if cond is not None and cond.kind == "text":
        vectors = np.asarray(json.loads((run_dir / "captions.json").read_text()), dtype=object)
    return Model(denoiser=net, config=cfg, normaliser=norm, item_shape=tuple(info["item_shape"]),
                 kind=info["kind"], columns=info.get("columns"), step=state["state"]["step"], device=dev,
                 cond=cond, train_conditions=vectors)
