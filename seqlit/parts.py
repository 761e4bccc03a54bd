"""Parts given by `class_path`: build one from whatever form it arrives in, and describe it back as plain data.

A task's parts (encoder, decoder, cell, optimizer, schedule) arrive as factories: from YAML, LightningCLI
hands over a partial of the named class with its `init_args`; from Python, a class, a `functools.partial`
or a plain-data spec `{"class_path": "pkg.mod.Class", "init_args": {...}}` (which is also what a
checkpoint stores). `build` calls any of them with the sizes the owner supplies; `describe` turns any of
them into the spec, so hyperparameters stay plain data and every checkpoint loads with `weights_only=True`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["build", "describe", "factory_class", "import_object", "resolve"]


def import_object(path: str, what: str = "class") -> Any:
    """`pkg.mod.Name` -> the object, or a ValueError saying how to make it importable."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{what} {path!r} is not an import path like my_module.MyClass.")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"cannot import the {what} {path!r} ({error}); check the module is on the Python path (run from its "
            "folder, set PYTHONPATH, or install it) and the name is spelled right."
        ) from None


def resolve(part: Any, what: str = "part") -> Callable[..., Any]:
    """The factory behind `part`: a spec dict becomes a partial of its class; callables pass through."""
    if isinstance(part, Mapping) and "class_path" in part:
        cls = import_object(str(part["class_path"]), what)
        init_args = {key: value for key, value in dict(part.get("init_args") or {}).items()}
        return functools.partial(cls, **init_args)
    if isinstance(part, str) and "." in part:
        return import_object(part, what)
    if callable(part):
        return part
    raise ValueError(
        f"{what} must be a class, a factory or {{class_path: ..., init_args: ...}}, got {type(part).__name__} {part!r}."
    )


def build(part: Any, *args: Any, what: str = "part", **kwargs: Any) -> Any:
    """Calls the factory behind `part` with the leading arguments its owner supplies (sizes, parameters)."""
    return resolve(part, what)(*args, **kwargs)


def factory_class(part: Any) -> type | None:
    """The class a factory builds, when it can be told (a class, a partial of one, a spec)."""
    if isinstance(part, type):
        return part
    if isinstance(part, Mapping) and "class_path" in part:
        try:
            found = import_object(str(part["class_path"]))
        except ValueError:
            return None
        return found if isinstance(found, type) else None
    if isinstance(part, functools.partial):
        if isinstance(part.func, type):
            return part.func
        # LightningCLI/jsonargparse partials: partial(call_helper, instantiator, cls, **init_args)
        classes = [arg for arg in part.args if isinstance(arg, type)]
        return classes[-1] if classes else None
    return None


def describe(part: Any) -> Any:
    """`part` as plain data: factories become `{"class_path", "init_args"}`, objects with a `to_config()`
    their own spec; containers are described element by element; anything plain is returned as it is."""
    if part is None or isinstance(part, (str, int, float, bool)):
        return part
    if isinstance(part, Mapping):
        return {key: describe(value) for key, value in part.items()}
    if isinstance(part, (list, tuple)):
        return [describe(value) for value in part]
    to_config = getattr(part, "to_config", None)
    if callable(to_config) and not isinstance(part, type):
        return to_config()
    cls = factory_class(part)
    if cls is not None:
        init_args = dict(part.keywords) if isinstance(part, functools.partial) else {}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": describe(init_args)}
    if inspect.isfunction(part):
        return f"{part.__module__}.{part.__qualname__}"
    return part
