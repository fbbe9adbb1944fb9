"""Checkpoints: tensors in safetensors, everything else in JSON; written atomically; never pickled.

    checkpoints/step-N/model.safetensors      raw weights
    checkpoints/step-N/ema.safetensors        EMA weights
    checkpoints/step-N/optimizer.safetensors  optimiser moments (tensors only)
    checkpoints/step-N/guard.safetensors      the stability guard's loss and gradient-norm histories
    checkpoints/step-N/phema.safetensors      the power-function EMA profiles (post-hoc EMA)
    checkpoints/step-N/state.json             step, samples seen, optimiser hyper-parameters, guard state, …

A checkpoint is written under a temporary name and renamed into place, so a crash leaves either the
whole checkpoint or none of it. state.json records each tensor file's size and SHA-256, so a file damaged
afterwards (a full disk, an interrupted copy) is named when the checkpoint is read, and `last` falls back to
the newest intact checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import SteadydiffError

STEP_DIR = re.compile(r"^step-(\d+)$")
log = logging.getLogger("steadydiff")


class CheckpointDamaged(SteadydiffError):
    """A checkpoint whose files do not match what state.json recorded (or cannot be read)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into tensors (for safetensors) and JSON-safe rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(ckpt_root: Path, step: int, *, model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor],
                    optimizer: dict[str, Any], state: dict[str, Any], keep: int,
                    extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """`extra` holds further tensor groups, each saved as NAME.safetensors (the guard's, the post-hoc EMA's)."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step}"
    tmp = ckpt_root / f".tmp-step-{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_contiguous(model), str(tmp / "model.safetensors"))
    save_file(_contiguous(ema), str(tmp / "ema.safetensors"))
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
    for name, tensors in (extra or {}).items():
        save_file(_contiguous(tensors), str(tmp / f"{name}.safetensors"))
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.glob("*.safetensors"))}
    (tmp / "state.json").write_text(json.dumps({**state, "optimizer": opt_meta, "files": files}, indent=2,
                                               sort_keys=True))
    if final.exists():  # re-writing the same step (e.g. after a rollback): swap it whole, by two renames, so no
        old = ckpt_root / f".old-step-{step}"  # moment passes without a complete checkpoint of that step on disk
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    protected = best_step(ckpt_root)
    for old in list_checkpoints(ckpt_root)[:-keep]:
        if old.name != f"step-{protected}":
            shutil.rmtree(old, ignore_errors=True)
    return final


BEST_FILE = "best.json"  # in checkpoints/: the best in-training evaluation (train.keep_best), kept through rotation


def best_step(ckpt_root: Path) -> int | None:
    """The step of checkpoints/best.json, or None."""
    try:
        return int(json.loads((ckpt_root / BEST_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark_best(ckpt_root: Path, best: dict[str, Any] | None) -> None:
    """Record (or, with None, forget) the best in-training evaluation {"metric", "value", "step", ...}."""
    path = ckpt_root / BEST_FILE
    if best is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(best, indent=2))
    os.replace(tmp, path)


def remove_after(ckpt_root: Path, step: int) -> list[Path]:
    """Delete checkpoints newer than `step` (after a rollback to it they may hold a damaged state)."""
    gone = [p for p in list_checkpoints(ckpt_root) if int(STEP_DIR.match(p.name).group(1)) > step]
    for p in gone:
        shutil.rmtree(p)
    return gone


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def damage(path: Path) -> str | None:
    """What is wrong with the checkpoint folder `path` (a file missing, cut short or changed since it was written,
    state.json unreadable), or None when it is intact. Checkpoints written before checksums were recorded are
    judged by their files being present."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"{path / 'state.json'} cannot be read ({type(exc).__name__}: {exc})"
    recorded = state.get("files")
    if recorded is None:
        missing = [n for n in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")
                   if not (path / n).is_file()]
        return f"{path / missing[0]} is missing" if missing else None
    for name, want in recorded.items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        size = file.stat().st_size
        if size != want["bytes"]:
            return f"{file} holds {size:,} bytes, {want['bytes']:,} were written (cut short or overwritten)"
        if _sha256(file) != want["sha256"]:
            return f"{file} does not match the checksum recorded when it was written (its bytes changed)"
    return None


def newest_intact(ckpts: list[Path]) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest intact checkpoint or None, [(newer damaged checkpoint, what is wrong)], newest first)."""
    damaged = []
    for path in reversed(ckpts):
        problem = damage(path)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    return None, damaged


def resolve_checkpoint(run_dir: Path, which: str = "last") -> Path:
    """`last` (the newest intact checkpoint, with a warning naming any newer damaged one), `best` (as recorded in
    RUN/eval.json by `steadydiff eval RUN --best`) or `step-N` → the checkpoint folder, or a clear error listing
    what exists."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise SteadydiffError(f"{run_dir} has no checkpoint yet (looked in {run_dir / 'checkpoints'}); "
                              "train it first with `steadydiff train --out " + str(run_dir) + "`")
    if which == "last":
        intact, damaged = newest_intact(ckpts)
        for path, problem in damaged:
            log.warning("checkpoint %s is damaged: %s; it is passed over", path.name, problem)
        if intact is None:
            raise CheckpointDamaged(f"every checkpoint of {run_dir} is damaged (newest: {damaged[0][1]}); restore "
                                    "the folder from a backup, or train again into a new --out")
        return intact
    if which == "best":
        try:
            which = json.loads((run_dir / "eval.json").read_text())["best"]["checkpoint"]
        except (OSError, ValueError, KeyError, TypeError):
            step = best_step(run_dir / "checkpoints")
            if step is None:
                raise SteadydiffError(f"{run_dir} has no best checkpoint recorded (eval.json's, or the in-training "
                                      f"evaluations' with train.keep_best); run `steadydiff eval {run_dir} --best` "
                                      "first") from None
            which = f"step-{step}"
    for p in ckpts:
        if p.name == which:
            return p
    raise SteadydiffError(f"{run_dir} has no checkpoint {which!r}; it has: {', '.join(p.name for p in ckpts)}")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's tensors and state; CheckpointDamaged naming the file when it is not as written."""
    problem = damage(path)
    if problem is not None:
        intact = [p.name for p in list_checkpoints(path.parent) if p != path and damage(p) is None]
        raise CheckpointDamaged(f"checkpoint {path.name} is damaged: {problem}. " + (
            f"Intact checkpoints: {', '.join(intact)} (load one with checkpoint='step-N' / --checkpoint step-N; "
            "`last` passes over damaged ones, and `steadydiff train` resumes from the newest intact one)"
            if intact else "No intact checkpoint is left: restore the folder from a backup, or train again"))
    state = json.loads((path / "state.json").read_text())
    state.pop("files", None)
    opt_meta = state.pop("optimizer")
    return {
        "model": load_file(str(path / "model.safetensors")),
        "ema": load_file(str(path / "ema.safetensors")),
        "optimizer": optimizer_from_flat(load_file(str(path / "optimizer.safetensors")), opt_meta),
        "state": state,
        "extra": {p.name.removesuffix(".safetensors"): load_file(str(p)) for p in sorted(path.glob("*.safetensors"))
                  if p.name not in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")},
    }
