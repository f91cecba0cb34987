"""Find the largest batch size that trains (or evaluates) without running out of memory.

Each trial sets ``batch_size`` where the user's code reads it (``model.batch_size``,
``model.hparams.batch_size``, ``datamodule.batch_size``, ``datamodule.hparams.batch_size``), runs
``steps_per_trial`` steps on a separate quiet Trainer (which asks the model or datamodule for new
dataloaders), and counts an out-of-memory error as a failed trial.

* ``mode="power"`` doubles the size until a trial fails, and keeps the last size that ran;
* ``mode="binsearch"`` doubles the same way, then bisects between the last success and the first
  failure, and finally takes ``margin`` (5% by default) off as a safety buffer.

The search also stops growing once a batch holds the whole data set. Afterwards the weights and
optimizer states are put back; only the batch size attribute keeps the value found.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Optional

import torch

from ember.trainer.arguments import trial_trainer
from ember.tuner._common import (_attr_holders, _free_memory, _get_attr, _isolated, _lifecycle_once, _places,
                                 _set_attr, _Snapshot, _SnapshotAtStart)

log = logging.getLogger(__name__)

_MODES = ("power", "binsearch")
_METHODS = ("fit", "validate", "test", "predict")


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` means "out of memory": ``torch.cuda.OutOfMemoryError``, or a RuntimeError whose
    message says so (CUDA, MPS and XPU say "out of memory"; the CPU allocator "can't allocate memory"; cuDNN
    reports some OOMs as CUDNN_STATUS_NOT_SUPPORTED).

    >>> is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    True
    >>> is_oom_error(ValueError("out of memory"))
    False
    """
    if isinstance(exception, torch.cuda.OutOfMemoryError):
        return True
    if not isinstance(exception, RuntimeError):
        return False
    message = str(exception)
    return ("out of memory" in message.lower() or "DefaultCPUAllocator: can't allocate memory" in message
            or "CUDNN_STATUS_NOT_SUPPORTED" in message)


def _search(try_size: Callable[[int], tuple], mode: str, size: int, max_trials: int, max_val: int) -> int:
    """The largest size for which ``try_size(size)`` returns ``(True, dataset_length)``; 0 if none did."""
    low, high = 0, None  # the largest size that ran, the smallest that ran out of memory
    for _ in range(max_trials):
        fits, dataset_length = try_size(size)
        if fits:
            low = size
            if dataset_length is not None and size >= dataset_length:
                log.info("Batch size %d is at least the length of the data set (%d): stopping.", size, dataset_length)
                break
            if high is None:
                nxt = min(size * 2, max_val)
            elif mode == "power":
                break
            else:
                nxt = (low + high) // 2
            if nxt <= low:
                break
            log.info("Batch size %d succeeded, trying batch size %d", size, nxt)
        else:
            high = size
            if mode == "power" and low:
                break
            nxt = (low + high) // 2  # binsearch bisects; before any success both modes halve
            if nxt <= low:
                break
            log.info("Batch size %d failed, trying batch size %d", size, nxt)
        size = nxt
    return low


def _dataset_length(trial: Any, method: str) -> Optional[int]:
    loaders = {"fit": trial.train_dataloader, "validate": trial.val_dataloaders, "test": trial.test_dataloaders,
               "predict": trial.predict_dataloaders}[method]
    lengths = []
    for loader in loaders if isinstance(loaders, list) else [loaders]:
        try:
            lengths.append(len(loader.dataset))
        except (TypeError, AttributeError):
            return None  # an iterable data set: only memory limits the size
    return max(lengths) if lengths else None


def _run_trial(trainer: Any, model: Any, datamodule: Any, method: str, steps: int, snapshot: _Snapshot) -> Any:
    """``steps`` steps of ``method`` on a fresh quiet Trainer (fresh counters, dataloaders asked for anew)."""
    limits = {"fit": dict(max_epochs=-1, max_steps=steps, limit_train_batches=1.0, limit_val_batches=steps),
              "validate": dict(limit_val_batches=steps), "test": dict(limit_test_batches=steps),
              "predict": dict(limit_predict_batches=steps)}[method]
    trial = trial_trainer(trainer, [_SnapshotAtStart(snapshot)], **limits)
    if method == "fit":
        trial.fit(model, datamodule=datamodule)
    elif method == "predict":
        trial.predict(model, datamodule=datamodule, return_predictions=False)
    else:
        getattr(trial, method)(model, datamodule=datamodule, verbose=False)
    return trial


def _check_batch_attr(model: Any, name: str, datamodule: Any, where: str) -> None:
    holders = _attr_holders(model, name, datamodule)
    if not holders:
        raise AttributeError(
            f"{where}(batch_arg_name={name!r}) found no `{name}` in {_places(name)}. The batch size finder "
            f"changes that attribute and asks for new dataloaders: store the batch size there (e.g. a `{name}` "
            f"argument and `self.save_hyperparameters()`) and build the DataLoader with it in `train_dataloader()`."
        )
    if any(h is model for h in holders) and any(h is getattr(model, "hparams", None) for h in holders):
        warnings.warn(f"Field `model.{name}` and `model.hparams.{name}` are mutually exclusive! `model.{name}` "
                      "will be used as the initial batch size for scaling. If this is not the intended behavior, "
                      "please remove either one.", stacklevel=3)


def scale_batch_size(trainer: Any, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                     dataloaders: Any = None, datamodule: Any = None, method: str = "fit", mode: str = "power",
                     steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                     batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192,
                     in_fit: bool = False) -> Optional[int]:
    """Run the search for ``trainer`` (``in_fit``: from a callback while ``trainer.fit`` runs). See
    ``Tuner.scale_batch_size`` for the arguments."""
    mode = mode.lower()
    if mode not in _MODES:
        raise ValueError(f"scale_batch_size(mode={mode!r}) must be 'power' or 'binsearch'.")
    if method not in _METHODS:
        raise ValueError(f"scale_batch_size(method={method!r}) must be one of {_METHODS}.")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"scale_batch_size(margin={margin}) must be in [0, 1).")
    for arg, value in (("steps_per_trial", steps_per_trial), ("init_val", init_val), ("max_trials", max_trials),
                       ("max_val", max_val)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"scale_batch_size({arg}={value!r}) must be an int >= 1.")
    if trainer.fast_dev_run:
        warnings.warn("Skipping the batch size finder because Trainer(fast_dev_run) is set.", stacklevel=3)
        return None
    passed = train_dataloaders if method == "fit" else dataloaders
    if passed is not None:
        call = "fit" if method == "fit" else method
        raise ValueError(
            f"The batch size finder cannot be used with dataloaders passed directly to `.{call}()`: it changes "
            f"`{batch_arg_name}` and asks for new dataloaders, which a DataLoader object cannot give. Build the "
            "DataLoader in your LightningModule's or LightningDataModule's `*_dataloader()` method, from "
            f"`self.{batch_arg_name}`, and pass the datamodule instead."
        )
    if in_fit:
        datamodule = trainer.datamodule
    _check_batch_attr(model, batch_arg_name, datamodule, "scale_batch_size")
    original = _get_attr(model, batch_arg_name, datamodule)

    snapshot = _Snapshot()
    snapshot.add_optimizers(trainer.optimizers, [c.scheduler for c in trainer.lr_scheduler_configs])

    def try_size(size: int) -> tuple:
        _set_attr(model, batch_arg_name, size, datamodule)
        try:
            trial = _run_trial(trainer, model, datamodule, method, steps_per_trial, snapshot)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not is_oom_error(e):
                raise
            fits, length = False, None
        else:
            return True, _dataset_length(trial, method)
        _free_memory(trainer.root_device)  # after the except block: the exception and its frames are gone
        return fits, length

    found = 0
    with _isolated(model, datamodule):
        try:
            with _lifecycle_once(model, datamodule, method, already_set_up=in_fit):
                found = _search(try_size, mode, init_val, max_trials, max_val)
        finally:
            snapshot.restore(model)
            if not found:
                _set_attr(model, batch_arg_name, original, datamodule)
    if not found:
        raise RuntimeError(
            f"scale_batch_size found no batch size that fits in memory: every size tried (halving from "
            f"init_val={init_val}, max_trials={max_trials}) ran out of memory. Reduce the model or the input size, "
            "use a lower precision, or start lower with init_val=1."
        )
    if mode == "binsearch" and margin > 0:
        reduced = max(1, int(found * (1 - margin)))
        if reduced != found:
            log.info("Applying a margin of %.1f%%: batch size %d instead of %d.", margin * 100, reduced, found)
        found = reduced
    _set_attr(model, batch_arg_name, found, datamodule)
    log.info("Finished batch size finder, will continue with full run using batch size %d", found)
    return found
