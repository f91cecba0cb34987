"""``trainer.run_state``: what callbacks, the profiler and the launcher may read about the running loop.

The Trainer's private attributes are a promise to the files of ``ember/trainer/``; everything outside reads
the run through this small read-only view (an ember name: Lightning's callbacks reach into its loops instead).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


_SPAWN_COUNTERS = ("epoch", "optimizer_steps", "batches_seen", "batches_stepped")


def logs_at(batches_stepped: int, every: int) -> bool:
    """Whether the training batch that made ``batches_stepped`` optimizer-step batches sends its values to the
    loggers: every ``log_every_n_steps``-th batch that stepped. The loop and every callback ask this one rule."""
    return batches_stepped % every == 0


class RunState:
    """Read-only facts about the run in progress, for callbacks.

    >>> import ember
    >>> ember.Trainer(enable_progress_bar=False).run_state.batches_stepped
    0
    """

    __slots__ = ("_trainer",)

    def __init__(self, trainer: "Trainer") -> None:
        self._trainer = trainer

    @property
    def batches_stepped(self) -> int:
        """Training batches that ended with an optimizer step, in the whole fit: the step number loggers see
        (``global_step`` counts optimizer steps instead, which differ under manual optimization)."""
        return self._trainer._progress.batches_stepped

    @property
    def stepped(self) -> bool:
        """In ``on_train_batch_end``: the batch just trained ended its accumulation window (an optimizer step)."""
        return self._trainer._progress.accumulated == 0

    @property
    def is_logging_step(self) -> bool:
        """In ``on_train_batch_end``: the batch just trained sends its values to the loggers."""
        return self.stepped and logs_at(self.batches_stepped, self._trainer.log_every_n_steps)

    @property
    def next_step_logs(self) -> bool:
        """In ``on_train_batch_start``: the coming batch sends its values to the loggers if it steps."""
        return logs_at(self.batches_stepped + 1, self._trainer.log_every_n_steps)

    @property
    def epoch_done(self) -> bool:
        """The current epoch's training batches have all run (its end-of-epoch work is under way)."""
        return self._trainer._progress.epoch_done

    @property
    def validation_enabled(self) -> bool:
        """This fit validates: it has validation data with batches and a ``validation_step``."""
        return self._trainer.data.val_enabled

    @property
    def validated_at_epoch_end(self) -> bool:
        """The epoch now ending ran validation at its end (read in ``on_train_epoch_end``/``on_validation_end``)."""
        return self._trainer._epoch_end_validated

    # --- Trainer(strategy="ddp_spawn"): rank 0's run handed back to the process that started it ---------------
    def export(self) -> dict:
        """The finished run as plain data and CPU tensors: its state, counters and metric views."""
        t = self._trainer
        return {"state": dict(vars(t.state)), "progress": {k: getattr(t._progress, k) for k in _SPAWN_COUNTERS},
                "callback_metrics": {k: torch.as_tensor(v).detach().cpu() for k, v in t.callback_metrics.items()},
                "logged_metrics": {k: torch.as_tensor(v).detach().cpu() for k, v in t.logged_metrics.items()}}

    def adopt(self, exported: dict, model: object) -> None:
        """Take over a run ``export()`` described (the one write this view makes: ddp_spawn's parent process)."""
        from ember.trainer.states import TrainerState

        t = self._trainer
        t._model = model
        t.state = TrainerState(**exported["state"])
        for key in _SPAWN_COUNTERS:
            setattr(t._progress, key, exported["progress"][key])
        t._metrics.reset()
        t._metrics.store((exported["callback_metrics"], exported["logged_metrics"], {}))

    def to_device(self, batch: object, dataloader_idx: int = 0) -> object:
        """``batch`` as the loop hands it to the step: the module's transfer hooks applied, on the device."""
        transfer = self._trainer.data.transfer
        return batch if transfer is None else transfer(batch, dataloader_idx)
