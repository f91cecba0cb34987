"""EarlyStopping: stop ``fit`` when a monitored metric stops improving, reaches a goal, or diverges.

It checks at the same moments as ModelCheckpoint saves: after a mid-epoch validation
(``val_check_interval``), and otherwise in ``on_train_epoch_end``, which ember runs for
ModelCheckpoint and EarlyStopping after everything else of the epoch (epoch-end validation, the other
callbacks and the module's ``on_train_epoch_end``, the epoch's metric reduction, epoch-interval LR
schedulers). So it sees the epoch's final metrics, and a stop takes effect before the next epoch starts.

Under several processes each rank evaluates its own value, and all stop when any rank decides to
(``reduce_boolean_decision(should_stop, all=False)``, a collective at every check, on every rank), as in
Lightning. Log the monitored value with ``sync_dist=True`` for all ranks to see the same value.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ember.callbacks.callback import Callback
from ember.callbacks.model_checkpoint import _acts_at_train_epoch_end, _missing_metric_message
from ember.utilities.rank_zero import rank_prefixed_message, rank_zero_warn

_MODES = {"min": torch.lt, "max": torch.gt}
_BETTER = {"min": "<", "max": ">"}
_WORSE = {"min": ">", "max": "<"}


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved by more than ``min_delta`` for ``patience`` checks.

    >>> from ember.callbacks import EarlyStopping
    >>> early_stop = EarlyStopping(monitor="val_loss", patience=3, min_delta=0.001, mode="min")
    >>> # trainer = ember.Trainer(callbacks=[early_stop]); trainer.fit(model)
    >>> # early_stop.stopped_epoch, early_stop.stopping_reason_message

    A check counts as an improvement when ``current < best_score - min_delta`` (``mode="min"``) or
    ``current > best_score + min_delta`` (``mode="max"``). It also stops when the value is not finite
    (``check_finite``), once it is better than ``stopping_threshold``, or once it is worse than
    ``divergence_threshold``. A missing metric raises with ``strict=True`` and is skipped (one warning)
    with ``strict=False``. ``check_on_train_epoch_end=True`` checks only at the end of the training epoch,
    never after a mid-epoch validation.
    """

    _acts_after_module = True  # the hook runner calls it after the module's on_train_epoch_end

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: Optional[float] = None,
        divergence_threshold: Optional[float] = None,
        check_on_train_epoch_end: Optional[bool] = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"EarlyStopping(mode={mode!r}) is not valid: use 'min' or 'max'.")
        if patience < 0:
            raise ValueError(f"EarlyStopping(patience={patience}) must be >= 0.")
        self.monitor = monitor
        self.mode = mode
        self.monitor_op = _MODES[mode]
        # stored signed, so that `monitor_op(current - min_delta, best)` reads "better by more than min_delta"
        self.min_delta = abs(min_delta) * (1 if mode == "max" else -1)
        self.patience = patience
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        self.stopping_reason_message: Optional[str] = None
        self._warned_missing = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict:
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": self.best_score,
                "patience": self.patience}

    def load_state_dict(self, state_dict: dict) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]

    # --- hooks ---------------------------------------------------------------------------------------
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # after the end-of-epoch validation, on_train_epoch_end does the check
        if (self._should_skip(trainer) or trainer._progress.epoch_done
                or self._check_on_train_epoch_end is True):
            return
        self._check(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._should_skip(trainer) or not _acts_at_train_epoch_end(self._check_on_train_epoch_end, trainer):
            return
        self._check(trainer)

    # --- the decision --------------------------------------------------------------------------------
    @staticmethod
    def _should_skip(trainer: Any) -> bool:
        return trainer.sanity_checking or trainer.state.fn != "fit" or bool(trainer.fast_dev_run)

    def _check(self, trainer: Any) -> None:
        metrics = trainer.callback_metrics
        value = metrics.get(self.monitor)
        if value is None:
            message = _missing_metric_message(f"EarlyStopping(monitor={self.monitor!r})", self.monitor,
                                              sorted(metrics), trainer)
            if self.strict:
                raise RuntimeError(message + " Pass strict=False to skip the check while it is missing.")
            if not self._warned_missing:
                self._warned_missing = True
                rank_zero_warn(message + " Skipping early stopping checks while it is missing.", RuntimeWarning,
                               stacklevel=3)
            return
        decided, reason = self._evaluate(value.detach().cpu().squeeze())
        # every rank stops when any rank decides to
        should_stop = trainer.strategy.reduce_boolean_decision(decided, all=False)
        if should_stop and not decided:
            reason = f"{reason} Another process decided to stop; stopping with it."
        if should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if self.verbose:
            self._log(trainer, reason)

    def _evaluate(self, current: Tensor) -> tuple[bool, str]:
        """Whether to stop, and why (or what improved)."""
        name, value = self.monitor, current.item()
        if self.check_finite and not torch.isfinite(current):
            return True, (f"Monitored metric {name} = {value} is not finite. Previous best value was "
                          f"{self.best_score.item():.3f}. Signaling Trainer to stop.")
        if self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            return True, (f"Stopping threshold reached: {name} = {value:.3f} {_BETTER[self.mode]} "
                          f"{self.stopping_threshold}. Signaling Trainer to stop.")
        if self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            return True, (f"Divergence threshold reached: {name} = {value:.3f} {_WORSE[self.mode]} "
                          f"{self.divergence_threshold}. Signaling Trainer to stop.")
        if self.monitor_op(current - self.min_delta, self.best_score):
            if torch.isfinite(self.best_score):
                reason = (f"Metric {name} improved by {abs(self.best_score.item() - value):.3f} >= min_delta = "
                          f"{abs(self.min_delta)}. New best score: {value:.3f}")
            else:
                reason = f"Metric {name} improved. New best score: {value:.3f}"
            self.best_score = current
            self.wait_count = 0
            return False, reason
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (f"Monitored metric {name} did not improve in the last {self.wait_count} records. "
                          f"Best score: {self.best_score.item():.3f}. Signaling Trainer to stop.")
        return False, (f"Metric {name} did not improve ({value:.3f}, best {self.best_score.item():.3f}); "
                       f"{self.wait_count} of {self.patience} checks of patience used.")

    def _log(self, trainer: Any, message: str) -> None:
        if self.log_rank_zero_only and not trainer.is_global_zero:
            return
        print(rank_prefixed_message(message, trainer.global_rank if trainer.world_size > 1 else None))
