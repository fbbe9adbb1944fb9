"""User code named as "MODULE:ATTR" (a feature function, a text encoder), imported with importlib from the Python
path: code is imported by name, never unpickled."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from .errors import SteadydiffError


def check_callable(obj: Any, name: str, what: str) -> Callable[..., Any]:
    """`obj` itself when it can be called; `name` says where it came from, `what` what it must be."""
    if isinstance(obj, type):
        raise SteadydiffError(f"{name} is a class; name an instance or a function instead (e.g. `embed = MyNet()` "
                              "in the module, with its weights loaded)")
    if not callable(obj):
        raise SteadydiffError(f"{name} is a {type(obj).__name__}, not {what}")
    return obj


def import_callable(spec: str, setting: str, what: str, example: str, alternatives: Sequence[str] = ()
                    ) -> Callable[..., Any]:
    """The callable "MODULE:ATTR" names (ATTR may be dotted). `setting` names the option in messages (e.g.
    "features"), `what` what the callable must be, `example` a MODULE:ATTR to show, `alternatives` the option's
    built-in values."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        others = f", or choose one of {', '.join(alternatives)}" if alternatives else ""
        raise SteadydiffError(f"{setting} {spec!r}: name {what} as MODULE:ATTR, e.g. {example}{others}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise SteadydiffError(f"{setting} {spec!r}: there is no module named {e.name!r} on the Python path; "
                                  "put the folder holding it on PYTHONPATH (or install its package)") from None
        raise SteadydiffError(f"{setting} {spec!r}: importing {module_name} failed: {e}") from e
    except Exception as e:  # anything the user's module raises while it is imported
        raise SteadydiffError(f"{setting} {spec!r}: importing {module_name} failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            raise SteadydiffError(f"{setting} {spec!r}: {getattr(obj, '__name__', module_name)} has no attribute "
                                  f"{part!r}" + (f"; it has {', '.join(have[:12])}" if have else ""))
        obj = getattr(obj, part)
    return check_callable(obj, f"{setting} {spec!r}", what)
