"""Hyperparameters: what ``save_hyperparameters`` records, what checkpoints, ``hparams.yaml`` and loggers get of it
(``describe`` in ``_hparams_objects``), and how ``load_from_checkpoint`` turns it back into ``__init__`` arguments."""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import inspect
import pathlib
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from ember._hparams_objects import OBJECT_KEY, hparams_for_display  # noqa: F401  (imported from here by cli, loggers)
from ember._hparams_objects import SCALARS, NotRebuilt, describe, plain_key, rebuild, same, short_repr
from ember._utils import AttributeDict
from ember.utilities.rank_zero import rank_zero_warn

CLI_KEY = "_ember_cli_"  # stored hparams: the names whose value is the CLI config that built the object


# --- recording ------------------------------------------------------------------------------------------
# Set by LightningCLI around building a model or datamodule: (the class built, a function giving the plain-data
# config of its __init__ arguments, read only when an argument is an object built from a class_path).
_cli_config: contextvars.ContextVar = contextvars.ContextVar("ember_cli_config", default=None)


@contextlib.contextmanager
def cli_config_context(cls: type, config: Callable[[], Mapping]) -> Iterator[None]:
    """While ``cls`` is built, each argument built from a class path is stored as ``config()[name]``, the
    ``{"class_path", "init_args"}`` dict that built it (as Lightning stores it), and listed under ``CLI_KEY``::

        {"optimizer": {"class_path": "torch.optim.Adagrad", "init_args": {"lr": 0.01}}, "_ember_cli_": ["optimizer"]}

    ``load_from_checkpoint(import_objects=True)`` builds it again through jsonargparse; without it, it is not.
    """
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
    config: Optional[Mapping] = None
    recorded = cli_configs(hparams)
    for key, value in init_args.items():
        if key not in hparams or value is None or type(value) in SCALARS:
            continue  # plain data: stored as it is
        config = context[1]() if config is None else config
        given = describe(config.get(key))
        if has_class_path(given) and not same(describe(value), given):  # a dict typed `dict` is stored as it is
            recorded[key] = (value, given)
    _set_cli_configs(hparams, recorded)
    return set(recorded)


def cli_configs(hparams: Any) -> dict:
    """``{name: (object, config)}`` recorded by ``_record_cli_config`` on an hparams dict (empty for others)."""
    return dict(getattr(hparams, "__dict__", {}).get("_ember_cli_configs", {}))


def _set_cli_configs(hparams: AttributeDict, configs: dict) -> None:
    object.__setattr__(hparams, "_ember_cli_configs", configs)  # not an item: AttributeDict maps attributes to keys


def collect_init_args(obj: Any, frame: Any) -> dict:
    """The arguments of the ``__init__`` calls of ``obj`` on the stack from ``frame`` up: named ones and the
    contents of ``**kwargs`` (``*args`` has no names to pass back: left out, as in Lightning). The most derived
    class's ``__init__`` is outermost, so its values win."""
    collected: dict = {}
    while frame is not None:
        if frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is obj:
            args = inspect.getargvalues(frame)  # .args: positional and keyword-only names
            found = {name: args.locals[name] for name in args.args[1:] if name in args.locals}
            if args.keywords:
                found.update(args.locals.get(args.keywords) or {})
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
    ignore = {ignore} if isinstance(ignore, str) else {name for name in (ignore or ()) if isinstance(name, str)}
    init_args = collect_init_args(obj, frame)
    objects = [a for a in args if not isinstance(a, str)]
    name: Optional[str] = "kwargs"
    if len(objects) == 1:  # save_hyperparameters(config): a dict, Namespace or OmegaConf container
        source = objects[0]
        if not isinstance(source, (Mapping, argparse.Namespace)):
            raise ValueError(
                f"save_hyperparameters() got a {type(source).__name__} ({short_repr(source)}); it takes names of "
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
def hparams_for_checkpoint(hparams: Any, for_yaml: bool = False) -> dict:
    """What a checkpoint stores under ``hyper_parameters``: every value as plain data (see ``describe``), except
    an ``nn.Module`` given directly as an argument, which is left out (its weights are in the state dict); objects
    the CLI built: their config. ``for_yaml``: what ``hparams.yaml`` holds, for ``yaml.safe_dump``."""
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    return {plain_key(k, for_yaml): describe(v, for_yaml) for k, v in _with_cli_configs(hparams).items()
            if for_yaml or not isinstance(v, nn.Module)}


def hparams_for_yaml(hparams: Any) -> dict:
    return hparams_for_checkpoint(hparams, for_yaml=True)


def _with_cli_configs(hparams: Mapping) -> dict:
    """The values as given, except that an object the CLI built (and not replaced since) is its config, and
    ``CLI_KEY`` lists those: what is stored, and what loggers show (``optimizer/class_path``, as Lightning's)."""
    configs = {k: config for k, (value, config) in cli_configs(hparams).items() if k in hparams and hparams[k] is value}
    values = {k: configs.get(k, v) for k, v in hparams.items()}
    if configs:
        values[CLI_KEY] = sorted(configs)
    return values


def hparams_to_log(module: Any, datamodule: Any = None) -> dict:
    """What ``Trainer`` sends to its loggers at the start of a run, as Lightning: the module's ``hparams_initial``
    merged with the datamodule's (each unless it called ``save_hyperparameters(logger=False)``). A name in both
    with different values raises; objects the CLI built appear as their config."""
    sources = [_with_cli_configs(getattr(obj, "hparams_initial", None) or {}) for obj in (module, datamodule)
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
    return a is not b if isinstance(a, torch.Tensor) else bool(a != b)


# --- loading ---------------------------------------------------------------------------------------------
def init_kwargs(cls: type, stored: dict, from_cli: set, stored_name: Optional[str], given: dict,
                import_objects: bool) -> dict:
    """The keyword arguments that rebuild ``cls`` from a checkpoint's hyperparameters (``split_cli_configs``).

    Keyword arguments the caller gives win; a stored value is used when it can be rebuilt; otherwise the
    ``__init__`` default applies (with a warning when the file described a value that was not rebuilt), and an
    argument with neither raises an error that names it.
    """
    signature = inspect.signature(cls.__init__)
    params = [p for p in list(signature.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = {p.name for p in params}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if stored_name and stored_name != "kwargs" and stored_name in names:
        stored = {stored_name: AttributeDict(stored)}  # save_hyperparameters(config): the config is one argument
    values: dict = {}
    not_rebuilt: dict = {}
    for key, value in stored.items():
        if key in given or not (accepts_any or key in names):
            continue
        try:
            values[key] = (_rebuild_cli_config(cls, key, value, import_objects) if key in from_cli
                           else rebuild(value, import_objects))
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
    unused = sorted(k for k in not_rebuilt if not (k in defaults and same(describe(defaults[k]), stored[k])))
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
    if "_instantiator" in stored:  # it and "_class_path" are Lightning's additions, never __init__ arguments
        stored.pop("_instantiator")
        stored.pop("_class_path", None)
        return stored, {k for k, v in stored.items() if has_class_path(v)}
    if not isinstance(listed, list):
        return stored, set()
    return stored, {k for k in listed if isinstance(k, str) and k in stored}


def _config_text(config: Any) -> str:
    """A CLI config as one short line: ``torch.optim.Adagrad(lr=0.01, ...)``."""
    if isinstance(config, dict) and isinstance(config.get("class_path"), str):
        init_args = config.get("init_args")
        args = ", ".join(f"{k}={short_repr(v)}" for k, v in init_args.items()) if isinstance(init_args, dict) else ""
        return short_repr(f"{config['class_path']}({args})").strip("'")
    return str(short_repr(config))


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
                          "building it again needs jsonargparse: pip install 'jsonargparse[signatures]>=4.40.1', or "
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
    from ember._checkpoint_io import load_checkpoint

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
    stored, from_cli = split_cli_configs(stored)
    values = init_kwargs(cls, stored, from_cli, checkpoint.get(hparams_name_key), kwargs, bool(import_objects))
    configs = {k: stored[k] for k in from_cli if k in values and k not in kwargs}
    # objects built again from a CLI config are stored as the same config again
    with cli_config_context(cls, lambda: configs) if configs else contextlib.nullcontext():
        return cls(**values), checkpoint
