"""Fabric's checkpoints: ``fabric.save``, ``fabric.load`` and ``fabric.load_raw`` (``Fabric``'s methods call these).

Modules and optimizers are saved as their state dicts, through the strategy (which gathers or shards them under
FSDP); objects with ``state_dict()``/``load_state_dict()`` as their state; everything else as it is. Files are
written atomically and read with ``torch.load(weights_only=True)`` by the strategy's ``save_checkpoint`` /
``load_checkpoint`` (``_checkpoint_io.py``); FSDP's sharded folders by ``FSDPStrategy.save_sharded`` /
``load_sharded``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import torch

from ember.fabric.wrappers import _unwrap

if TYPE_CHECKING:
    from ember.fabric.fabric import Fabric


def save(fabric: "Fabric", path: Union[str, Path], state: Mapping[str, Any], filter: Optional[Mapping]) -> None:
    """``fabric.save``: see its docstring."""
    if fabric._sharded:
        path = fabric._strategy.broadcast(path)  # one folder for every rank, even if the ranks named it apart
    filter = dict(filter or {})
    unknown = set(filter) - set(state)
    if unknown:
        raise ValueError(f"fabric.save(filter=...) names {sorted(unknown)}, which the state does not have "
                         f"(its keys: {sorted(state)}).")
    checkpoint = {}
    for key, obj in state.items():
        value = _state_of(fabric, obj)
        if key in filter:
            if not callable(filter[key]):
                raise TypeError(f"fabric.save(filter={{{key!r}: ...}}) must map to a function (name, value) -> "
                                f"bool; got {type(filter[key]).__name__}.")
            value = {k: v for k, v in value.items() if filter[key](k, v)}
        checkpoint[key] = value
    if not fabric._sharded:
        fabric._strategy.save_checkpoint(checkpoint, path)
    elif fabric._strategy.state_dict_type == "full":
        fabric._strategy.save_full(checkpoint, path)
    else:
        shards = _sharded_keys(fabric, state)
        fabric._strategy.save_sharded({k: checkpoint[k] for k in shards},
                                      {k: v for k, v in checkpoint.items() if k not in shards}, path)
    fabric.barrier("save")


def _sharded_keys(fabric: "Fabric", state: Mapping[str, Any]) -> list:
    """The keys of ``state`` holding a sharded module, or an optimizer of one: what FSDP saves as shards."""
    from ember.strategies.fsdp import is_sharded_module

    keys = []
    for key, obj in state.items():
        obj = _unwrap(obj)
        if is_sharded_module(obj) or (isinstance(obj, torch.optim.Optimizer)
                                      and fabric._strategy.module_of(obj) is not None):
            keys.append(key)
    return keys


def _state_of(fabric: "Fabric", obj: Any) -> Any:
    obj = _unwrap(obj)
    if isinstance(obj, torch.nn.Module):
        return fabric._strategy.lightning_module_state_dict(obj)
    if isinstance(obj, torch.optim.Optimizer):
        return fabric._strategy.optimizer_state(obj)
    if _is_stateful(obj):
        return obj.state_dict()
    return obj


def load(fabric: "Fabric", path: Union[str, Path], state: Optional[dict], strict: bool,
         weights_only: Optional[bool]) -> dict:
    """``fabric.load``: see its docstring."""
    if fabric._sharded:
        from ember.strategies.fsdp import is_sharded_checkpoint

        path = fabric._strategy.broadcast(path)
        if is_sharded_checkpoint(path):
            return _load_sharded(fabric, path, state, strict, weights_only)
    checkpoint = _read(fabric, path, weights_only)
    if not state:
        fabric.barrier("load")
        return checkpoint
    return _restore_all(fabric, path, state, list(state), checkpoint, strict, "", "file")


def _load_sharded(fabric: "Fabric", path: Union[str, Path], state: Optional[dict], strict: bool,
                  weights_only: Optional[bool]) -> dict:
    """``fabric.load`` of a folder written by ``fabric.save`` under FSDP: every rank reads its own shards into
    the set-up models and optimizers of ``state``; the rest comes from ``meta.pt``."""
    if not state:
        raise ValueError(
            f"fabric.load({str(path)!r}): this is a sharded checkpoint (a folder of shards), which is read into "
            "set-up objects, not returned: pass them, `fabric.load(path, {'model': model, 'optimizer': "
            "optimizer})`. For one file readable anywhere, save with FSDPStrategy(state_dict_type='full'), or "
            "convert the folder: torch.distributed.checkpoint.format_utils.dcp_to_torch_save(folder, file).")
    shards = _sharded_keys(fabric, state)
    for key in state:
        _check_materialized(fabric, key, state[key])
    meta = fabric._strategy.load_sharded(path, {k: _unwrap(state[k]) for k in shards}, strict=strict,
                                         weights_only=weights_only)
    rest = [k for k in state if k not in shards]
    return _restore_all(fabric, path, state, rest, meta, strict, " beside the shards", "folder")


def _restore_all(fabric: "Fabric", path: Union[str, Path], state: dict, keys: list, saved: dict, strict: bool,
                 beside: str, kind: str) -> dict:
    """Restore ``keys`` of ``state`` from ``saved`` (a KeyError under ``strict`` if it lacks some); returns what
    ``saved`` holds beyond them."""
    missing = [k for k in keys if k not in saved]
    if strict and missing:
        raise KeyError(f"fabric.load({str(path)!r}): the state asks for {missing}, which the checkpoint does not "
                       f"have (its keys: {sorted(saved)}{beside}). Remove them from the state, or pass "
                       f"strict=False to restore only what the {kind} holds.")
    for key in [k for k in keys if k in saved]:
        _restore(fabric, state, key, saved.pop(key), strict)
    fabric.barrier("load")
    return saved


def _check_materialized(fabric: "Fabric", key: str, obj: Any) -> None:
    obj = _unwrap(obj)
    if isinstance(obj, torch.nn.Module) and any(t.is_meta for t in (*obj.parameters(), *obj.buffers())):
        raise RuntimeError(
            f"fabric.load: the model under {key!r} is on the meta device (created under "
            "fabric.init_module(empty_init=True)), where loading writes nothing. Set it up first, which gives it "
            "memory: `model = fabric.setup_module(model)`, then `fabric.load(path, {'model': model, ...})`.")


def load_raw(fabric: "Fabric", path: Union[str, Path], obj: Any, strict: bool,
             weights_only: Optional[bool]) -> None:
    """``fabric.load_raw``: see its docstring."""
    target = _unwrap(obj)
    if not isinstance(target, (torch.nn.Module, torch.optim.Optimizer)):
        raise TypeError(f"fabric.load_raw(path, obj) loads into a module or an optimizer; got "
                        f"{type(target).__name__}. For a checkpoint written by fabric.save use fabric.load.")
    _restore(fabric, {"raw": target}, "raw", _read(fabric, path, weights_only), strict)


def _read(fabric: "Fabric", path: Union[str, Path], weights_only: Optional[bool]) -> dict:
    from ember._checkpoint_io import other_checkpoints

    if not Path(path).exists():
        raise FileNotFoundError(f"fabric.load: no checkpoint at {path!s} (absolute: {Path(path).absolute()})"
                                f"{other_checkpoints(Path(path))}. Pass the path given to fabric.save(path, "
                                "state), or save one first.")
    if Path(path).is_dir():
        from ember.strategies.fsdp import is_sharded_checkpoint

        if is_sharded_checkpoint(path):  # under FSDP, load() read it already
            raise IsADirectoryError(
                f"fabric.load({str(path)!r}): this is a sharded FSDP checkpoint (a folder of shards), which only "
                f"a Fabric with strategy='fsdp' reads; this one runs {type(fabric._strategy).__name__}. Load it "
                "with Fabric(strategy='fsdp', ...), or convert it to one file first: "
                "torch.distributed.checkpoint.format_utils.dcp_to_torch_save(folder, 'checkpoint.pt').")
    return fabric._strategy.load_checkpoint(path, weights_only=weights_only)


def _restore(fabric: "Fabric", state: dict, key: str, saved: Any, strict: bool) -> None:
    _check_materialized(fabric, key, state[key])
    obj = _unwrap(state[key])
    if isinstance(obj, torch.nn.Module):
        fabric._strategy.load_model_state_dict(obj, saved, strict=strict)
    elif isinstance(obj, torch.optim.Optimizer):
        fabric._strategy.load_optimizer_state_dict(obj, saved)
    elif _is_stateful(obj):
        obj.load_state_dict(saved)
    else:
        state[key] = saved


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)) \
        and not isinstance(obj, type)
