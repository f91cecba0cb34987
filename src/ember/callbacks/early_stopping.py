"""EarlyStopping: stop ``fit`` when a monitored metric stops improving, reaches a goal, or diverges.

It checks at the same moments as ModelCheckpoint saves (see ``ember.callbacks.monitor``), so it sees the
epoch's final metrics, and a stop takes effect before the next epoch starts.

Under several processes each rank evaluates its own value, and all stop when any rank decides to
(``reduce_boolean_decision(should_stop, all=False)``, a collective at every check, on every rank), as in
Lightning. Log the monitored value with ``sync_dist=True`` for all ranks to see the same value.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ember.callbacks.monitor import MonitorCallback
from ember.utilities.rank_zero import rank_prefixed_message

_BETTER = {"min": "<", "max": ">"}
_WORSE = {"min": ">", "max": "<"}
_STATE = ("wait_count", "stopped_epoch", "best_score", "patience")  # the checkpointed state, as Lightning's


class EarlyStopping(MonitorCallback):
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

    _missing_error = RuntimeError
    _missing_warning = RuntimeWarning
    _skipped = "early stopping checks"

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
        super().__init__(monitor, mode, check_on_train_epoch_end)
        if patience < 0:
            raise ValueError(f"EarlyStopping(patience={patience}) must be >= 0.")
        # stored signed, so that `monitor_op(current - min_delta, best)` reads "better by more than min_delta"
        self.min_delta = abs(min_delta) * (1 if mode == "max" else -1)
        self.patience = patience
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score: Tensor = self._initial_best()
        self.stopping_reason_message: Optional[str] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in _STATE}

    def load_state_dict(self, state_dict: dict) -> None:
        for key in _STATE:
            setattr(self, key, state_dict[key])

    # --- the decision (when: MonitorCallback) -------------------------------------------------------------
    def _act(self, trainer: Any) -> None:
        value = self._monitored(trainer, trainer.callback_metrics, fatal=self.strict,
                                fix=" Pass strict=False to skip the check while it is missing.")
        if value is None:
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
