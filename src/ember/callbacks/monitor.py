"""MonitorCallback: what ModelCheckpoint and EarlyStopping share (an ember name; Lightning repeats it in both)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn

_MODES = {"min": torch.lt, "max": torch.gt}


class MonitorCallback(Callback):
    """Base of the callbacks that act on a monitored metric during ``fit``; subclasses define ``_act(trainer)``.

    They act after a mid-epoch validation (``val_check_interval``), and at the end of a training epoch that
    validated at its end (of every epoch when the fit has no validation); ember runs their ``on_train_epoch_end``
    after the rest of the epoch (epoch-end validation, other callbacks, the module's hook, the epoch's metric
    reduction, epoch-interval LR schedulers). ``act_on_train_epoch_end=True``: at every epoch's end, never mid-epoch.

    >>> from ember.callbacks import EarlyStopping, ModelCheckpoint
    >>> issubclass(EarlyStopping, MonitorCallback) and issubclass(ModelCheckpoint, MonitorCallback)
    True
    """

    _acts_after_module = True  # the hook runner calls it after the module's on_train_epoch_end
    _missing_error: type = ValueError  # raised for a missing metric that must be there
    _missing_warning: type = UserWarning  # warned (once) for a missing metric that may still come
    _skipped = "the checks"  # what is skipped while the metric is missing

    def __init__(self, monitor: Optional[str], mode: str, act_on_train_epoch_end: Optional[bool]) -> None:
        if mode not in _MODES:
            raise ValueError(f"{type(self).__name__}(mode={mode!r}) is not valid: use 'min' or 'max'.")
        self.monitor = monitor
        self.mode = mode
        self._act_on_train_epoch_end = act_on_train_epoch_end
        self._warned_missing = False

    @property
    def monitor_op(self) -> Any:
        """``torch.lt`` (mode 'min') or ``torch.gt`` (mode 'max'): ``monitor_op(a, b)`` reads "a is better than b"."""
        return _MODES[self.mode]

    def _initial_best(self) -> Tensor:
        """The value every finite value beats: +inf for mode 'min', -inf for 'max'."""
        return torch.tensor(float("inf") if self.mode == "min" else float("-inf"))

    # --- when to act -------------------------------------------------------------------------------------
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # after the end-of-epoch validation, on_train_epoch_end acts
        if self._should_skip(trainer) or trainer.run_state.epoch_done or self._act_on_train_epoch_end is True:
            return
        self._act(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        run = trainer.run_state
        if self._should_skip(trainer) or not (self._act_on_train_epoch_end is True or run.validated_at_epoch_end
                                              or not run.validation_enabled):
            return
        self._act(trainer)

    def _should_skip(self, trainer: Any) -> bool:
        return bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking

    def _act(self, trainer: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: a MonitorCallback defines _act(trainer).")

    # --- the monitored value -----------------------------------------------------------------------------
    def _monitored(self, trainer: Any, metrics: dict, fatal: bool, fix: str = "") -> Optional[Tensor]:
        """``metrics[monitor]``. When it is missing: raise if ``fatal``, else warn once and return None."""
        value = metrics.get(self.monitor)
        if value is not None:
            return value
        logged = sorted(trainer.callback_metrics)
        found = f"logged metrics are: {', '.join(repr(k) for k in logged)}" if logged else "no metrics were logged"
        where = "validation_step" if trainer.run_state.validation_enabled else "training_step"
        message = (f"{type(self).__name__}(monitor={self.monitor!r}) found no metric {self.monitor!r}; {found}. "
                   f"Log it with self.log({self.monitor!r}, ...) in {where}, or fix `monitor`.")
        if fatal:
            raise self._missing_error(message + fix)
        if not self._warned_missing:
            self._warned_missing = True
            rank_zero_warn(f"{message} Skipping {self._skipped} until it is logged.", self._missing_warning,
                           stacklevel=4)
        return None
