"""Ensembles (train.ensemble = K > 1): K complete runs from the seeds train.seed, …, train.seed + K − 1, trained
together with their network passes batched (train/batched.py; train.ensemble_batched) or one after another by the
single-run loop (loop.py).

Member k lives in OUT/members/k: an ordinary run directory — its own config.toml, stability guard, checkpoints,
logs, summary and report — whose config is the ensemble's with train.seed = seed + k and train.ensemble = 1. So its
initial weights, data order, σ and noise draws differ from the other members', and trained one after another it is
bit for bit the single run of that seed (batched: to float rounding; tests/test_ensemble.py); one member's rollback
or stop touches no other member. OUT/ensemble.json (written atomically as members finish) lists the members, their
seeds, whether each has finished and how they were trained.

Resume: training OUT again passes over the finished members (summary.json at the configured step count) and resumes
the unfinished ones exactly as a single run resumes; a larger train.ensemble adds members to a finished ensemble.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_text_atomic
from ..errors import ConfigError, SteadydiffError, TrainingStopped
from ..typed_config import load_toml, validate
from . import distributed as dist
from .batched import Member, train_lockstep, trial, why_not_batched
from .config import RunConfig
from .loop import TrainResult, epoch_capped_steps, finish, resolve_device, setup
from .loop import train as train_run
from .rundir import check_resume_config

log = logging.getLogger("steadydiff")

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"


def member_config(cfg: RunConfig, k: int) -> RunConfig:
    """Member k's config: the ensemble's, with its own seed, as a single run."""
    member = copy.deepcopy(cfg)
    member.train.seed = cfg.train.seed + k
    member.train.ensemble = 1
    member.train.ensemble_batched = False  # how the ensemble trains is its own record (ensemble.json)
    return member


def read_ensemble(path: str | Path) -> dict[str, Any] | None:
    """OUT/ensemble.json, or None where `path` holds no ensemble."""
    file = Path(path) / ENSEMBLE_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise SteadydiffError(f"{file} cannot be read ({exc.msg}); it is written whole by `steadydiff train`, so "
                              "something else changed it") from None


def member_dirs(path: str | Path, info: dict[str, Any]) -> list[Path]:
    return [Path(path) / m["dir"] for m in info["members"]]


def refuse_ensemble(path: str | Path, what: str) -> None:
    """A clear refusal where a verb reads one run and `path` holds an ensemble (nothing where it holds none)."""
    info = read_ensemble(path)
    if info is not None:
        first = member_dirs(path, info)[0]
        raise SteadydiffError(f"{path} holds an ensemble of {len(info['members'])} runs (train.ensemble); {what} reads "
                              f"one run: give a member's directory, e.g. {first}")


def is_finished(run_dir: Path, steps: int) -> bool:
    """A member whose summary.json says it trained the steps it was to train: `steps`, or fewer where the member's
    train.max_epochs lowers them for its data (the summary is written after the final checkpoint, so that
    checkpoint is there)."""
    try:
        done = json.loads((run_dir / "summary.json").read_text()).get("steps")
        items = json.loads((run_dir / "dataset.json").read_text())["n_train"]
        tc = load_toml(run_dir / "config.toml", RunConfig()).train
    except (OSError, KeyError, json.JSONDecodeError, SteadydiffError):
        return False
    return done == epoch_capped_steps(steps, tc.max_epochs or 0.0, items, tc.batch_size, tc.accumulate)


def write_manifest(out: Path, cfg: RunConfig, done: list[bool], training: str) -> None:
    k = cfg.train.ensemble
    write_text_atomic(out / ENSEMBLE_FILE, json.dumps({
        "ensemble": k, "seed": cfg.train.seed,
        "members": [{"dir": f"{MEMBERS_DIR}/{i}", "seed": cfg.train.seed + i, "finished": done[i]} for i in range(k)],
        "training": training,
    }, indent=2))


SEQUENTIAL = "one member after another"
BATCHED = "members together, their network passes batched (torch.func.vmap)"
LOCKSTEP = "members together, one network pass after another (vmap could not batch the backbone)"


def batching(cfg: RunConfig, todo: int) -> bool:
    """Whether the `todo` unfinished members train batched (train.ensemble_batched), after refusing options that
    cannot be batched."""
    reason = why_not_batched(cfg)
    if cfg.train.ensemble_batched and reason is not None:
        raise ConfigError(f"train.ensemble_batched=true, but the members cannot be batched with {reason}; set "
                          "train.ensemble_batched=false to train them one after another")
    return cfg.train.ensemble_batched and todo > 1


def check_directory(out: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """The ensemble already in `out` (None for a fresh directory), after refusing what cannot be resumed."""
    info = read_ensemble(out)
    if info is None:
        if (out / "config.toml").is_file():
            raise SteadydiffError(f"{out} holds a single run (train.ensemble=1); an ensemble (train.ensemble="
                                  f"{cfg.train.ensemble}) needs a new --out")
        if out.exists() and any(out.iterdir()):
            raise SteadydiffError(f"{out} exists and is not empty but holds no steadydiff run; choose another --out "
                                  "or empty it")
        return None
    if info.get("seed") != cfg.train.seed:
        raise SteadydiffError(f"{out} holds an ensemble from train.seed={info.get('seed')}, now {cfg.train.seed}; "
                              "re-run with the same seed to resume it, or choose a new --out")
    if len(info["members"]) > cfg.train.ensemble:
        raise SteadydiffError(f"{out} holds an ensemble of {len(info['members'])} members; resume it with "
                              f"train.ensemble={len(info['members'])} (or more, to add members). Its members are "
                              f"single runs: load one of them ({out / MEMBERS_DIR / '0'}) to use it alone")
    return info


def train_ensemble(cfg: RunConfig, out: str | Path, data: Any = None, *, progress: bool = True,
                   backbone: nn.Module | None = None,
                   batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train (or resume) the ensemble in `out`; returns each member's summary and the ensemble's summary.

    A `backbone` module is copied for each member before any trains, so every member starts from the weights it had
    when given (its initial weights are then the user's, not drawn from the member's seed)."""
    cfg = validate(copy.deepcopy(cfg))
    out, k = Path(out), cfg.train.ensemble
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SteadydiffError("train.ensemble > 1 trains its members in one process; under torchrun "
                              "(--nproc) it is not built. Train each member as its own run (--set train.seed=S) or "
                              "without --nproc")
    before = check_directory(out, cfg)
    # Refuse a changed config before any work: each existing member's own resume check (the first member always
    # exists once the ensemble has started).
    for i in range(len(before["members"]) if before else 0):
        if (out / MEMBERS_DIR / str(i) / "config.toml").is_file():
            check_resume_config(out / MEMBERS_DIR / str(i), member_config(cfg, i))
    if before is not None and len(before["members"]) < k:
        log.info("ensemble: train.ensemble raised from %d to %d: members %d–%d are added", len(before["members"]), k,
                 len(before["members"]), k - 1)
    pristine = copy.deepcopy(backbone) if backbone is not None else None
    out.mkdir(parents=True, exist_ok=True)
    dirs = [out / MEMBERS_DIR / str(i) for i in range(k)]
    done = [is_finished(d, cfg.train.steps) for d in dirs]
    todo = [i for i in range(k) if not done[i]]
    for i in range(k):
        if done[i]:
            log.info("ensemble: member %d of %d (train.seed=%d) finished before: kept as it is", i, k,
                     cfg.train.seed + i)
    if batching(cfg, len(todo)):
        summaries, training = train_batched(cfg, out, dirs, todo, done, data, progress, pristine, batch_transform)
    else:
        summaries, training = {}, SEQUENTIAL
        write_manifest(out, cfg, done, training)
        for i in todo:
            log.info("ensemble: member %d of %d (train.seed=%d) in %s", i, k, cfg.train.seed + i, dirs[i])
            try:
                result: TrainResult = train_run(member_config(cfg, i), dirs[i], data, progress=progress,
                                                backbone=None if pristine is None else copy.deepcopy(pristine),
                                                batch_transform=batch_transform)
            except TrainingStopped as exc:
                raise TrainingStopped(f"ensemble member {i} ({dirs[i]}): {exc}") from exc
            summaries[i] = result.summary
            done[i] = True
            write_manifest(out, cfg, done, training)
    for i in range(k):
        if i not in summaries:
            summaries[i] = json.loads((dirs[i] / "summary.json").read_text())
    first = summaries[0]
    # Batched members trained at the same time: their shared wall time counts once.
    batched = training != SEQUENTIAL
    wall = sum(s.get("wall_s", 0.0) for i, s in summaries.items() if not (batched and i in todo))
    wall += max((summaries[i].get("wall_s", 0.0) for i in todo), default=0.0) if batched else 0.0
    return [summaries[i] for i in range(k)], {
        "ensemble": k, "seeds": [cfg.train.seed + i for i in range(k)], "members": [str(d) for d in dirs],
        "data": first.get("data"), "training": training, "wall_s": round(wall, 1)}


def train_batched(cfg: RunConfig, out: Path, dirs: list[Path], todo: list[int], done: list[bool], data: Any,
                  progress: bool, pristine: nn.Module | None,
                  batch_transform: Callable[[int, torch.Tensor], torch.Tensor] | None
                  ) -> tuple[dict[int, dict[str, Any]], str]:
    """The unfinished members `todo` trained together (train/batched.py); returns their summaries and how they
    trained. Each member's setup (data, network, resume) is a single run's; progress shows the first member's."""
    device = resolve_device(cfg.train.device)
    members = []
    for n, i in enumerate(todo):
        p, st, resumed = setup(member_config(cfg, i), dirs[i], data,
                               None if pristine is None else copy.deepcopy(pristine), batch_transform,
                               progress and n == 0, dist.SINGLE, device)
        members.append(Member(i, p, st, resumed, st.step))
    reason = trial(members)
    training = BATCHED if reason is None else LOCKSTEP
    if reason is None:
        log.info("ensemble: members %s (train.seed %s) train together, %d network passes batched per step", todo,
                 [cfg.train.seed + i for i in todo], len(todo))
    else:
        log.warning("ensemble: torch.func.vmap cannot batch this backbone (%s): the members train together, one "
                    "network pass after another", reason)
    write_manifest(out, cfg, done, training)
    summaries: dict[int, dict[str, Any]] = {}

    def finished(m: Member) -> None:
        if not m.live and m.index not in summaries:
            summaries[m.index] = finish(m.p, m.st, m.resumed, m.start_step).summary
            done[m.index] = True
            write_manifest(out, cfg, done, training)

    try:
        train_lockstep(members, batched=reason is None, on_step=finished)
    except TrainingStopped as exc:
        raise TrainingStopped(f"ensemble {out}: {exc}") from exc
    return summaries, training
