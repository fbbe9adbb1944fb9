"""Typed configuration, the face: `RunConfig` (composed in train/config.py from each component's dataclass, whose
defaults live beside its code) and the functions of `typed_config` with `RunConfig` as their default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import typed_config as typed
from .train.config import RunConfig
from .typed_config import apply_overrides, coerce, diff, set_value, to_dict, to_toml, validate


def from_dict(table: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A RunConfig (the defaults, or `base` changed in place) with every key of a nested table set."""
    return typed.from_dict(table, base if base is not None else RunConfig())


def load_toml(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig read from a TOML file (keys it leaves out keep the defaults, or `base`'s values)."""
    return typed.load_toml(path, base if base is not None else RunConfig())


__all__ = ["RunConfig", "apply_overrides", "coerce", "diff", "from_dict", "load_toml", "set_value",
           "to_dict", "to_toml", "validate"]
