"""Small helpers shared across ember: moving batches, batch size, hyperparameters, rank-zero output."""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch


class AttributeDict(dict):
    """A dict whose keys read as attributes: ``hparams.lr`` is ``hparams["lr"]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(f"hparams has no '{key}'; it has {sorted(self)}") from e

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def apply_to_tensors(data: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor inside lists, tuples, namedtuples, dicts and dataclasses."""
    if isinstance(data, torch.Tensor):
        return fn(data)
    if isinstance(data, Mapping):
        return type(data)({k: apply_to_tensors(v, fn) for k, v in data.items()}) if type(data) is not dict else {
            k: apply_to_tensors(v, fn) for k, v in data.items()
        }
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_tensors(v, fn) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_tensors(v, fn) for v in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dataclasses.replace(data, **{f.name: apply_to_tensors(getattr(data, f.name), fn)
                                            for f in dataclasses.fields(data) if f.init})
    return data


def move_data_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of ``batch`` to ``device`` (non-blocking from pinned memory)."""
    non_blocking = device.type == "cuda"

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=non_blocking)

    return apply_to_tensors(batch, move)


def extract_batch_size(batch: Any) -> int:
    """The size of the first dimension of the first tensor found in ``batch``."""
    if isinstance(batch, torch.Tensor):
        return 1 if batch.ndim == 0 else batch.size(0)
    if isinstance(batch, str):
        return len(batch)
    if isinstance(batch, Mapping):
        batch = batch.values()
    if isinstance(batch, (list, tuple)) or hasattr(batch, "__iter__"):
        for item in batch:
            size = extract_batch_size(item)
            if size is not None:
                return size
    return None  # type: ignore[return-value]


def is_overridden(name: str, obj: Any, base: type) -> bool:
    """Whether ``type(obj)`` defines ``name`` differently from ``base``."""
    if obj is None:
        return False
    impl = getattr(type(obj), name, None)
    default = getattr(base, name, None)
    if impl is None:
        return False
    return impl is not default


# --- hyperparameters ---------------------------------------------------------------------------

_PLAIN = (type(None), bool, int, float, str)


def _plain_data_problem(value: Any, path: str) -> Optional[str]:
    """Why ``value`` is not plain data that ``torch.load(weights_only=True)`` accepts, or None."""
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _plain_data_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, (str, int)):
                return f"{path} has a key of type {type(k).__name__}"
            problem = _plain_data_problem(item, f"{path}[{k!r}]")
            if problem:
                return problem
        return None
    if isinstance(value, (torch.Tensor, torch.dtype, torch.device)):
        return None
    return f"{path} is a {type(value).__module__}.{type(value).__qualname__}"


def to_plain(value: Any) -> Any:
    """Copy hparams into builtin containers (an AttributeDict or Namespace would not load safely)."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_plain(v) for v in value)
    return value


def collect_init_args(obj: Any, frame: Any) -> dict:
    """The arguments of the ``__init__`` calls of ``obj`` on the stack above ``frame``.

    The most derived class's ``__init__`` is outermost, so its values win.
    """
    collected: dict = {}
    while frame is not None:
        code = frame.f_code
        local_vars = frame.f_locals
        if code.co_name == "__init__" and local_vars.get("self") is obj:
            args = inspect.getargvalues(frame)
            found = {name: local_vars[name] for name in args.args[1:] if name in local_vars}
            n_kwonly = code.co_kwonlyargcount
            start = code.co_argcount
            for name in code.co_varnames[start:start + n_kwonly]:
                if name in local_vars:
                    found[name] = local_vars[name]
            if args.varargs and local_vars.get(args.varargs):
                found[args.varargs] = local_vars[args.varargs]
            if args.keywords:
                found.update(local_vars.get(args.keywords) or {})
            found.pop("__class__", None)
            collected.update(found)  # outer (more derived) frames come later and override
        frame = frame.f_back
    return collected


def save_hyperparameters(obj: Any, args: tuple, ignore: Any, frame: Any) -> None:
    """Shared by LightningModule and LightningDataModule: fill ``obj._hparams``."""
    if isinstance(ignore, str):
        ignore = [ignore]
    ignore = set(ignore or ())
    if len(args) == 1 and not isinstance(args[0], str):
        source = args[0]
        hp = dict(vars(source)) if not isinstance(source, Mapping) else dict(source)
    else:
        init_args = collect_init_args(obj, frame)
        if args:
            missing = [a for a in args if a not in init_args]
            if missing:
                raise ValueError(
                    f"save_hyperparameters({', '.join(map(repr, args))}): {missing} are not arguments of "
                    f"{type(obj).__name__}.__init__, whose arguments are {sorted(init_args)}."
                )
            hp = {a: init_args[a] for a in args}
        else:
            hp = init_args
    hp = {k: v for k, v in hp.items() if k not in ignore}
    for key, value in hp.items():
        problem = _plain_data_problem(value, key)
        if problem:
            raise ValueError(
                f"save_hyperparameters(): hyperparameter {problem}, which is not plain data "
                f"(numbers, strings, bools, None, lists, tuples, dicts, tensors). ember stores hyperparameters in "
                f"checkpoints that load with torch.load(weights_only=True), so it cannot keep this one. "
                f"Pass save_hyperparameters(ignore=[{key!r}]) and rebuild the object from plain arguments."
            )
    obj._hparams = AttributeDict(to_plain(hp))
    obj._hparams_initial = AttributeDict(to_plain(hp))


def rank_zero_warn(message: str, category: type = UserWarning, stacklevel: int = 3) -> None:
    """``ember.utilities.rank_zero.rank_zero_warn`` (warn on global rank 0 only), for ember's own modules."""
    from ember.utilities.rank_zero import rank_zero_warn as _warn

    _warn(message, category, stacklevel=stacklevel + 1)  # one frame more: this function
