"""The learning-rate range test: train a few steps while the learning rate grows, watch the loss.

``lr_find`` runs a short real fit on a separate, quiet Trainer. Before every optimizer step the
sweep sets the learning rate of all parameter groups to the next value between ``min_lr`` and
``max_lr``; after the step it records the loss, smoothed as an exponential moving average. When the
smoothed loss exceeds ``early_stop_threshold`` times the best one seen, the loss is diverging and
the sweep stops (the point that crossed the line is kept, as in Lightning). The sweep runs at most
``num_training`` steps, over as many epochs as that takes, within the Trainer's ``max_epochs``.
Afterwards the model's weights and the optimizers' states are put back, and the suggestion (the
steepest descent of the loss curve) is written to ``model.lr`` / ``model.hparams.lr`` / ``learning_rate``.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Optional

import torch

from ember.trainer.arguments import trial_trainer
from ember.tuner._common import (_attr_holders, _isolated, _lifecycle_once, _set_attr, _Snapshot,
                                 _SnapshotAtStart)
from ember.utilities.rank_zero import rank_zero_warn

log = logging.getLogger(__name__)

_MODES = ("exponential", "linear")


class _LRFinder:
    """What ``Tuner.lr_find`` returns: the sweep's ``results`` ({"lr": [...], "loss": [...]}, the loss
    smoothed), ``suggestion()`` and ``plot()``.

    >>> finder = _LRFinder("linear", 0.1, 0.5, 5)
    >>> finder.results = {"lr": [0.1, 0.2, 0.3, 0.4, 0.5], "loss": [1.0, 0.9, 0.4, 0.35, 2.0]}
    >>> finder.suggestion(skip_begin=0, skip_end=1)  # the loss falls fastest around 0.2
    0.2
    """

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int,
                 early_stop_threshold: Optional[float] = 4.0) -> None:
        if mode not in _MODES:
            raise ValueError(f"lr_find(mode={mode!r}) must be 'exponential' or 'linear'.")
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.early_stop_threshold = early_stop_threshold
        self.results: dict = {}
        self._optimal_idx: Optional[int] = None
        self._total_batch_idx = 0  # training batches the sweep ran

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> Optional[float]:
        """The learning rate where the smoothed loss falls fastest: the most negative ``d loss / d lr``,
        ignoring the first ``skip_begin`` and the last ``skip_end`` points and any non-finite loss.

        Returns None (and logs why) when fewer than two points remain: increase ``num_training`` or the data.
        """
        losses_all = self.results.get("loss", [])
        end = len(losses_all) - skip_end
        idx = [i for i in range(skip_begin, end) if math.isfinite(losses_all[i])]
        if len(idx) < 2:
            log.error("lr_find: cannot suggest a learning rate from %d usable points (need 2 after skipping the first "
                      "%d and last %d). Increase num_training or the size of the training data.",
                      len(idx), skip_begin, skip_end)
            self._optimal_idx = None
            return None
        losses = torch.tensor([losses_all[i] for i in idx], dtype=torch.float64)
        lrs = torch.tensor([self.results["lr"][i] for i in idx], dtype=torch.float64)
        gradients = torch.gradient(losses, spacing=[lrs])[0]  # d loss / d lr, as Lightning computes it
        self._optimal_idx = idx[int(torch.argmin(gradients))]
        return self.results["lr"][self._optimal_idx]

    def _diverged_at(self) -> int:
        """The index of the first point past the divergence: a NaN/inf loss, or a smoothed loss above
        ``early_stop_threshold`` (4 when it is None) times the lowest one before it, the rule the sweep
        stops by. ``len(results["loss"])`` when the loss never diverged."""
        threshold = self.early_stop_threshold if self.early_stop_threshold is not None else 4.0
        losses = self.results.get("loss", [])
        best = math.inf
        for i, loss in enumerate(losses):
            if math.isnan(loss):
                continue  # a batch whose training_step returned no loss
            if not math.isfinite(loss) or (i > 0 and loss > threshold * best):
                return i
            best = min(best, loss)
        return len(losses)

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """Draw the smoothed loss against the learning rate (log scale in exponential mode) and return the
        matplotlib Figure. ``suggest`` marks the suggestion in red; ``show`` calls ``plt.show()``; ``ax``
        draws into an existing Axes.

        When the loss diverged at the end, the y axis spans the losses before the divergence (the first
        point above ``early_stop_threshold`` times the best one, the sweep's stopping rule), so that an
        exploding last point does not flatten the curve; the diverged points are drawn and run off the
        top. ``ax.autoscale()`` shows them all."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ModuleNotFoundError("_LRFinder.plot() draws with matplotlib, which is not installed. Install it "
                                      "with `pip install matplotlib`, or read the numbers from `.results`.") from None
        lrs, losses = self.results["lr"], self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None and self._optimal_idx is not None:
            ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        shown = [loss for loss in losses[:self._diverged_at()] if math.isfinite(loss)]
        if shown and len(shown) < sum(math.isfinite(loss) for loss in losses):  # a diverged point would set the scale
            low, high = min(shown), max(shown)
            margin = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
            ax.set_ylim(low - margin, high + margin)
        if show:
            plt.show()
        return fig


def _schedule(mode: str, min_lr: float, max_lr: float, n: int) -> list:
    """The learning rate of each of the ``n`` steps, as Lightning's sweep gives them: ``min_lr`` for the first
    step, then ``r = (k + 1) / n`` of the way from ``min_lr`` to ``max_lr`` (in log or linear scale) for
    step ``k``, ending at ``max_lr``. Matching Lightning exactly makes a ported program tune to the same rate."""
    def at(r: float) -> float:
        return min_lr * (max_lr / min_lr) ** r if mode == "exponential" else min_lr + r * (max_lr - min_lr)

    return [min_lr] + [at((k + 1) / n) for k in range(1, n)]


class _LRSweep(_SnapshotAtStart):
    """The trial run's callback: sets each step's learning rate, records the smoothed loss, stops on divergence.

    The smoothed loss is Lightning's: ``avg = beta * avg + (1 - beta) * loss`` and ``avg / (1 - beta**(step + 1))``
    with ``step`` the global step after the step (so the first values come out lower than the loss: the
    bias correction counts one step more than were averaged; ``suggestion`` skips them by default). The
    search stops when that exceeds ``early_stop_threshold`` times the best value, or (an ember addition)
    when the loss is NaN or infinite.
    """

    def __init__(self, snapshot: _Snapshot, lrs: list, early_stop_threshold: Optional[float],
                 beta: float = 0.98) -> None:
        super().__init__(snapshot)
        self.planned = lrs
        self.early_stop_threshold = early_stop_threshold
        self.beta = beta
        self.lrs: list = []
        self.losses: list = []
        self.avg_loss = 0.0
        self.best_loss = 0.0
        self.batches = 0
        self.diverged = False
        self._stepped = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_fit_start(trainer, pl_module)  # the snapshot, before the learning rate changes
        if len(trainer.optimizers) != 1:
            raise ValueError(f"lr_find: configure_optimizers returned {len(trainer.optimizers)} optimizers; the "
                             "learning-rate finder sweeps exactly one optimizer.")
        trainer.lr_scheduler_configs = []  # the sweep sets the learning rate; the user's schedulers would fight it
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = self.planned[0]

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        lr = self.planned[min(len(self.lrs), len(self.planned) - 1)]
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.lrs.append(lr)
        self._stepped = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.batches += 1
        if self._stepped:
            self._stepped = False
            self._record(trainer, outputs)
        # the planned steps are done; the batch count bounds a run whose training_step skips every batch
        if len(self.lrs) >= len(self.planned) or self.batches >= len(self.planned) * trainer.accumulate_grad_batches:
            trainer.should_stop = True

    def _record(self, trainer: Any, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            self.losses.append(float("nan"))  # a skipped batch: not used by the suggestion
            return
        value = float(loss.detach())  # a host sync per step: the sweep is short and needs the number now
        if not math.isfinite(value):
            self.losses.append(float("nan"))
            if self.early_stop_threshold is not None:
                trainer.should_stop = self.diverged = True  # the loss has blown up: past any useful rate
            return
        step = trainer.global_step
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * value
        smoothed = self.avg_loss / (1 - self.beta ** (step + 1))
        if self.early_stop_threshold is not None and step > 1 and smoothed > self.early_stop_threshold * self.best_loss:
            trainer.should_stop = self.diverged = True
        if smoothed < self.best_loss or step == 1:
            self.best_loss = smoothed
        self.losses.append(smoothed)


def _lr_attr_name(model: Any, attr_name: str, datamodule: Any) -> str:
    if attr_name:
        if not _attr_holders(model, attr_name, datamodule):
            raise AttributeError(f"lr_find(attr_name={attr_name!r}): no `{attr_name}` in `model.{attr_name}`, "
                                 f"`model.hparams.{attr_name}` or the datamodule. Store the learning rate there "
                                 "(e.g. `self.save_hyperparameters()`) or pass the right attr_name.")
        return attr_name
    for name in ("lr", "learning_rate"):
        if _attr_holders(model, name, datamodule):
            return name
    raise AttributeError(
        "lr_find(update_attr=True) writes the suggestion to the model, but found none of `model.lr`, "
        "`model.hparams.lr`, `model.learning_rate`, `model.hparams.learning_rate`. Store the learning rate there "
        "(e.g. an `lr` argument and `self.save_hyperparameters()`) and read it in configure_optimizers; pass "
        "attr_name=... for another name, or update_attr=False to only get the suggestion."
    )


def lr_find(trainer: Any, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Any = None, min_lr: float = 1e-8, max_lr: float = 1.0, num_training: int = 100,
            mode: str = "exponential", early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
            attr_name: str = "", in_fit: bool = False) -> Optional[_LRFinder]:
    """Run the sweep for ``trainer`` (``in_fit``: from a callback while ``trainer.fit`` runs) and return the
    ``_LRFinder``. See ``Tuner.lr_find`` for the arguments."""
    mode = mode.lower()
    finder = _LRFinder(mode, min_lr, max_lr, num_training, early_stop_threshold)  # checks the mode
    if not (0 < min_lr < max_lr):
        raise ValueError(f"lr_find(min_lr={min_lr}, max_lr={max_lr}) needs 0 < min_lr < max_lr.")
    if not isinstance(num_training, int) or num_training < 1:
        raise ValueError(f"lr_find(num_training={num_training!r}) must be an int >= 1.")
    if trainer.fast_dev_run:
        warnings.warn("Skipping the learning rate finder because Trainer(fast_dev_run) is set.", stacklevel=3)
        return None
    if in_fit:
        datamodule = trainer.datamodule
        if datamodule is None:
            train_dataloaders = trainer.train_dataloader
    if update_attr:
        attr_name = _lr_attr_name(model, attr_name, datamodule)

    snapshot = _Snapshot()
    snapshot.add_optimizers(trainer.optimizers, [c.scheduler for c in trainer.lr_scheduler_configs])
    sweep = _LRSweep(snapshot, _schedule(mode, min_lr, max_lr, num_training), early_stop_threshold)
    # as in Lightning, num_training replaces the Trainer's max_steps, and its max_epochs still bounds the sweep
    # (counted from the sweep's start here; Lightning counts the epochs the Trainer already ran)
    sweeper = trial_trainer(trainer, [sweep], max_epochs=trainer.max_epochs, max_steps=num_training,
                             limit_train_batches=trainer.limit_train_batches, overfit_batches=trainer.overfit_batches,
                             limit_val_batches=0)
    with _isolated(model, datamodule):
        try:
            with _lifecycle_once(model, datamodule, "fit", already_set_up=in_fit):
                sweeper.fit(model, train_dataloaders, val_dataloaders, datamodule)  # validation is off: limit 0
        finally:
            snapshot.restore(model)
    if sweep.diverged:
        log.info("LR finder stopped early after %d steps because the loss diverged.", len(sweep.lrs))
    elif len(sweep.lrs) < num_training and sweeper.current_epoch >= trainer.max_epochs >= 0:
        rank_zero_warn(
            f"lr_find(num_training={num_training}) ran {len(sweep.lrs)} steps: "
            f"Trainer(max_epochs={trainer.max_epochs}) ends the sweep after {trainer.max_epochs} epoch(s) of "
            f"{sweeper.num_training_batches} training batches. "
            "Raise max_epochs (or the data) on the Trainer you tune with, or lower num_training.", stacklevel=4)
    finder.results = {"lr": sweep.lrs, "loss": sweep.losses}
    finder._total_batch_idx = sweep.batches

    if update_attr:
        lr = finder.suggestion()
        if lr is not None:
            _set_attr(model, attr_name, lr, datamodule)
            for opt in trainer.optimizers:  # inside a running fit, the training continues with the suggestion
                for group in opt.param_groups:
                    group["lr"] = lr
            log.info("Learning rate set to %s", lr)
    return finder
