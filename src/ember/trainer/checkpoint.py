"""Checkpoints: the dict (Lightning's keys), an atomic write, and a load that runs no code."""
from __future__ import annotations

import errno
import math
import os
import pickle
import socket
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ember.__about__ import __version__
from ember._io import new_temp_file

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
        fd, tmp = new_temp_file(folder, f".{path.name}.{_TMP_MARK}{os.getpid()}@{_host()}.")  # 0o666 less umask
    except OSError as e:
        raise OSError(f"Cannot write checkpoint {path}: the folder {folder} is not writable ({e}). "
                      "Choose another `dirpath`/`default_root_dir` or fix its permissions.") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _written_here[os.path.abspath(path)] = file_identity(path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = _os_error_in(e)
        if cause is not None or _is_writer_error(e):
            # torch's zip writer reports a failed write (full disk, quota, I/O error) as a RuntimeError
            # "[enforce fail at inline_container.cc] unexpected pos"; the OSError it hit is its context
            reason = cause if cause is not None else f"torch's writer failed: {e}"
            message = (f"Writing checkpoint {path} failed ({reason}); the previous checkpoints are untouched. "
                       "Free disk space or choose another folder.")
            raise (OSError(cause.errno, message) if cause is not None and cause.errno else OSError(message)) from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the data itself is already on disk


_written_here: dict = {}  # absolute path -> file_identity() right after this process wrote it


def file_identity(path: Union[str, Path]) -> Optional[tuple]:
    """What changes when a process writes ``path`` (a rename over it gives a new inode); None if absent.
    ``lstat``: a ``last.ckpt`` symlink is itself the file that was written."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def written_here(path: Union[str, Path]) -> bool:
    """Whether ``path`` is, unchanged, a file this process wrote (with ``atomic_save``, or recorded by
    ``note_written``): a checkpoint of this run, not of another run saving into the same folder."""
    known = _written_here.get(os.path.abspath(path))
    return known is not None and known == file_identity(path)


def note_written(path: Union[str, Path]) -> None:
    """Record ``path`` (just written by this process some other way, e.g. a symlink) as this run's."""
    _written_here[os.path.abspath(path)] = file_identity(path)


def _os_error_in(error: BaseException) -> Optional[OSError]:
    """``error`` itself or the first OSError it was raised from or while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _is_writer_error(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and ("inline_container" in str(error) or "PytorchStreamWriter" in str(error))


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

    A missing path, a folder, and a file that is not a complete checkpoint (truncated, empty, random bytes) raise
    an error that names the file and the other checkpoints beside it.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"Checkpoint {path} is a folder, not a checkpoint file. Pass the path of "
                                f"a .ckpt file{_other_checkpoints(path / '_') or _other_checkpoints(path)}.")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"Checkpoint file not found: {path}{_other_checkpoints(path)}.")
    if map_location is None and not torch.cuda.is_available():
        map_location = "cpu"  # a checkpoint saved on a GPU still loads on a machine without one
    safe = weights_only is not False
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as e:
        if safe and "Unsupported global" in str(e):  # a class or function named in the file: refused, never run
            raise pickle.UnpicklingError(
                f"Refused to load {path}: it contains objects that need arbitrary code to unpickle, and ember loads "
                f"checkpoints with torch.load(weights_only=True) unless asked otherwise. Details: {e}\n"
                "If you wrote this file yourself and trust it, pass weights_only=False (e.g. "
                "`trainer.fit(model, ckpt_path=path, weights_only=False)`), or re-save it as plain data: "
                "`ckpt = torch.load(path, weights_only=False)`, keep its 'state_dict' and plain-data "
                "'hyper_parameters', and `torch.save` them again."
            ) from None
        raise _corrupt(path, e) from e
    except (PermissionError, MemoryError):
        raise  # the file may be fine: the message names it (PermissionError) or the cause
    except Exception as e:  # a truncated zip (OSError EINVAL), an empty file (EOFError), garbled records...
        if not safe and not isinstance(e, (EOFError, OSError, RuntimeError, UnicodeDecodeError)):
            raise  # an unpickled object of the user's own raised it
        raise _corrupt(path, e) from e
    if not isinstance(checkpoint, dict):
        raise TypeError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint


def _corrupt(path: Path, error: BaseException) -> RuntimeError:
    size = path.stat().st_size
    what = "is empty (0 bytes)" if size == 0 else f"is incomplete or corrupt ({size} bytes)"
    return RuntimeError(
        f"Checkpoint {path} {what}: torch.load could not read it ({type(error).__name__}: {_gist(error)}). "
        "It was cut short (a copy or download that did not finish, a full disk) or is not a checkpoint. "
        f"Resume from an earlier checkpoint{_other_checkpoints(path)}."
    )


def _gist(error: BaseException) -> str:
    """The line of torch's (long) error that says what was wrong."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # after torch's advice about weights_only, which does not apply here
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    line = text.splitlines()[0].strip() if text.strip() else "no details"
    return line if len(line) <= 200 else line[:200] + "..."


def _other_checkpoints(path: Path, limit: int = 5) -> str:
    """``": other checkpoints in <folder>, newest first: a.ckpt, b.ckpt"``, or "" when there are none."""
    folder = path.parent
    try:
        found = [e for e in os.scandir(folder) if e.name.endswith(".ckpt") and e.name != path.name
                 and not e.name.startswith(".")]
        found.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
    except OSError:
        return ""
    if not found:
        return ""
    names = ", ".join(e.name for e in found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return f"; other checkpoints in {folder}, newest first: {names}"


def load_weights(module: Any, checkpoint: dict, path: Any, strict: Optional[bool] = None, strategy: Any = None) -> None:
    """``on_load_checkpoint``, then the checkpoint's ``state_dict`` into ``module`` (through ``strategy``, which
    scatters it for a sharded model). ``strict=None``: the module's ``strict_loading`` (True unless it set it),
    as Lightning's ``fit/validate/test/predict(ckpt_path=...)``."""
    if strict is None:
        strict = getattr(module, "strict_loading", True)
    if "state_dict" not in checkpoint:
        raise KeyError(
            f"{path} has no 'state_dict' entry (found keys: {sorted(checkpoint)}); it is not a checkpoint written "
            "by ember or PyTorch Lightning."
        )
    module.on_load_checkpoint(checkpoint)
    try:
        if strategy is not None:
            strategy.load_model_state_dict(module, checkpoint["state_dict"], strict=strict)
        else:
            module.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as e:
        if "Error(s) in loading state_dict" not in str(e):
            raise
        fix = ("If the difference is intended, set `self.strict_loading = False` in the model's __init__ (or pass "
               "`strict=False` to load_from_checkpoint) to load the matching entries." if strict else
               "strict loading is off, so these are tensors whose shapes differ: they cannot load.")
        raise RuntimeError(f"The weights in {path} do not fit {type(module).__name__}: it was saved from a different "
                           f"model or configuration. {e}\n{fix}") from e


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
        # plain strings: a resume with another optimizer class is refused with both names
        checkpoint["loops"]["ember_optimizer_classes"] = [_class_name(opt) for opt in trainer.optimizers]
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

    What this run cannot continue from is refused first, before anything is loaded: counters out of range for
    this run's data and limits, another number of optimizers, another optimizer class.
    Callbacks come before optimizers, as in Lightning: one that changed the optimizer (a finetuning callback
    adding a param group) rebuilds that in ``on_load_checkpoint`` so the optimizer's state fits; the optimizers'
    param-group layout is compared after that, right before their state loads.
    """
    for key in ("optimizer_states", "loops"):
        if key not in checkpoint:
            raise KeyError(
                f"Cannot resume training from {path}: it has no '{key}' entry (it was saved with "
                "save_weights_only=True, or by another tool). Load only the weights with "
                "`Model.load_from_checkpoint(path)` and start a new fit."
            )
    loops = checkpoint["loops"]
    progress = loops.get("ember") if isinstance(loops, dict) else None
    if progress is None:
        raise KeyError(f"Cannot resume training from {path}: its 'loops' entry was not written by ember (a "
                       "PyTorch Lightning checkpoint?). Load the weights with `Model.load_from_checkpoint(path)` "
                       "and start a new fit.")
    _check_progress(trainer, progress, path)
    saved_opts = checkpoint["optimizer_states"]
    _check_optimizer_classes(path, loops.get("ember_optimizer_classes"), saved_opts, trainer.optimizers)
    module = trainer.lightning_module
    load_weights(module, checkpoint, path, strategy=trainer.strategy)  # strict: the module's strict_loading
    callback_states = checkpoint.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.state_key in callback_states:
            cb.load_state_dict(callback_states[cb.state_key])
        cb.on_load_checkpoint(trainer, module, checkpoint)
    for i, (opt, state) in enumerate(zip(trainer.optimizers, saved_opts)):
        _check_param_groups(path, i, opt, state)
        trainer.strategy.load_optimizer_state_dict(opt, state)
    for cfg, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        cfg.scheduler.load_state_dict(state)
    trainer._precision.load_state_dict(checkpoint.get("MixedPrecision", {}))
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    trainer._progress.load_state_dict(progress)
    if trainer._progress.batch_idx:
        trainer._resumed_train_metrics = loops.get("ember_train_metrics")
    grads = loops.get("ember_accumulated_grads")
    if grads is not None:
        for param, grad in zip(module.parameters(), grads):
            param.grad = None if grad is None else grad.to(param.device)


_RESUME_ELSEWHERE = ("Resume from an earlier checkpoint{others}, or start a new fit with the weights alone: "
                     "`Model.load_from_checkpoint(path)`.")


def _check_progress(trainer: Any, progress: Any, path: Any) -> None:
    """The saved counters against this run: its data (an epoch's batches), max_steps and max_epochs."""
    from ember.trainer.progress import Progress

    batches = trainer.num_training_batches
    reload = trainer.reload_dataloaders_every_n_epochs
    if isinstance(progress, dict) and isinstance(progress.get("epoch"), int):
        epoch = progress["epoch"] + bool(progress.get("epoch_done"))
        if reload and epoch > 0 and epoch % reload == 0:
            batches = math.inf  # the resumed epoch loads its data afresh: its length is not known yet
    unlimited = bool(trainer.fast_dev_run)  # a quick check on any checkpoint
    try:
        Progress.check_state(progress, batches_per_epoch=batches, max_epochs=-1 if unlimited else trainer.max_epochs,
                             max_steps=-1 if unlimited else trainer.max_steps)
    except (TypeError, ValueError) as e:
        raise type(e)(f"Cannot resume training from {path}: {e}. The file is damaged or was saved for other data "
                      "or limits. " + _RESUME_ELSEWHERE.format(others=_other_checkpoints(Path(path)))) from None


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_optimizer_classes(path: Any, saved_names: Any, saved_states: Any, configured: list) -> None:
    """As many optimizers as saved, each of the class saved: Adam's state loaded into SGD failed later with a bare
    ``KeyError: 'betas'``."""
    names = [_class_name(o) for o in configured]
    if not isinstance(saved_states, (list, tuple)) or len(saved_states) != len(configured):
        found = len(saved_states) if isinstance(saved_states, (list, tuple)) else type(saved_states).__name__
        raise ValueError(f"Cannot resume training from {path}: it holds {found} optimizer states"
                         f"{f' ({_listed(saved_names)})' if saved_names else ''} but configure_optimizers returned "
                         f"{len(configured)} optimizers ({_listed(names) or 'none'}). Resume with the same "
                         "configure_optimizers.")
    if saved_names is None:  # written before ember stored the classes: compare the optimizers' hyperparameters
        for i, (opt, state) in enumerate(zip(configured, saved_states)):
            _check_group_keys(path, i, opt, state)
        return
    for i, (saved, name) in enumerate(zip(saved_names, names)):
        if saved != name:
            raise ValueError(f"Cannot resume training from {path}: its optimizer {i} is a {saved}, but "
                             f"configure_optimizers returned a {name} there; an optimizer's state only loads into "
                             "the class that wrote it. Resume with the optimizer the run was saved with, or start a "
                             "new fit from the weights alone (`Model.load_from_checkpoint(path)`).")


def _listed(names: Any) -> str:
    return ", ".join(str(n) for n in names) if isinstance(names, (list, tuple)) else ""


def _check_group_keys(path: Any, index: int, opt: Any, state: Any) -> None:
    """For a checkpoint without class names: hyperparameters both missing and extra mean another class (a newer
    torch only adds keys, and its optimizers fill those in when loading)."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not groups or not isinstance(groups[0], dict) or not opt.param_groups:
        return
    saved = set(groups[0]) - {"params"}
    ours = set(opt.param_groups[0]) - {"params"}
    if saved - ours and ours - saved:
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} has the hyperparameters "
                         f"{sorted(saved)}, but {type(opt).__name__} has {sorted(ours)}: it was saved by another "
                         "optimizer class. Resume with the optimizer the run was saved with, or start a new fit from "
                         "the weights alone (`Model.load_from_checkpoint(path)`).")


def _check_param_groups(path: Any, index: int, opt: Any, state: Any) -> None:
    """The saved optimizer's layout (param groups, parameters per group, state entries) against this one's."""
    if not isinstance(state, dict) or "param_groups" not in state:
        return  # a sharded optimizer's state: its strategy checks it
    groups, ours = state["param_groups"], opt.param_groups
    saved_sizes = [len(g.get("params", ())) if isinstance(g, dict) else None for g in groups] \
        if isinstance(groups, (list, tuple)) else None
    sizes = [len(g["params"]) for g in ours]
    if saved_sizes != sizes:
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} ({type(opt).__name__}) has "
                         f"param groups of {saved_sizes} parameters, but the configured one has {sizes}. The model or "
                         "configure_optimizers changed since the checkpoint; resume with the same ones, or start a "
                         "new fit from the weights alone (`Model.load_from_checkpoint(path)`).")
    entries = state.get("state")
    ids = {p for g in groups for p in g["params"]}
    stray = [k for k in entries if k not in ids] if isinstance(entries, dict) else None
    if stray is None or stray:
        found = f"entries for parameters {stray} that none of its param groups holds" if stray else \
            f"a 'state' entry that is a {type(entries).__name__}, not a dict"
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} state has {found}; the file "
                         "is damaged. " + _RESUME_ELSEWHERE.format(others=_other_checkpoints(Path(path))))
