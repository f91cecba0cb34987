"""Hyperparameter values as plain data: ``describe`` turns objects into what ``torch.load(weights_only=True)`` and
``yaml.safe_load`` read, ``rebuild`` turns that back, ``description_text`` and ``hparams_for_display`` show it."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import importlib
import inspect
import pathlib
import reprlib
import sys
from collections.abc import Mapping, MutableSequence
from typing import Any, Optional

import torch
from torch import nn

from ember._utils import AttributeDict

OBJECT_KEY = "_ember_object_"
# Types rebuilt from a description without importing anything the file names: plain data holders.
_SAFE_TYPES: dict[str, type] = {"argparse.Namespace": argparse.Namespace, **{f"pathlib.{c.__name__}": c for c in (
    pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)}}
SCALARS = (bool, int, float, complex, str, bytes)
_repr = reprlib.Repr()
_repr.maxother = _repr.maxstring = 200
short_repr = _repr.repr


def import_path(obj: Any) -> Optional[str]:
    """``"module.qualname"`` when that path leads back to ``obj`` among the modules already imported, else None
    (a lambda, a function defined inside another, a bound method)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module not in sys.modules:
        return None
    for name in (getattr(obj, "__qualname__", None), getattr(obj, "__name__", None)):
        if not isinstance(name, str) or "<" in name:
            continue
        target: Any = sys.modules[module]
        for part in name.split("."):
            target = getattr(target, part, None)
        if target is obj:
            return f"{module}.{name}"
    return None


def _type_path(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _object(value: Any) -> dict:
    """The description of something ember cannot rebuild: its type and a short repr."""
    return {OBJECT_KEY: "object", "type": _type_path(value), "repr": short_repr(value)}


def describe(value: Any, for_yaml: bool = False) -> Any:
    """``value`` as plain data: itself when ``torch.load(weights_only=True)`` reads it, else a *description*, a dict
    marked with ``OBJECT_KEY`` (all kinds are in docs/module.md; empty ``args``/``kwargs`` are left out)::

        {"_ember_object_": "partial", "target": "torch.optim.adam.Adam", "kwargs": {"lr": 0.001}}

    The target is the ``__module__`` and ``__qualname__`` of a class, function, enum, dataclass...; what has none
    that leads back to it (a lambda) is an ``object``: its type and repr. ``for_yaml``: what ``yaml.safe_dump``
    writes instead: tensors as lists, dtypes and devices as text, tuples and sets as lists, every key a scalar.
    """
    if value is None or type(value) in SCALARS:
        return str(value) if for_yaml and type(value) is complex else value
    if isinstance(value, enum.Enum):
        path = import_path(type(value))
        return {OBJECT_KEY: "enum", "target": path, "name": value.name} if path else _object(value)
    if isinstance(value, SCALARS):  # a subclass of int, str... (numpy.float64): its plain value
        return describe(next(t for t in SCALARS if isinstance(value, t))(value), for_yaml)
    if isinstance(value, torch.Tensor):
        return value.tolist() if for_yaml else value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value) if for_yaml else value
    if isinstance(value, nn.Module):
        return {OBJECT_KEY: "nn.Module", "type": _type_path(value)}
    if isinstance(value, Mapping):
        return {plain_key(k, for_yaml): describe(v, for_yaml) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return _call("instance", value, import_path(type(value)), [], value._asdict(), for_yaml)
    if isinstance(value, torch.Size):
        return list(value) if for_yaml else value
    if isinstance(value, (list, tuple, MutableSequence)):  # MutableSequence: an OmegaConf ListConfig
        items = [describe(v, for_yaml) for v in value]
        return tuple(items) if isinstance(value, tuple) and not for_yaml else items
    if isinstance(value, (set, frozenset)):
        items = [describe(v, for_yaml) for v in value]
        return items if for_yaml or any(isinstance(v, (dict, list)) for v in items) else set(items)
    if isinstance(value, argparse.Namespace):
        return _call("instance", value, "argparse.Namespace", [], vars(value), for_yaml)
    if isinstance(value, pathlib.PurePath):
        return _call("instance", value, _safe_path_type(value), [str(value)], {}, for_yaml)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        return _call("instance", value, import_path(type(value)), [], fields, for_yaml)
    if isinstance(value, functools.partial):
        value = _unwrap_jsonargparse(value)
        return _call("partial", value, import_path(value.func), value.args, value.keywords, for_yaml)
    if inspect.isclass(value) or inspect.isroutine(value):
        return _call("class" if inspect.isclass(value) else "function", value, import_path(value), [], {}, for_yaml)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return _object(value)


def _call(kind: str, value: Any, target: Optional[str], args: Any, kwargs: Mapping, for_yaml: bool) -> dict:
    """The description of ``value`` as ``target(*args, **kwargs)``, or an ``object`` when it has no import path;
    empty ``args``/``kwargs`` are left out (easier to read)."""
    if target is None:
        return _object(value)
    desc: dict = {OBJECT_KEY: kind, "target": target}
    if args:
        desc["args"] = [describe(a, for_yaml) for a in args]
    if kwargs:
        desc["kwargs"] = {k: describe(v, for_yaml) for k, v in kwargs.items()}
    return desc


def _unwrap_jsonargparse(value: functools.partial) -> functools.partial:
    """jsonargparse's callable for a ``class_path`` (``partial(call_without_instantiate_context, instantiator,
    cls, **init_args)``) as ``partial(cls, **init_args)``, what it calls."""
    func_module = getattr(value.func, "__module__", None) or ""
    if func_module.startswith("jsonargparse") and value.args and inspect.isclass(value.args[-1]):
        return functools.partial(value.args[-1], **value.keywords)
    return value


def plain_key(key: Any, for_yaml: bool) -> Any:
    """A dict key as plain data: a scalar (or, in a checkpoint, a tuple of them) as it is, else its text."""
    if key is None or type(key) in SCALARS:
        return key if not (for_yaml and isinstance(key, (complex, bytes))) else str(key)
    if not for_yaml and type(key) is tuple and all(k is None or type(k) in SCALARS for k in key):
        return key
    text = description_text(describe(key))
    return text if isinstance(text, str) else str(key)


def _safe_path_type(value: pathlib.PurePath) -> str:
    """One of ``_SAFE_TYPES``: ``pathlib.Path`` for a concrete path (not PosixPath: the file may be read on another
    system), the pure class for a pure path, ``pathlib.PurePath`` for a subclass of one's own."""
    if isinstance(value, pathlib.Path):
        return "pathlib.Path"
    name = f"pathlib.{type(value).__name__}"
    return name if name in _SAFE_TYPES and type(value).__module__ == "pathlib" else "pathlib.PurePath"


def hparams_for_display(params: Any) -> Any:
    """For loggers that show one value per name (TensorBoard, MLflow, W&B): dicts, Namespaces and dataclasses
    as nested dicts (the logger flattens them), plain values as they are, any other object as one line of text:
    ``"torch.optim.adam.Adam"``, ``"functools.partial(torch.optim.adam.Adam, lr=0.001)"``, ``"Mode.FAST"``."""
    if isinstance(params, argparse.Namespace):
        params = vars(params)
    elif dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    if isinstance(params, Mapping):
        return {k: hparams_for_display(v) for k, v in params.items()}
    if params is None or type(params) in SCALARS or isinstance(params, torch.Tensor):
        return params
    if isinstance(params, (list, tuple)) and not hasattr(params, "_fields"):
        return [hparams_for_display(v) for v in params]
    if isinstance(params, (enum.Enum, pathlib.PurePath)):
        return str(params)
    return description_text(describe(params))


def description_text(desc: Any) -> Any:
    """A description (see ``describe``) as one line of text; plain data is returned as it is."""
    if isinstance(desc, list):
        return [description_text(v) for v in desc]
    if not isinstance(desc, dict):
        return desc
    kind = desc.get(OBJECT_KEY)
    if kind is None:
        return {k: description_text(v) for k, v in desc.items()}
    target = str(desc.get("target"))  # a file written by someone else may hold anything: text only
    if kind in ("class", "function"):
        return target
    if kind == "enum":
        return f"{target.rsplit('.', 1)[-1]}.{desc.get('name')}"
    if kind in ("partial", "instance"):
        args, kwargs = desc.get("args", []), desc.get("kwargs", {})
        parts = [_text_arg(a) for a in args] if isinstance(args, list) else []
        parts += [f"{k}={_text_arg(v)}" for k, v in kwargs.items()] if isinstance(kwargs, dict) else []
        if kind == "partial":
            return f"functools.partial({', '.join([target] + parts)})"
        return f"{target}({', '.join(parts)})"
    if kind == "nn.Module":
        return str(desc.get("type"))
    return str(desc.get("repr", desc))


def _text_arg(value: Any) -> str:
    text = description_text(value)
    return text if isinstance(value, dict) and OBJECT_KEY in value else repr(text)


class NotRebuilt(Exception):
    """A stored value that stays a description: ``text`` says what it was."""

    def __init__(self, text: str, can_import: bool) -> None:
        super().__init__(text)
        self.text = text
        self.can_import = can_import  # whether import_objects=True would rebuild it


def rebuild(value: Any, import_objects: bool) -> Any:
    """A stored value as the object it describes. Without ``import_objects`` nothing named in the file is
    imported or called, and a description other than a Namespace or a path raises ``NotRebuilt``."""
    if isinstance(value, (list, tuple)):
        items = [rebuild(v, import_objects) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if not isinstance(value, dict):
        return value
    kind = value.get(OBJECT_KEY)
    if kind is None:
        rebuilt = {k: rebuild(v, import_objects) for k, v in value.items()}
        return AttributeDict(rebuilt) if isinstance(value, AttributeDict) else rebuilt
    if kind in ("nn.Module", "object"):
        raise NotRebuilt(f"{description_text(value)} (a {kind} is not stored in a checkpoint)", can_import=False)
    target, args, kwargs = value.get("target"), value.get("args", []), value.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"A stored hyperparameter has {OBJECT_KEY}={kind!r} with args {args!r} and kwargs "
                         f"{kwargs!r}, which are not a list and a dict: the file was not written by ember. Pass the "
                         "value as a keyword argument.")
    if kind == "instance" and target in _SAFE_TYPES:
        found = _SAFE_TYPES[target]
    elif not import_objects:
        raise NotRebuilt(str(description_text(value)),
                         can_import=kind in ("class", "function", "partial", "enum", "instance"))
    elif not isinstance(target, str):
        raise ValueError(f"A stored hyperparameter has {OBJECT_KEY}={kind!r} with target {target!r}, which is "
                         "not an import path: the file was not written by ember.")
    else:
        found = _import(target)
    if kind in ("class", "function"):
        return found
    args, kwargs = rebuild(args, import_objects), rebuild(kwargs, import_objects)
    if kind == "partial":
        return functools.partial(found, *args, **kwargs)
    if kind == "instance":
        return found(*args, **kwargs)
    if kind == "enum":
        return found[value["name"]]
    raise ValueError(f"A stored hyperparameter has {OBJECT_KEY}={kind!r}, which this version of ember does not "
                     "know: upgrade ember, or pass the value as a keyword argument.")


def _import(path: str) -> Any:
    """The object at ``"package.module.Name"``: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and module_name.startswith(e.name):
                continue  # this prefix is not a module: try a shorter one
            raise
        for attr in parts[split:]:
            if not hasattr(found, attr):
                raise ImportError(f"Cannot rebuild hyperparameter object {path!r}: module {module_name!r} has no "
                                  f"{'.'.join(parts[split:])!r}. Pass the value as a keyword argument instead.")
            found = getattr(found, attr)
        return found
    raise ImportError(f"Cannot rebuild hyperparameter object {path!r}: no module of that path can be imported. "
                      "Install or import its package, or pass the value as a keyword argument instead.")


def same(a: Any, b: Any) -> bool:
    """Whether two stored values (plain data, tensors, descriptions) are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
