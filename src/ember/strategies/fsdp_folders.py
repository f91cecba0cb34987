"""FSDP's sharded checkpoint folders: every rank writes and reads its own shards with ``torch.distributed.checkpoint``;
rank 0 adds ``meta.pt`` (the rest of the checkpoint, plain data) last, and the folder gets its final name only when
complete. ``FSDPStrategy``'s ``save_sharded``/``load_sharded``/``load_checkpoint`` (``strategies/fsdp.py``) call
these for the Trainer and for Fabric alike.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

if TYPE_CHECKING:
    from ember.strategies.fsdp import FSDPStrategy

_META_FILE = "meta.pt"  # in a sharded checkpoint folder: everything but the model and optimizer tensors


class _ShardedOptimizerState:
    """Stands in for optimizer ``index``'s state in a checkpoint read from a sharded folder: it is read from the
    folder only when the Trainer restores that optimizer (validate/test read the weights alone)."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder = folder
        self.index = index

    def __repr__(self) -> str:
        return f"<optimizer {self.index} state in {self.folder}>"


def save_sharded(strategy: "FSDPStrategy", tensors: dict, meta: dict, filepath: Any) -> None:
    """Every rank writes its shards of ``tensors`` (state dicts holding DTensors) with
    ``torch.distributed.checkpoint`` into a temporary folder beside ``filepath``; rank 0 adds ``meta.pt``
    (``meta``: plain data, read with ``torch.load(weights_only=True)``) and renames the folder, so a crash
    leaves the previous checkpoint whole. Call it on every rank."""
    import torch.distributed.checkpoint as dcp
    from ember._checkpoint_io import atomic_save

    path = Path(filepath)
    if path.is_dir() and not is_sharded_checkpoint(path) and any(path.iterdir()):  # replacing it would delete it
        raise IsADirectoryError(f"Cannot write the sharded checkpoint {path}: a folder of that name exists, holds "
                                "files and is not a sharded checkpoint. Choose another path (the checkpoint "
                                "itself becomes a folder), or remove that folder.")
    tmp = path.with_name(f".{path.name}.tmp")
    if strategy.is_global_zero:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run that died while saving
        tmp.mkdir(parents=True)
    strategy.barrier()
    dcp.save(tensors, checkpoint_id=tmp)  # returns once rank 0 has written the folder's .metadata
    if strategy.is_global_zero:
        atomic_save(meta, tmp / _META_FILE)
        _replace_folder(tmp, path)
    strategy.barrier()  # no rank reads the folder before it has its final name


def load_sharded(strategy: "FSDPStrategy", path: Any, objects: dict, strict: bool,
                 weights_only: Optional[bool]) -> dict:
    """Restore ``objects`` (key -> sharded module or optimizer, the keys they were saved under) from the
    folder ``path`` written by ``save_sharded``, each rank reading its own shards in place; returns the
    folder's ``meta.pt``. ``strict=False``: keys and entries the folder lacks are left as they are."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, set_model_state_dict,
                                                         set_optimizer_state_dict)
    from ember._checkpoint_io import load_checkpoint

    path = Path(path)
    if not is_sharded_checkpoint(path):
        raise FileNotFoundError(f"{path} is a folder but not a sharded checkpoint: it has no {_META_FILE} (written "
                                "last, so a save that did not finish leaves none). Pass the folder given to "
                                "fabric.save, or a checkpoint file.")
    meta = load_checkpoint(path / _META_FILE, "cpu", weights_only=weights_only)
    saved_entries = set(FileSystemReader(path).read_metadata().state_dict_metadata)
    saved = {key.split(".", 1)[0] for key in saved_entries}
    missing = [key for key in objects if key not in saved]
    if missing and strict:
        raise KeyError(f"The sharded checkpoint {path} holds no shards for {missing} (it holds {sorted(saved)}). "
                       "Save them under these keys, or pass strict=False to restore only what the folder holds.")
    modules: dict = {}
    targets: dict = {}
    for key, obj in objects.items():
        if key in missing:
            continue
        if isinstance(obj, torch.optim.Optimizer):
            modules[key] = strategy.module_of(obj)
            if modules[key] is None:
                raise ValueError(f"Cannot restore the optimizer under {key!r} from the sharded checkpoint {path}: "
                                 "it updates no model sharded by this FSDPStrategy. Create it from the model "
                                 "that fabric.setup returned.")
            targets[key] = get_optimizer_state_dict(modules[key], obj)  # the layout to fill: this rank's shards
        else:
            targets[key] = get_model_state_dict(obj)
    if strict:  # torch's own error is a CheckpointException per rank that names one key
        absent = [name for name in _tensor_paths(targets) if name not in saved_entries]
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise KeyError(f"The sharded checkpoint {path} lacks {len(absent)} entries of the state to restore: "
                           f"{shown} (saved with a filter, or from another model?). Pass strict=False to "
                           "restore only what the folder holds and keep the rest as it is.")
    dcp.load(targets, checkpoint_id=path, planner=DefaultLoadPlanner(allow_partial_load=not strict))
    for key, state in targets.items():
        obj = objects[key]
        if isinstance(obj, torch.optim.Optimizer):
            set_optimizer_state_dict(modules[key], obj, state)
        else:
            set_model_state_dict(obj, state, options=StateDictOptions(strict=strict))
    return meta


def read_checkpoint_folder(strategy: "FSDPStrategy", path: Path) -> dict:
    """``FSDPStrategy.load_checkpoint`` of a folder: every rank reads its own shard of the model now; the
    optimizers' shards are read when they are restored (``_ShardedOptimizerState``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from ember._checkpoint_io import load_checkpoint

    if not (path / _META_FILE).is_file():
        raise FileNotFoundError(f"{path} is a folder but not a sharded checkpoint written by FSDPStrategy: it has "
                                f"no {_META_FILE}. Pass the checkpoint folder itself (e.g. 'epoch=0-step=4.ckpt').")
    checkpoint = load_checkpoint(path / _META_FILE, "cpu")
    info = checkpoint.pop("ember_sharded", {})
    if strategy.model is None:
        raise RuntimeError(f"Reading the sharded checkpoint {path} needs the model set up by FSDPStrategy; this "
                           "stage did not set it up. Load it inside trainer.fit(ckpt_path=...), or save with "
                           "FSDPStrategy(state_dict_type='full').")
    state = {"state_dict": get_model_state_dict(strategy.model)}  # this rank's shards: filled in place
    dcp.load(state, checkpoint_id=path)
    checkpoint["state_dict"] = state["state_dict"]
    if info.get("optimizers") is not None:
        checkpoint["optimizer_states"] = [_ShardedOptimizerState(path, i) for i in range(info["optimizers"])]
    return checkpoint


def read_sharded_optimizer(strategy: "FSDPStrategy", optimizer: torch.optim.Optimizer,
                           state: "_ShardedOptimizerState") -> dict:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    key = f"optimizer_{state.index}"
    target = {key: get_optimizer_state_dict(strategy.model, optimizer)}  # the layout to fill, this rank's shards
    dcp.load(target, checkpoint_id=state.folder)
    return target[key]


def _tensor_paths(data: Any, prefix: str = "") -> list:
    """The dotted path of every tensor in nested dicts and lists, as ``torch.distributed.checkpoint`` names the
    entries it saves ("model.head.weight", "optimizer.state.head.weight.exp_avg")."""
    if isinstance(data, torch.Tensor):
        return [prefix]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    return [path for key, value in items for path in _tensor_paths(value, f"{prefix}.{key}" if prefix else str(key))]


def is_sharded_checkpoint(path: Any) -> bool:
    """Whether ``path`` is a folder written by ``FSDPStrategy.save_sharded`` (``meta.pt`` is written last)."""
    path = Path(path)
    return path.is_dir() and (path / _META_FILE).is_file()


def _replace_folder(tmp: Path, path: Path) -> None:
    """Give the finished folder (or file) ``tmp`` the name ``path``, replacing what had it. A folder cannot replace
    a file, nor a file a folder, in one rename: the old one is moved aside first (so it stays whole until the new
    one has its name), then deleted."""
    old = path.with_name(f".{path.name}.old")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    elif path.is_symlink() or (path.exists() and tmp.is_dir()):
        _remove(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)

def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
