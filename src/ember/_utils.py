"""Small helpers shared across ember: moving batches, batch size, the hparams dict, rank-zero output.

What ``save_hyperparameters`` records and how checkpoints store it: ``ember/_hparams.py``."""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, Callable

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


def adapt_step(fn: Any) -> Any:
    """Lightning lets a ``*_step`` omit ``batch_idx``: call such a step with the batch alone."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return fn
    return lambda batch, batch_idx, *rest: fn(batch)
