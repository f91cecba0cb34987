"""``Tuner``: Lightning's entry point for the learning-rate finder and the batch-size finder."""
from __future__ import annotations

from typing import Any, Optional

from ember.tuner.lr_finder import _LRFinder


class Tuner:
    """Tune a model's learning rate or batch size with the settings of ``trainer`` (device, precision,
    accumulation, clipping). The trainer itself is left as it was: the searches run on a separate quiet
    Trainer, and the model's weights and optimizer states are restored afterwards.

    >>> import ember
    >>> from ember.tuner import Tuner
    >>> tuner = Tuner(ember.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False))
    >>> # finder = tuner.lr_find(model); finder.suggestion(); finder.plot(suggest=True)
    >>> # tuner.scale_batch_size(model, mode="binsearch")
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def lr_find(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: Any = None, method: str = "fit", min_lr: float = 1e-8,
                max_lr: float = 1, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
                attr_name: str = "") -> Optional[_LRFinder]:
        """Train ``num_training`` steps (within the Trainer's ``max_epochs``) while the learning rate grows from
        ``min_lr`` to ``max_lr`` (``mode`` "exponential" or "linear"), stopping early once the smoothed loss exceeds
        ``early_stop_threshold`` times its best value (None: never). Returns the ``_LRFinder`` with
        ``results``, ``suggestion()`` and ``plot()``; with ``update_attr`` the suggestion is written to
        ``attr_name`` or the first of ``lr``/``learning_rate`` found on the model, its hparams or the datamodule.
        """
        if method != "fit":
            raise ValueError(f"Tuner.lr_find(method={method!r}): the learning rate finder trains, so method='fit' "
                             "is the only valid value.")
        train_dataloaders, datamodule = _check_data("lr_find", method, train_dataloaders, val_dataloaders,
                                                    dataloaders, datamodule)
        self._check_no_callback("LearningRateFinder", "lr_find")
        from ember.tuner.lr_finder import lr_find

        return lr_find(self._trainer, model, train_dataloaders, val_dataloaders, datamodule, min_lr=min_lr,
                       max_lr=max_lr, num_training=num_training, mode=mode,
                       early_stop_threshold=early_stop_threshold, update_attr=update_attr, attr_name=attr_name)

    def scale_batch_size(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: Any = None, method: str = "fit", mode: str = "power",
                         steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size", margin: float = 0.05,
                         max_val: int = 8192) -> Optional[int]:
        """Find the largest batch size for which ``steps_per_trial`` steps of ``method`` run without running
        out of memory, starting at ``init_val``: ``mode="power"`` doubles until a failure; ``"binsearch"``
        then bisects, and takes ``margin`` off the result. At most ``max_trials`` trials and ``max_val``.
        The size found is returned and written to ``batch_arg_name`` (on the model, its hparams or the
        datamodule); the dataloaders must be built from it in ``*_dataloader()``.
        """
        train_dataloaders, datamodule = _check_data("scale_batch_size", method, train_dataloaders,
                                                    val_dataloaders, dataloaders, datamodule)
        self._check_no_callback("BatchSizeFinder", "scale_batch_size")
        from ember.tuner.batch_size_scaling import scale_batch_size

        return scale_batch_size(self._trainer, model, train_dataloaders, val_dataloaders, dataloaders, datamodule,
                                method=method, mode=mode, steps_per_trial=steps_per_trial, init_val=init_val,
                                max_trials=max_trials, batch_arg_name=batch_arg_name, margin=margin, max_val=max_val)

    def _check_no_callback(self, name: str, method: str) -> None:
        from ember.callbacks import finders

        kind = getattr(finders, name)
        if any(isinstance(cb, kind) for cb in self._trainer.callbacks):
            raise ValueError(f"The Trainer already has a `{name}` callback, which runs the same search at the start "
                             f"of fit. Remove it from Trainer(callbacks=...) to use Tuner.{method}().")


def _check_data(fn: str, method: str, train: Any, val: Any, loaders: Any, datamodule: Any) -> tuple:
    from ember.datamodule import LightningDataModule

    if method not in ("fit", "validate", "test", "predict"):
        raise ValueError(f"Tuner.{fn}(method={method!r}) must be one of 'fit', 'validate', 'test', 'predict'.")
    if isinstance(train, LightningDataModule):
        train, datamodule = None, train
    if method == "fit" and loaders is not None:
        raise ValueError(f"Tuner.{fn}(method='fit') takes `train_dataloaders` and `val_dataloaders`, not "
                         "`dataloaders`.")
    if method != "fit" and (train is not None or val is not None):
        raise ValueError(f"Tuner.{fn}(method={method!r}) takes `dataloaders`, not `train_dataloaders` or "
                         "`val_dataloaders`.")
    return train, datamodule
