"""Checkpoints: the dict (Lightning's keys), an atomic write, and a load that runs no code."""
from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ember.__about__ import __version__

# Lightning reads this key to decide how to migrate a checkpoint; naming a release whose format we
# follow lets `pytorch_lightning` load ember's `state_dict` and hyper-parameters without migration.
LIGHTNING_FORMAT_VERSION = "2.5.0"


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """Write ``obj`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A crash at any moment leaves either the previous file or the complete new one, never a partial file.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_TMP_MARK}{os.getpid()}@{_host()}.",
                                   suffix=".tmp", dir=folder)
    except OSError as e:
        raise OSError(f"Cannot write checkpoint {path}: the folder {folder} is not writable ({e}). "
                      "Choose another `dirpath`/`default_root_dir` or fix its permissions.") from e
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint gets the permissions torch.save gives
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(f"Writing checkpoint {path} failed ({e}); the previous checkpoints are untouched. "
                          "Free disk space or choose another folder.") from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the data itself is already on disk


_TMP_MARK = "ember-"  # in a temporary file's name: ".{name}.ember-{pid}@{host}.{random}.tmp"


def remove_stale_temporaries(folder: Union[str, Path]) -> list:
    """Delete the temporary files of saves that never finished (the process was killed mid-write) in ``folder``:
    those named by ``atomic_save`` on this host whose process is gone. A live writer's file, another host's,
    or any other file is left alone. Returns the removed paths."""
    removed = []
    host = _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp") and _TMP_MARK in name):
            continue
        owner = name.rsplit(_TMP_MARK, 1)[1].split(".", 1)[0]  # "{pid}@{host}"
        pid, _, owner_host = owner.partition("@")
        if not pid.isdigit() or owner_host != host or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:
            pass  # gone already, or not ours to delete
    return removed


def _host() -> str:
    return socket.gethostname().replace(".", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def load_checkpoint(path: Union[str, Path], map_location: Any = None, weights_only: Optional[bool] = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only, no code runs.

    ``weights_only=False`` (Lightning's ``trainer.fit(..., weights_only=False)``) is the caller's explicit request to
    unpickle everything, objects of their own classes included: that runs code named in the file, so only for
    files they trust. None means True.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    if map_location is None and not torch.cuda.is_available():
        map_location = "cpu"  # a checkpoint saved on a GPU still loads on a machine without one
    safe = weights_only is not False
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as e:
        if not safe:
            raise
        raise pickle.UnpicklingError(
            f"Refused to load {path}: it contains objects that need arbitrary code to unpickle, and ember loads "
            f"checkpoints with torch.load(weights_only=True) unless asked otherwise. Details: {e}\n"
            "If you wrote this file yourself and trust it, pass weights_only=False (e.g. "
            "`trainer.fit(model, ckpt_path=path, weights_only=False)`), or re-save it as plain data: "
            "`ckpt = torch.load(path, weights_only=False)`, keep its 'state_dict' and plain-data 'hyper_parameters', "
            "and `torch.save` them again."
        ) from None
    if not isinstance(checkpoint, dict):
        raise TypeError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint


def load_weights(module: Any, checkpoint: dict, path: Any, strict: bool = True, strategy: Any = None) -> None:
    """``on_load_checkpoint``, then the checkpoint's ``state_dict`` into ``module`` (through ``strategy``, which
    scatters it for a sharded model)."""
    if "state_dict" not in checkpoint:
        raise KeyError(
            f"{path} has no 'state_dict' entry (found keys: {sorted(checkpoint)}); it is not a checkpoint written "
            "by ember or PyTorch Lightning."
        )
    module.on_load_checkpoint(checkpoint)
    if strategy is not None:
        strategy.load_model_state_dict(module, checkpoint["state_dict"], strict=strict)
    else:
        module.load_state_dict(checkpoint["state_dict"], strict=strict)


def _plain_hparams(hparams: Any) -> dict:
    """Hyperparameters as data ``torch.load(weights_only=True)`` reads: plain values as they are, a class, function
    or partial as a description of plain data, an ``nn.Module`` left out (see ``ember/_hparams.py``)."""
    from ember._hparams import hparams_for_checkpoint

    return hparams_for_checkpoint(hparams)


def dump_checkpoint(trainer: Any, weights_only: bool = False) -> dict:
    """The checkpoint dict: Lightning's keys plus ember's loop progress (with RNG states)."""
    module = trainer.lightning_module
    checkpoint: dict = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "ember_version": __version__,
        "state_dict": trainer.strategy.lightning_module_state_dict(module),
        "loops": {"ember": trainer._progress.state_dict()},
    }
    results = trainer._train_results
    if results is not None and not trainer._progress.epoch_done and not weights_only:
        checkpoint["loops"]["ember_train_metrics"] = results.state_dict()  # mid-epoch: the epoch means so far
    if trainer._progress.accumulated and not weights_only:  # saved mid accumulation window: keep the partial sum
        checkpoint["loops"]["ember_accumulated_grads"] = [p.grad for p in module.parameters()]
    if not weights_only:
        checkpoint["callbacks"] = {}
        for cb in trainer.callbacks:
            state = cb.state_dict()
            if state:
                checkpoint["callbacks"][cb.state_key] = state
        checkpoint["optimizer_states"] = [trainer.strategy.optimizer_state(opt) for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [cfg.scheduler.state_dict() for cfg in trainer.lr_scheduler_configs]
        precision_state = trainer._precision.state_dict()
        if precision_state:
            checkpoint["MixedPrecision"] = precision_state
    if module.hparams:
        checkpoint["hparams_name"] = getattr(module, "_hparams_name", None) or "kwargs"
        checkpoint["hyper_parameters"] = _plain_hparams(module.hparams)
    datamodule = trainer.datamodule
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hparams_name"] = getattr(datamodule, "_hparams_name", None) or "kwargs"
            checkpoint["datamodule_hyper_parameters"] = _plain_hparams(datamodule.hparams)
        if not weights_only:
            state = datamodule.state_dict()
            if state:
                checkpoint[type(datamodule).__qualname__] = state
    if not weights_only:
        for cb in trainer.callbacks:
            cb.on_save_checkpoint(trainer, module, checkpoint)
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def restore_training_state(trainer: Any, checkpoint: dict, path: Any) -> None:
    """Load a checkpoint into the running fit: weights, callbacks, optimizers, schedulers, data, progress.

    Callbacks come before optimizers, as in Lightning: one that changed the optimizer (a finetuning callback
    adding a param group) rebuilds that in ``on_load_checkpoint`` so the optimizer's state fits.
    """
    for key in ("optimizer_states", "loops"):
        if key not in checkpoint:
            raise KeyError(
                f"Cannot resume training from {path}: it has no '{key}' entry (it was saved with "
                "save_weights_only=True, or by another tool). Load only the weights with "
                "`Model.load_from_checkpoint(path)` and start a new fit."
            )
    progress = checkpoint["loops"].get("ember")
    if progress is None:
        raise KeyError(f"Cannot resume training from {path}: its 'loops' entry was not written by ember (a "
                       "PyTorch Lightning checkpoint?). Load the weights with `Model.load_from_checkpoint(path)` "
                       "and start a new fit.")
    saved_opts = checkpoint["optimizer_states"]
    if len(saved_opts) != len(trainer.optimizers):
        raise ValueError(f"{path} holds {len(saved_opts)} optimizer states but configure_optimizers returned "
                         f"{len(trainer.optimizers)} optimizers; resume with the same configure_optimizers.")
    module = trainer.lightning_module
    load_weights(module, checkpoint, path, strategy=trainer.strategy)
    callback_states = checkpoint.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.state_key in callback_states:
            cb.load_state_dict(callback_states[cb.state_key])
        cb.on_load_checkpoint(trainer, module, checkpoint)
    for opt, state in zip(trainer.optimizers, saved_opts):
        trainer.strategy.load_optimizer_state_dict(opt, state)
    for cfg, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        cfg.scheduler.load_state_dict(state)
    trainer._precision.load_state_dict(checkpoint.get("MixedPrecision", {}))
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    trainer._progress.load_state_dict(progress)
    if trainer._progress.batch_idx:
        trainer._resumed_train_metrics = checkpoint["loops"].get("ember_train_metrics")
    grads = checkpoint["loops"].get("ember_accumulated_grads")
    if grads is not None:
        for param, grad in zip(module.parameters(), grads):
            param.grad = None if grad is None else grad.to(param.device)
