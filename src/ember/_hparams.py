"""Hyperparameters: what ``save_hyperparameters`` records, how a checkpoint or ``hparams.yaml`` stores it, and how
``load_from_checkpoint`` turns it back into ``__init__`` arguments.

In memory ``self.hparams`` holds every value exactly as given (an ``nn.Module``, a class, a ``functools.partial``).
A checkpoint must load with ``torch.load(weights_only=True)``, so it stores plain data as it is and, for the rest,
a *description*: a dict of plain data marked with the key ``"_ember_object_"``::

    {"_ember_object_": "partial", "target": "torch.optim.adam.Adam", "kwargs": {"lr": 0.001}}
    {"_ember_object_": "class", "target": "mypackage.models.Encoder"}
    {"_ember_object_": "function", "target": "torch.nn.functional.silu"}
    {"_ember_object_": "enum", "target": "mypackage.Mode", "name": "FAST"}
    {"_ember_object_": "instance", "target": "mypackage.Config", "kwargs": {"depth": 2}}   # a dataclass
    {"_ember_object_": "instance", "target": "pathlib.Path", "args": ["data/"]}
    {"_ember_object_": "nn.Module", "type": "mypackage.Net"}   # hparams.yaml only: a checkpoint leaves it out
    {"_ember_object_": "object", "type": "builtins.function", "repr": "<function <lambda> at 0x...>"}

(``args``/``kwargs`` are left out when empty.) The target is the object's ``__module__`` and ``__qualname__``,
checked to lead back to it, so a lambda or a function defined inside another becomes an ``object``.

Loading turns descriptions back into objects only when the caller asks (``import_objects=True``): a
checkpoint never makes ember import or call what it names. ``argparse.Namespace`` and ``pathlib`` paths are
plain values of known types and are always rebuilt.

An object that ``LightningCLI`` built from a ``class_path`` (an ``OptimizerCallable``, a network given by class
path) is stored as the config that built it, as Lightning stores it, plus the list of such names under
``"_ember_cli_"``::

    {"optimizer": {"class_path": "torch.optim.Adagrad", "init_args": {"lr": 0.01}}, "_ember_cli_": ["optimizer"]}

``load_from_checkpoint(import_objects=True)`` rebuilds those through jsonargparse, typed by the ``__init__``
signature, as the CLI built them; without it they are not imported (default, or an error naming the argument).
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import enum
import functools
import importlib
import inspect
import pathlib
import reprlib
import sys
from collections.abc import Mapping, MutableSequence
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from ember._utils import AttributeDict, rank_zero_warn

OBJECT_KEY = "_ember_object_"
CLI_KEY = "_ember_cli_"  # stored hparams: the names whose value is the CLI config that built the object
# what Lightning's LightningCLI adds to a model's stored hparams (never __init__ arguments)
_LIGHTNING_INSTANTIATOR, _LIGHTNING_CLASS_PATH = "_instantiator", "_class_path"

# Types ember rebuilds from a description without importing anything the file names: plain data holders.
_SAFE_TYPES: dict[str, type] = {
    "argparse.Namespace": argparse.Namespace,
    "pathlib.Path": pathlib.Path,
    "pathlib.PurePath": pathlib.PurePath,
    "pathlib.PurePosixPath": pathlib.PurePosixPath,
    "pathlib.PureWindowsPath": pathlib.PureWindowsPath,
}
_SCALARS = (bool, int, float, complex, str, bytes)
_repr = reprlib.Repr()
_repr.maxother = _repr.maxstring = 200


# --- recording ------------------------------------------------------------------------------------------
# Set by LightningCLI around building a model or datamodule: (the class built, a function giving the plain-data
# config of its __init__ arguments, read only when an argument is an object built from a class_path).
_cli_config: contextvars.ContextVar = contextvars.ContextVar("ember_cli_config", default=None)


@contextlib.contextmanager
def cli_config_context(cls: type, config: Callable[[], Mapping]) -> Iterator[None]:
    """While ``cls`` is built, ``save_hyperparameters`` records ``config()[name]`` (plain data: the
    ``{"class_path", "init_args"}`` dicts of a parsed config) as what to store for each argument that was built
    from a class path, instead of describing the object."""
    token = _cli_config.set((cls, config))
    try:
        yield
    finally:
        _cli_config.reset(token)


def has_class_path(value: Any) -> bool:
    """Whether a plain-data value is, or holds, a ``{"class_path": ...}`` dict (something a CLI builds)."""
    if isinstance(value, dict):
        return "class_path" in value or any(has_class_path(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_class_path(v) for v in value)
    return False


def _record_cli_config(obj: Any, hparams: AttributeDict, init_args: dict) -> set:
    """Under ``cli_config_context`` for ``type(obj)``: remember, for each argument the CLI built from a class path,
    the object received and its config. Returns the names recorded."""
    context = _cli_config.get()
    if context is None or type(obj) is not context[0]:
        return set()
    found = {k: v for k, v in init_args.items() if k in hparams}
    config: Optional[Mapping] = None
    recorded = cli_configs(hparams)
    for key, value in found.items():
        if value is None or type(value) in _SCALARS:
            continue  # plain data: stored as it is
        if config is None:
            config = context[1]()
        given = describe(config.get(key))
        if has_class_path(given) and not _same(describe(value), given):  # a dict typed `dict` is stored as it is
            recorded[key] = (value, given)
    _set_cli_configs(hparams, recorded)
    return set(recorded)


def cli_configs(hparams: Any) -> dict:
    """``{name: (object, config)}`` recorded by ``_record_cli_config`` on an hparams dict (empty for others)."""
    return dict(getattr(hparams, "__dict__", {}).get("_ember_cli_configs", {}))


def _set_cli_configs(hparams: AttributeDict, configs: dict) -> None:
    object.__setattr__(hparams, "_ember_cli_configs", configs)  # not an item: AttributeDict maps attributes to keys


def _current_cli_configs(hparams: Mapping) -> dict:
    """``{name: config}`` for the names whose value is still the object the CLI built (a value the user replaced
    is stored as itself)."""
    return {k: config for k, (value, config) in cli_configs(hparams).items() if k in hparams and hparams[k] is value}


def collect_init_args(obj: Any, frame: Any) -> dict:
    """The arguments of the ``__init__`` calls of ``obj`` on the stack from ``frame`` up: named ones and the
    contents of ``**kwargs``; ``*args`` is left out, as in Lightning (it has no names to pass back).

    The most derived class's ``__init__`` is outermost, so its values win.
    """
    collected: dict = {}
    while frame is not None:
        code = frame.f_code
        local_vars = frame.f_locals
        if code.co_name == "__init__" and local_vars.get("self") is obj:
            args = inspect.getargvalues(frame)
            found = {name: local_vars[name] for name in args.args[1:] if name in local_vars}
            start = code.co_argcount
            for name in code.co_varnames[start:start + code.co_kwonlyargcount]:
                if name in local_vars:
                    found[name] = local_vars[name]
            if args.keywords:
                found.update(local_vars.get(args.keywords) or {})
            found.pop("__class__", None)
            collected.update(found)  # outer (more derived) frames come later and override
        frame = frame.f_back
    return collected


def save_hyperparameters(obj: Any, args: tuple, ignore: Any, frame: Any) -> None:
    """Shared by LightningModule, LightningDataModule and HyperparametersMixin: fill ``obj._hparams``.

    Values are kept as given (the same objects). A second call adds to what the first recorded, and names in
    ``ignore`` are removed, so a subclass can drop what its base class saved.
    """
    if len(args) == 1 and not isinstance(args[0], str) and not args[0]:
        return  # an empty dict or Namespace: nothing to record
    if isinstance(ignore, str):
        ignore = [ignore]
    ignore = {name for name in (ignore or ()) if isinstance(name, str)}
    init_args = collect_init_args(obj, frame)
    objects = [a for a in args if not isinstance(a, str)]
    name: Optional[str] = "kwargs"
    if len(objects) == 1:  # save_hyperparameters(config): a dict, Namespace or OmegaConf container
        source = objects[0]
        if not isinstance(source, (Mapping, argparse.Namespace)):
            raise ValueError(
                f"save_hyperparameters() got a {type(source).__name__} ({_repr.repr(source)}); it takes names of "
                "__init__ arguments, or one dict, argparse.Namespace or OmegaConf config to record instead. Pass "
                "`dataclasses.asdict(config)` for a dataclass."
            )
        hp = dict(vars(source)) if isinstance(source, argparse.Namespace) else dict(source)
        # When the config is one __init__ argument, load_from_checkpoint passes it back under that name.
        name = next((k for k, v in init_args.items() if v is source), None)
    elif args:
        missing = [a for a in args if isinstance(a, str) and a not in init_args]
        if missing:
            raise ValueError(
                f"save_hyperparameters({', '.join(map(repr, args))}): {missing} are not arguments of "
                f"{type(obj).__name__}.__init__, whose arguments are {sorted(init_args)}. Name arguments of "
                "__init__, or pass a dict."
            )
        hp = {a: init_args[a] for a in args if isinstance(a, str)}
    else:
        hp = init_args
    hparams = getattr(obj, "_hparams", None)
    if not isinstance(hparams, AttributeDict):
        hparams = obj._hparams = AttributeDict()
    hparams.update((k, v) for k, v in hp.items() if k not in ignore)
    for key in ignore:
        hparams.pop(key, None)
    obj._hparams_name = name if hparams else None
    from_cli = _record_cli_config(obj, hparams, init_args) if name == "kwargs" else set()
    for key, value in hparams.items():
        if isinstance(value, nn.Module) and key not in from_cli:  # Lightning's message, word for word
            rank_zero_warn(
                f"Attribute {key!r} is an instance of `nn.Module` and is already saved during checkpointing. "
                f"It is recommended to ignore them using `self.save_hyperparameters(ignore=[{key!r}])`.",
                stacklevel=4,
            )
    obj._hparams_initial = snapshot(hparams)


def snapshot(hparams: Mapping) -> AttributeDict:
    """A copy for ``hparams_initial``: containers are copied, so later edits of ``hparams`` do not show; every
    other value is the same object (a module or a data set is not duplicated)."""
    def copy(value: Any) -> Any:
        if type(value) in (dict, AttributeDict):
            return type(value)((k, copy(v)) for k, v in value.items())
        if type(value) in (list, tuple, set):
            return type(value)(copy(v) for v in value)
        return value

    copied = AttributeDict(copy(dict(hparams)))
    _set_cli_configs(copied, cli_configs(hparams))
    return copied


# --- storing: checkpoints, hparams.yaml, loggers -----------------------------------------------------------
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
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _object(value: Any) -> dict:
    """The description of something ember cannot rebuild: its type and a short repr."""
    return {OBJECT_KEY: "object", "type": _type_path(value), "repr": _repr.repr(value)}


def describe(value: Any, for_yaml: bool = False) -> Any:
    """``value`` as plain data: itself when ``torch.load(weights_only=True)`` reads it, else a description.

    ``for_yaml``: what ``yaml.safe_dump`` writes instead: tensors as lists, dtypes and devices as text, tuples
    and sets as lists, every key as a scalar.
    """
    if value is None or type(value) in _SCALARS:
        return str(value) if for_yaml and type(value) is complex else value
    if isinstance(value, enum.Enum):
        path = import_path(type(value))
        return {OBJECT_KEY: "enum", "target": path, "name": value.name} if path else _object(value)
    if isinstance(value, _SCALARS):  # a subclass of int, str... (numpy.float64): its plain value
        return describe(next(t for t in _SCALARS if isinstance(value, t))(value), for_yaml)
    if isinstance(value, torch.Tensor):
        return value.tolist() if for_yaml else value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value) if for_yaml else value
    if isinstance(value, nn.Module):
        return {OBJECT_KEY: "nn.Module", "type": _type_path(value)}
    if isinstance(value, Mapping):
        return {_key(k, for_yaml): describe(v, for_yaml) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return _instance(value, type(value), [], value._asdict(), for_yaml)
    if isinstance(value, torch.Size):
        return list(value) if for_yaml else value
    if isinstance(value, (list, tuple, MutableSequence)):  # MutableSequence: an OmegaConf ListConfig
        items = [describe(v, for_yaml) for v in value]
        return tuple(items) if isinstance(value, tuple) and not for_yaml else items
    if isinstance(value, (set, frozenset)):
        items = [describe(v, for_yaml) for v in value]
        if for_yaml or any(isinstance(v, (dict, list)) for v in items):
            return items
        return set(items)
    if isinstance(value, argparse.Namespace):
        return _instance(value, argparse.Namespace, [], vars(value), for_yaml, path="argparse.Namespace")
    if isinstance(value, pathlib.PurePath):
        return _instance(value, type(value), [str(value)], {}, for_yaml, path=_safe_path_type(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        return _instance(value, type(value), [], fields, for_yaml)
    if isinstance(value, functools.partial):
        value = _unwrap_jsonargparse(value)
        path = import_path(value.func)
        if path is None:
            return _object(value)
        return _call("partial", path, value.args, value.keywords, for_yaml)
    if inspect.isclass(value) or inspect.isroutine(value):
        path = import_path(value)
        if path is None:
            return _object(value)
        return {OBJECT_KEY: "class" if inspect.isclass(value) else "function", "target": path}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return _object(value)


def _unwrap_jsonargparse(value: functools.partial) -> functools.partial:
    """jsonargparse's callable for a ``class_path`` (``partial(call_without_instantiate_context, instantiator,
    cls, **init_args)``) as ``partial(cls, **init_args)``, what it calls."""
    func_module = getattr(value.func, "__module__", None) or ""
    if func_module.startswith("jsonargparse") and value.args and inspect.isclass(value.args[-1]):
        return functools.partial(value.args[-1], **value.keywords)
    return value


def _key(key: Any, for_yaml: bool) -> Any:
    """A dict key as plain data: a scalar (or, in a checkpoint, a tuple of them) as it is, else its text."""
    if key is None or type(key) in _SCALARS:
        return key if not (for_yaml and isinstance(key, (complex, bytes))) else str(key)
    if not for_yaml and type(key) is tuple and all(k is None or type(k) in _SCALARS for k in key):
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


def _instance(value: Any, cls: type, args: list, kwargs: Mapping, for_yaml: bool,
              path: Optional[str] = None) -> Any:
    path = path or import_path(cls)
    if path is None:
        return _object(value)
    return _call("instance", path, args, kwargs, for_yaml)


def _call(kind: str, target: str, args: Any, kwargs: Mapping, for_yaml: bool) -> dict:
    """A description of ``target(*args, **kwargs)``; empty ``args``/``kwargs`` are left out (easier to read)."""
    desc: dict = {OBJECT_KEY: kind, "target": target}
    if args:
        desc["args"] = [describe(a, for_yaml) for a in args]
    if kwargs:
        desc["kwargs"] = {k: describe(v, for_yaml) for k, v in kwargs.items()}
    return desc


def hparams_for_checkpoint(hparams: Mapping) -> dict:
    """What a checkpoint stores under ``hyper_parameters``: every value as plain data (see ``describe``), except
    an ``nn.Module`` given directly as an argument, which is left out (its weights are in the state dict). An
    object the CLI built from a class path is stored as its config, and its name listed under ``CLI_KEY``."""
    return _stored(hparams, for_yaml=False)


def hparams_for_yaml(hparams: Any) -> dict:
    """What ``hparams.yaml`` holds: ``describe(..., for_yaml=True)`` of every value, for ``yaml.safe_dump``
    (objects the CLI built: their config, as in the checkpoint)."""
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    return _stored(hparams, for_yaml=True)


def _stored(hparams: Mapping, for_yaml: bool) -> dict:
    configs = _current_cli_configs(hparams)
    stored = {}
    for key, value in hparams.items():
        if key in configs:
            stored[_key(key, for_yaml)] = describe(configs[key], for_yaml)
        elif for_yaml or not isinstance(value, nn.Module):
            stored[_key(key, for_yaml)] = describe(value, for_yaml)
    if configs:
        stored[CLI_KEY] = sorted(configs)
    return stored


def hparams_with_cli_configs(hparams: Mapping) -> dict:
    """The values as given, except that an object the CLI built is its config (and ``CLI_KEY`` lists those):
    what the loggers receive, so that they show ``optimizer/class_path`` as Lightning's do."""
    configs = _current_cli_configs(hparams)
    values = {k: configs.get(k, v) for k, v in hparams.items()}
    if configs:
        values[CLI_KEY] = sorted(configs)
    return values


def hparams_to_log(module: Any, datamodule: Any = None) -> dict:
    """What ``Trainer`` sends to its loggers at the start of a run, as Lightning: the module's ``hparams_initial``
    merged with the datamodule's (each unless it called ``save_hyperparameters(logger=False)``). A name in both
    with different values raises; objects the CLI built appear as their config.

    >>> hparams_to_log(model, datamodule)                    # doctest: +SKIP
    {'lr': 0.01, 'batch_size': 32}
    """
    sources = [hparams_with_cli_configs(getattr(obj, "hparams_initial", None) or {}) for obj in (module, datamodule)
               if obj is not None and getattr(obj, "_log_hyperparams", True)]
    cli_names = sorted({name for source in sources for name in source.pop(CLI_KEY, [])})
    if len(sources) == 2:
        clashing = [k for k in sources[0] if k in sources[1] and _differ(sources[0][k], sources[1][k])]
        if clashing:  # Lightning's words, then what to do
            raise RuntimeError(
                f"Error while merging hparams: the keys {clashing} are present in both the LightningModule's and "
                "LightningDataModule's hparams but have different values. Rename one of them, leave it out with "
                "`save_hyperparameters(ignore=[...])`, or call `save_hyperparameters(logger=False)` in one of them.")
    merged = {k: v for source in sources for k, v in source.items()}
    if cli_names:
        merged[CLI_KEY] = cli_names
    return merged


def _differ(a: Any, b: Any) -> bool:
    """Lightning's test for one name in both: another type, another tensor object, or ``!=``."""
    if type(a) is not type(b):
        return True
    if isinstance(a, torch.Tensor):
        return a is not b
    return bool(a != b)


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
    if params is None or type(params) in _SCALARS or isinstance(params, torch.Tensor):
        return params
    if isinstance(params, (list, tuple)) and not hasattr(params, "_fields"):
        return [hparams_for_display(v) for v in params]
    if isinstance(params, enum.Enum):
        return str(params)
    if isinstance(params, pathlib.PurePath):
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


# --- loading ---------------------------------------------------------------------------------------------
class NotRebuilt(Exception):
    """A stored value that stays a description: ``text`` says what it was."""

    def __init__(self, text: str, can_import: bool) -> None:
        super().__init__(text)
        self.text = text
        self.can_import = can_import  # whether import_objects=True would rebuild it


def rebuild(value: Any, import_objects: bool) -> Any:
    """A stored value as the object it describes. Without ``import_objects`` nothing named in the file is
    imported or called, and a description other than a Namespace or a path raises ``NotRebuilt``."""
    if isinstance(value, list):
        return [rebuild(v, import_objects) for v in value]
    if isinstance(value, tuple):
        return tuple(rebuild(v, import_objects) for v in value)
    if not isinstance(value, dict):
        return value
    kind = value.get(OBJECT_KEY)
    if kind is None:
        rebuilt = {k: rebuild(v, import_objects) for k, v in value.items()}
        return AttributeDict(rebuilt) if isinstance(value, AttributeDict) else rebuilt
    if kind in ("nn.Module", "object"):
        raise NotRebuilt(f"{description_text(value)} (a {kind} is not stored in a checkpoint)", can_import=False)
    target = value.get("target")
    if not isinstance(value.get("args", []), list) or not isinstance(value.get("kwargs", {}), dict):
        raise ValueError(f"A stored hyperparameter has {OBJECT_KEY}={kind!r} with args {value.get('args', [])!r} "
                         f"and kwargs {value.get('kwargs', {})!r}, which are not a list and a dict: the file was not "
                         "written by ember. Pass the value as a keyword argument.")
    if kind == "instance" and target in _SAFE_TYPES:
        return _SAFE_TYPES[target](*rebuild(value.get("args", []), import_objects),
                                   **rebuild(value.get("kwargs", {}), import_objects))
    if not import_objects:
        raise NotRebuilt(str(description_text(value)), can_import=kind in ("class", "function", "partial", "enum",
                                                                            "instance"))
    if not isinstance(target, str):
        raise ValueError(f"A stored hyperparameter has {OBJECT_KEY}={kind!r} with target {target!r}, which is "
                         "not an import path: the file was not written by ember.")
    found = _import(target)
    if kind in ("class", "function"):
        return found
    args = rebuild(value.get("args", []), import_objects)
    kwargs = rebuild(value.get("kwargs", {}), import_objects)
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


def init_kwargs(cls: type, stored: Mapping, stored_name: Optional[str], given: dict, import_objects: bool) -> dict:
    """The keyword arguments that rebuild ``cls`` from a checkpoint's hyperparameters.

    Keyword arguments the caller gives win; a stored value is used when it can be rebuilt; otherwise the
    ``__init__`` default applies (with a warning when the file described a value that was not rebuilt), and an
    argument with neither raises an error that names it.
    """
    signature = inspect.signature(cls.__init__)
    params = [p for p in list(signature.parameters.values())[1:]
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = {p.name for p in params}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    stored, from_cli = split_cli_configs(stored)
    if stored_name and stored_name != "kwargs" and stored_name in names:
        stored = {stored_name: AttributeDict(stored)}  # save_hyperparameters(config): the config is one argument
    values: dict = {}
    not_rebuilt: dict = {}
    for key, value in stored.items():
        if key in given or not (accepts_any or key in names):
            continue
        try:
            if key in from_cli:
                values[key] = _rebuild_cli_config(cls, key, value, import_objects)
            else:
                values[key] = rebuild(value, import_objects)
        except NotRebuilt as e:
            not_rebuilt[key] = e
    unknown = sorted(k for k in given if not (accepts_any or k in names))
    if unknown:
        rank_zero_warn(f"{cls.__name__}.load_from_checkpoint got {', '.join(map(repr, unknown))}, which "
                       f"{cls.__name__}.__init__ does not take; ignored, as in Lightning. Its arguments are "
                       f"{sorted(names)}.", stacklevel=5)
    values.update((k, v) for k, v in given.items() if k not in unknown)
    missing = [p.name for p in params if p.name not in values and p.default is p.empty]
    if missing:
        raise TypeError(_missing_message(cls, missing, not_rebuilt))
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    # A described value whose default is the same thing (``encoder_class=Encoder`` left as it was) needs no word.
    unused = sorted(k for k in not_rebuilt if not (k in defaults and _same(describe(defaults[k]), stored[k])))
    if unused:
        rank_zero_warn(
            f"{cls.__name__}.load_from_checkpoint: the checkpoint stores {', '.join(map(repr, unused))} only as a "
            f"description ({'; '.join(f'{k}: {not_rebuilt[k].text}' for k in unused)}), so it is not passed to "
            f"{cls.__name__}.__init__ and the default applies. Pass the value as a keyword argument"
            + (", or `import_objects=True` to rebuild it from a file you trust." if any(
                not_rebuilt[k].can_import for k in unused) else "."),
            stacklevel=5,  # the caller of Model.load_from_checkpoint
        )
    return values


def split_cli_configs(stored: Mapping) -> tuple[dict, set]:
    """Stored hyperparameters without the CLI's bookkeeping keys, and the names whose value is a CLI config to
    build: those listed under ``CLI_KEY`` (ember), or, in a checkpoint of Lightning's LightningCLI (it has
    ``_instantiator``), every value holding a ``class_path``."""
    stored = dict(stored)
    listed = stored.pop(CLI_KEY, None)
    if _LIGHTNING_INSTANTIATOR in stored:
        stored.pop(_LIGHTNING_INSTANTIATOR)
        stored.pop(_LIGHTNING_CLASS_PATH, None)
        return stored, {k for k, v in stored.items() if has_class_path(v)}
    if not isinstance(listed, list):
        return stored, set()
    return stored, {k for k in listed if isinstance(k, str) and k in stored}


def _config_text(config: Any) -> str:
    """A CLI config as one short line: ``torch.optim.Adagrad(lr=0.01, ...)``."""
    if isinstance(config, dict) and isinstance(config.get("class_path"), str):
        init_args = config.get("init_args")
        args = ", ".join(f"{k}={_repr.repr(v)}" for k, v in init_args.items()) if isinstance(init_args, dict) else ""
        return _repr.repr(f"{config['class_path']}({args})").strip("'")
    return str(_repr.repr(config))


def _rebuild_cli_config(cls: type, key: str, config: Any, import_objects: bool) -> Any:
    """The object ``LightningCLI`` built for ``cls.__init__``'s argument ``key`` from ``config``, built again by
    jsonargparse from the argument's type hint, as the CLI does; only with ``import_objects``."""
    text = f"the command line's config {_config_text(config)}"
    if not import_objects:
        raise NotRebuilt(text, can_import=True)
    try:
        import jsonargparse
    except ImportError as e:
        raise ImportError(f"{cls.__name__}.load_from_checkpoint: {key!r} was built by LightningCLI from {text}; "
                          "building it again needs jsonargparse: pip install 'jsonargparse[signatures]>=4.27', or "
                          f"pass {key}=... as a keyword argument.") from e
    others = set(list(inspect.signature(cls.__init__).parameters)[1:]) - {key}
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "init", fail_untyped=False, instantiate=False, skip=others)
    try:
        parsed = parser.parse_object({"init": {key: config}})
    except jsonargparse.ArgumentError as e:
        raise ValueError(f"{cls.__name__}.load_from_checkpoint: {key!r} was built by LightningCLI from {text}, "
                         f"which does not fit {cls.__name__}.__init__ now: {e}. Pass {key}=... as a keyword "
                         "argument.") from e
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # jsonargparse 4.49 rename
    return instantiate(parsed).init[key]


def _same(a: Any, b: Any) -> bool:
    """Whether two stored values (plain data, tensors, descriptions) are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _missing_message(cls: type, missing: list, not_rebuilt: dict) -> str:
    name = cls.__name__
    quoted = " and ".join(map(repr, missing)) if len(missing) < 3 else ", ".join(map(repr, missing))
    lines = [f"{name}.load_from_checkpoint cannot build {name}: __init__ needs {quoted}, which "
             f"{'has' if len(missing) == 1 else 'have'} no default."]
    absent = [k for k in missing if k not in not_rebuilt]
    if absent:
        lines.append(f"{', '.join(map(repr, absent))}: no value in the checkpoint (an nn.Module given to __init__ "
                     "is never stored, its weights are in the state dict; nor is an argument in "
                     "`save_hyperparameters(ignore=...)`).")
    for key in missing:
        if key in not_rebuilt:
            reason = not_rebuilt[key]
            how = (": ember does not import or call what a checkpoint names unless you pass `import_objects=True`"
                   " (only for a file you trust)" if reason.can_import else ", which cannot be rebuilt")
            lines.append(f"{key!r}: stored only as a description, {reason.text}{how}.")
    example = ", ".join(f"{k}=..." for k in missing)
    lines.append(f"Pass {'it as a keyword argument' if len(missing) == 1 else 'them as keyword arguments'}: "
                 f"`{name}.load_from_checkpoint(path, {example})`.")
    return " ".join(lines)


def read_hparams_file(path: Any) -> dict:
    """The hyperparameters in a ``hparams.yaml`` (read with ``yaml.safe_load``: plain data only) or, as Lightning
    also reads, a ``key,value`` CSV file (values read with ``ast.literal_eval``, else kept as text)."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".csv":
        import ast
        import csv

        def value(text: str) -> Any:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text

        with open(path, newline="") as f:
            return {row[0]: value(row[1]) for row in list(csv.reader(f))[1:] if len(row) >= 2}
    if suffix not in (".yaml", ".yml"):
        raise ValueError(f"hparams_file={str(path)!r}: use a .yaml or .yml file (as the hparams.yaml a logger "
                         "writes), or a key,value .csv file.")
    return read_hparams_yaml(path, f"hparams_file={str(path)!r}")


def read_hparams_yaml(path: Any, what: str) -> dict:
    """The mapping in a YAML file (``yaml.safe_load``: runs no code); ``{}`` for an empty file. ``what`` names the
    file in the error when it holds something else."""
    import yaml

    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} holds a {type(loaded).__name__}, not a mapping of hyperparameter names to values "
                         "(as the hparams.yaml a logger writes).")
    return loaded


def load_from_checkpoint(cls: type, checkpoint_path: Any, map_location: Any, hparams_file: Any,
                         weights_only: Optional[bool], import_objects: Optional[bool], kwargs: dict,
                         hparams_key: str, hparams_name_key: str) -> tuple[Any, dict]:
    """Read the checkpoint and build ``cls`` from its hyperparameters; returns the object and the checkpoint.

    ``weights_only`` None or True: ``torch.load(weights_only=True)``. False: the caller trusts the file and it
    is unpickled fully (and descriptions are rebuilt unless ``import_objects=False``).
    """
    from ember.trainer.checkpoint import load_checkpoint

    if weights_only is not None and not isinstance(weights_only, bool):
        raise ValueError(f"load_from_checkpoint(weights_only={weights_only!r}): use None or True (read with "
                         "torch.load(weights_only=True)) or False (unpickle the whole file: only for files you trust).")
    if import_objects is not None and not isinstance(import_objects, bool):
        raise ValueError(f"load_from_checkpoint(import_objects={import_objects!r}): use True or False.")
    checkpoint = load_checkpoint(checkpoint_path, map_location=map_location, weights_only=weights_only)
    if weights_only is False and import_objects is None:
        import_objects = True  # the caller trusts the file with more than imports already
    stored = checkpoint.get(hparams_key) or {}
    if hparams_file is not None:
        stored = read_hparams_file(hparams_file)  # replaces the checkpoint's, as in Lightning
    values = init_kwargs(cls, stored, checkpoint.get(hparams_name_key), kwargs, bool(import_objects))
    stored_plain, from_cli = split_cli_configs(stored)
    configs = {k: stored_plain[k] for k in from_cli if k in values and k not in kwargs}
    if not configs:
        return cls(**values), checkpoint
    with cli_config_context(cls, lambda: configs):  # the rebuilt objects are stored as the same config again
        return cls(**values), checkpoint
