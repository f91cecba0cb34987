"""``LearningRateFinder`` and ``BatchSizeFinder``: the Tuner's searches as callbacks, run at ``on_fit_start``.

``on_fit_start`` comes after ``setup``, ``configure_model``, ``configure_optimizers`` and the first request
for dataloaders, so a search sees the model exactly as the fit will train it. The tuner package (and with
it any plotting) is imported only when a search runs.

Under several processes each rank searches on its own share of the data, and the ranks then agree, so that
none trains with other settings than the rest: every rank takes rank 0's learning rate (and its finder's
results, as Lightning broadcasts them), and the smallest batch size found on any rank.
"""
from __future__ import annotations

from typing import Any, Optional

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn


class LearningRateFinder(Callback):
    """Run the learning-rate range test when fit starts, then train with the suggestion.

    The sweep trains ``num_training_steps`` steps on a separate quiet Trainer, restores the weights and
    optimizer state, writes the suggested rate to ``model.lr``/``model.hparams.lr``/``learning_rate``
    (``update_attr``) and to the running optimizer's param groups. ``optimal_lr`` holds the finder object,
    as in Lightning: read ``optimal_lr.suggestion()``, ``optimal_lr.results``, ``optimal_lr.plot()``.

    >>> import ember
    >>> from ember.callbacks.finders import LearningRateFinder
    >>> trainer = ember.Trainer(callbacks=[LearningRateFinder(num_training_steps=50)], logger=False)
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"LearningRateFinder(mode={mode!r}) must be one of {self.SUPPORTED_MODES}.")
        self._min_lr = min_lr
        self._max_lr = max_lr
        self._num_training_steps = num_training_steps
        self._mode = mode
        self._early_stop_threshold = early_stop_threshold
        self._update_attr = update_attr
        self._attr_name = attr_name
        self.optimal_lr: Any = None  # the _LRFinder of the last search

    def lr_find(self, trainer: Any, pl_module: Any) -> None:
        """Run the search now, inside ``trainer``'s running fit (override a hook and call this to search later)."""
        from ember.tuner.lr_finder import lr_find

        self.optimal_lr = lr_find(trainer, pl_module, min_lr=self._min_lr, max_lr=self._max_lr,
                                  num_training=self._num_training_steps, mode=self._mode,
                                  early_stop_threshold=self._early_stop_threshold, update_attr=self._update_attr,
                                  attr_name=self._attr_name, in_fit=True)
        if trainer.world_size > 1:
            self._take_rank_zero_result(trainer, pl_module)

    def _take_rank_zero_result(self, trainer: Any, pl_module: Any) -> None:
        """Rank 0's finder, learning rates and ``lr`` attribute on every rank (one broadcast, on every rank)."""
        from ember.tuner._common import _get_attr, _set_attr
        from ember.tuner.lr_finder import _lr_attr_name

        datamodule = trainer.datamodule
        name = _lr_attr_name(pl_module, self._attr_name, datamodule) if self._update_attr else None
        mine = (self.optimal_lr, [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers],
                _get_attr(pl_module, name, datamodule) if name else None)
        self.optimal_lr, lrs, value = trainer.strategy.broadcast(mine)
        if name:
            _set_attr(pl_module, name, value, datamodule)
        for opt, group_lrs in zip(trainer.optimizers, lrs):
            for group, lr in zip(opt.param_groups, group_lrs):
                group["lr"] = lr

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)


class BatchSizeFinder(Callback):
    """Find the largest batch size that fits in memory when fit starts, then train with it.

    The model or datamodule must build its dataloaders from ``batch_arg_name`` (``model.batch_size``,
    ``model.hparams.batch_size``, ``datamodule.batch_size`` or ``datamodule.hparams.batch_size``); after
    the search the trainer asks them for new dataloaders. ``optimal_batch_size`` holds the size found.

    The search runs during fit only. ember's evaluation loops have their dataloaders in hand before
    ``on_validation_start``/``on_test_start``/``on_predict_start``, so for those use
    ``Tuner(trainer).scale_batch_size(model, method="test")`` before ``trainer.test``.

    >>> import ember
    >>> from ember.callbacks.finders import BatchSizeFinder
    >>> trainer = ember.Trainer(callbacks=[BatchSizeFinder(mode="binsearch")], logger=False)
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"BatchSizeFinder(mode={mode!r}) must be one of {self.SUPPORTED_MODES}.")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"BatchSizeFinder(margin={margin}) must be in [0, 1).")
        self.optimal_batch_size: Optional[int] = init_val
        self._mode = mode
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self._margin = margin
        self._max_val = max_val

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" and type(self).on_fit_start is BatchSizeFinder.on_fit_start:
            rank_zero_warn(f"BatchSizeFinder searches at the start of fit; Trainer.{stage}() runs with the batch size "
                           "as it is. Call `Tuner(trainer).scale_batch_size(model, method=...)` before it instead.",
                           stacklevel=3)

    def scale_batch_size(self, trainer: Any, pl_module: Any) -> None:
        """Run the search now, inside ``trainer``'s running fit, and give the trainer dataloaders of the new size."""
        from ember.tuner.batch_size_scaling import scale_batch_size

        train_source = trainer.data.sources.get("fit")
        owner = getattr(train_source, "__self__", None)  # a bound train_dataloader method, or None for a DataLoader
        if owner is None or owner not in (pl_module, trainer.datamodule):
            raise ValueError(
                "The batch size finder cannot be used with dataloaders passed directly to `.fit()`: it changes "
                f"`{self._batch_arg_name}` and asks for new dataloaders, which a DataLoader object cannot give. "
                "Build the DataLoader in your LightningModule's or LightningDataModule's `train_dataloader()` from "
                f"`self.{self._batch_arg_name}`, or remove the BatchSizeFinder callback."
            )
        self.optimal_batch_size = scale_batch_size(
            trainer, pl_module, mode=self._mode, steps_per_trial=self._steps_per_trial, init_val=self._init_val,
            max_trials=self._max_trials, batch_arg_name=self._batch_arg_name, margin=self._margin,
            max_val=self._max_val, in_fit=True)
        if trainer.world_size > 1 and self.optimal_batch_size is not None:
            # the size every rank can hold: the smallest found (a collective, on every rank)
            import torch

            from ember.tuner._common import _set_attr

            found = self.optimal_batch_size
            agreed = int(trainer.strategy.reduce(torch.tensor(found), reduce_op="min"))
            if agreed != found:
                _set_attr(pl_module, self._batch_arg_name, agreed, trainer.datamodule)
            self.optimal_batch_size = agreed
        # the running fit asked for its dataloaders before on_fit_start: ask again, now with the size found
        trainer.data.reload("fit")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)
