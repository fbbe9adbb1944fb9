"""Typed configuration, for any tree of dataclasses: `key.sub=value` overrides and TOML tables mapped onto the
fields, each value converted and checked against its declared type, unknown keys and bad values refused at once
with the closest valid name. It knows no component: `train/config.py` composes them into `RunConfig`, and
`steadydiff.config` (the face) offers these functions with `RunConfig` as the default."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import tomli_w

from .errors import ConfigError

T = TypeVar("T")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# --------------------------------------------------------------------------------------------------
# Values: parse and check one value against a field's declared type.


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `where`.

    Strings (from the command line) are parsed; values from TOML are checked as they are.
    """
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}.{hint}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", ""))):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a valid {' or '.join(_type_name(a) for a in args)}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [coerce(v.strip() if isinstance(v, str) else v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                f = float("nan")
            if f == f and f.is_integer():
                return int(f)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {tp!r}")  # a bug in a config dataclass


# --------------------------------------------------------------------------------------------------
# Keys: find fields by dotted name; suggest the closest on a miss.


def _hints(obj: Any) -> dict[str, Any]:
    return get_type_hints(type(obj))


def _all_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            keys += _all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key(root: Any, key: str) -> ConfigError:
    known = _all_keys(root)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    if not close:  # a bare field name: match on the last part
        tails = {k.rsplit(".", 1)[-1]: k for k in known}
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1)
        close = [tails[hit[0]]] if hit else []
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{key}'.{hint} (`steadydiff train --dry-run` lists every key)")


def set_value(root: Any, key: str, value: Any) -> None:
    """Set `root.a.b = value` for key 'a.b', converting and checking the value against its type."""
    obj = root
    parts = key.split(".")
    for part in parts[:-1]:
        if not any(f.name == part for f in fields(obj)) or not is_dataclass(getattr(obj, part)):
            raise _unknown_key(root, key)
        obj = getattr(obj, part)
    name = parts[-1]
    if not any(f.name == name for f in fields(obj)) or is_dataclass(getattr(obj, name)):
        raise _unknown_key(root, key)
    setattr(obj, name, coerce(value, _hints(obj)[name], f"config key '{key}'"))


def apply_overrides(cfg: T, assignments: list[str]) -> T:
    """Apply `key=value` strings (the CLI's `--set`)."""
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (for example --set train.lr=2e-4)")
        key, value = item.split("=", 1)
        set_value(cfg, key.strip(), value.strip())
    return cfg


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def from_dict(table: dict[str, Any], base: T) -> T:
    """`base` (changed in place) with every key of a nested table set."""
    for key, value in _flatten(table).items():
        set_value(base, key, value)
    return base


def load_toml(path: str | Path, base: T) -> T:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    try:
        return from_dict(table, base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dict for TOML: None values are left out (TOML has no null; absent means default None)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(cfg))


def to_toml(cfg: Any) -> str:
    return tomli_w.dumps(to_dict(cfg))


def validate(cfg: T) -> T:
    """Cross-field checks that one field's type cannot express: each component's `check()`, if it has one."""
    for f in fields(cfg):
        check = getattr(getattr(cfg, f.name), "check", None)
        if check is not None:
            check()
    return cfg


def diff(a: Any, b: Any) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: {key: (a_value, b_value)}."""
    fa, fb = _flatten(dataclasses.asdict(a)), _flatten(dataclasses.asdict(b))
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


__all__ = ["apply_overrides", "coerce", "diff", "from_dict", "load_toml", "set_value",
           "to_dict", "to_toml", "validate"]
