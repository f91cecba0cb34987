"""LearningRateMonitor: log each optimizer's learning rate (and optionally momentum, weight decay)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import torch

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn

_INTERVALS = (None, "step", "epoch")


class LearningRateMonitor(Callback):
    """Log the learning rate of every optimizer and parameter group to the Trainer's loggers.

    Keys are Lightning's: ``lr-{OptimizerClass}`` (``lr-Adam``), the scheduler config's ``name`` when it
    has one, ``lr-SGD-1`` for a second optimizer of the same class, ``lr-SGD/pg1``, ``lr-SGD/pg2`` (or the
    param group's ``name``) when an optimizer has several groups, and ``-momentum`` / ``-weight_decay``
    appended for those values (Adam's momentum is ``betas[0]``).

    ``logging_interval=None`` logs a scheduler's values when it steps (per step or per epoch; optimizers
    without a scheduler at both); ``"step"`` logs on the Trainer's logging steps (``log_every_n_steps``),
    ``"epoch"`` at each epoch start. Every logged value is also kept in ``lrs``: ``{name: [values]}``.

    >>> from ember.callbacks.lr_monitor import LearningRateMonitor
    >>> lr_monitor = LearningRateMonitor(logging_interval="step", log_momentum=True)
    >>> # trainer = ember.Trainer(callbacks=[lr_monitor]); trainer.fit(model); lr_monitor.lrs["lr-SGD"]
    """

    def __init__(self, logging_interval: Optional[str] = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        if logging_interval not in _INTERVALS:
            raise ValueError(f"LearningRateMonitor(logging_interval={logging_interval!r}) must be 'step', 'epoch' "
                             "or None (log when each scheduler steps).")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, Optional[float]] = {}
        self.last_weight_decay_values: dict[str, Optional[float]] = {}

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.loggers:
            raise RuntimeError(
                "Cannot use LearningRateMonitor callback with Trainer that has no logger. Give the Trainer a logger "
                "(Trainer(logger=True) or e.g. logger=CSVLogger('logs')), or remove the LearningRateMonitor."
            )
        if self.log_momentum:
            optimizers = [_unwrap(o) for o in trainer.optimizers]
            if any("momentum" not in o.defaults and "betas" not in o.defaults for o in optimizers):
                rank_zero_warn("LearningRateMonitor(log_momentum=True), but some optimizers have no momentum; the "
                               "value 0 is logged for them.", RuntimeWarning, stacklevel=3)
        names = [name for _, _, group_names in _named_optimizers(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.logging_interval == "epoch":
            return
        run = trainer.run_state
        if not run.next_step_logs:  # only on the steps the Trainer logs
            return
        self._log(trainer, "step" if self.logging_interval is None else "any", run.batches_stepped)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.logging_interval == "step":
            return
        self._log(trainer, "epoch" if self.logging_interval is None else "any", trainer.run_state.batches_stepped)

    def _log(self, trainer: Any, interval: str, step: int) -> None:
        stats: dict[str, float] = {}
        for optimizer, config_interval, names in _named_optimizers(trainer):
            if config_interval is not None and interval not in (config_interval, "any"):
                continue
            use_betas = "betas" in optimizer.defaults
            for group, name in zip(optimizer.param_groups, names):
                stats[name] = group["lr"]
                self.lrs.setdefault(name, []).append(group["lr"])
                if self.log_momentum:
                    momentum = group["betas"][0] if use_betas else group.get("momentum", 0)
                    stats[f"{name}-momentum"] = self.last_momentum_values[f"{name}-momentum"] = momentum
                if self.log_weight_decay:
                    decay = group.get("weight_decay", 0)
                    stats[f"{name}-weight_decay"] = self.last_weight_decay_values[f"{name}-weight_decay"] = decay
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=step)
            # as Lightning, the values are also in trainer.callback_metrics (programs read callback_metrics["lr-Adam"]);
            # CPU tensors: no copy to the device, no sync
            trainer.callback_metrics.update({name: torch.tensor(value) for name, value in stats.items()})


def _unwrap(optimizer: Any) -> Any:
    return getattr(optimizer, "optimizer", optimizer)


def _named_optimizers(trainer: Any) -> list:
    """``(optimizer, scheduler interval or None, [one name per param group])``: optimizers with a scheduler first
    (named by the config's ``name`` if given), then those without. Recomputed on each logging call, so param
    groups added during training get names too."""
    entries = [(cfg.scheduler.optimizer, cfg.interval, cfg.name) for cfg in trainer.lr_scheduler_configs]
    scheduled = [opt for opt, _, _ in entries]
    entries += [(_unwrap(o), None, None) for o in trainer.optimizers if not any(_unwrap(o) is s for s in scheduled)]
    seen: Counter = Counter()
    out = []
    for optimizer, interval, name in entries:
        if name is None:
            cls = type(optimizer)
            seen[cls] += 1
            name = f"lr-{cls.__name__}" + (f"-{seen[cls] - 1}" if seen[cls] > 1 else "")
        out.append((optimizer, interval, _group_names(name, optimizer.param_groups)))
    return out


def _group_names(name: str, groups: list) -> list:
    labels = [g.get("name", f"pg{i + 1}") for i, g in enumerate(groups)]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"LearningRateMonitor: an optimizer ({name}) has several parameter groups with the same "
                         f"'name' {duplicated}; give each param group a distinct name.")
    if len(groups) == 1:
        return [f"{name}/{groups[0]['name']}" if "name" in groups[0] else name]
    return [f"{name}/{label}" for label in labels]
