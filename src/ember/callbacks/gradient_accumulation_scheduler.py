"""GradientAccumulationScheduler: change how many batches are accumulated per optimizer step, by epoch."""
from __future__ import annotations

from typing import Any

from ember._utils import is_overridden
from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn


class GradientAccumulationScheduler(Callback):
    """``scheduling`` maps an epoch (from 0) to the number of batches to accumulate from that epoch on;
    epochs before the first key accumulate 1. It sets ``trainer.accumulate_grad_batches`` at each
    epoch start.

    >>> from ember.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
    >>> accumulator = GradientAccumulationScheduler(scheduling={0: 8, 4: 4, 8: 1})
    >>> [accumulator.get_accumulate_grad_batches(e) for e in (0, 3, 4, 9)]
    [8, 8, 4, 1]
    >>> # trainer = ember.Trainer(callbacks=[accumulator])  # leave Trainer(accumulate_grad_batches) at 1
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not isinstance(scheduling, dict) or not scheduling:
            raise TypeError(f"GradientAccumulationScheduler(scheduling={scheduling!r}) must be a non-empty dict "
                            "{epoch: batches_to_accumulate}, e.g. {0: 4, 10: 1}.")
        bad_keys = [k for k in scheduling if isinstance(k, bool) or not isinstance(k, int) or k < 0]
        if bad_keys:
            raise ValueError(f"GradientAccumulationScheduler: epochs must be ints >= 0 (counted from 0); got "
                             f"{bad_keys} in scheduling={scheduling}.")
        bad_values = [v for v in scheduling.values() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad_values:
            raise ValueError(f"GradientAccumulationScheduler: accumulation factors must be ints >= 1; got "
                             f"{bad_values} in scheduling={scheduling}.")
        scheduling = dict(scheduling)
        scheduling.setdefault(0, 1)
        self.scheduling = scheduling
        self.epochs = sorted(scheduling)
        self._last_set: Any = None  # what this callback last wrote to the Trainer (to tell it from a user value)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(v > 1 for v in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at ``epoch``: that of the largest scheduled epoch <= ``epoch``."""
        return self.scheduling[max(e for e in self.epochs if e <= epoch)]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(f"GradientAccumulationScheduler needs automatic optimization, but "
                               f"{type(pl_module).__name__} sets automatic_optimization = False. Remove the callback "
                               "and step every N batches yourself in training_step.")
        if trainer.accumulate_grad_batches != 1 and trainer.accumulate_grad_batches != self._last_set:
            raise ValueError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) and a "
                "GradientAccumulationScheduler are both set. Either remove accumulate_grad_batches from the Trainer "
                "or remove the callback."
            )
        from ember.module import LightningModule

        if self.going_to_accumulate_grad_batches() and any(
                is_overridden(name, pl_module, LightningModule) for name in ("optimizer_step", "optimizer_zero_grad")):
            rank_zero_warn("GradientAccumulationScheduler accumulates batches and the module overrides "
                           "optimizer_step/optimizer_zero_grad: those run once per optimizer step, not per batch.",
                           stacklevel=3)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # the loop reads accumulate_grad_batches right after this hook, so the new factor applies to this epoch
        self._last_set = trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)
