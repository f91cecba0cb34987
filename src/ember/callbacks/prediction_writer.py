"""BasePredictionWriter: write predictions to disk as ``trainer.predict`` produces them."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from ember.callbacks.callback import Callback

_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class BasePredictionWriter(Callback):
    """Subclass it and override ``write_on_batch_end`` (``write_interval="batch"``), ``write_on_epoch_end``
    (``"epoch"``) or both (``"batch_and_epoch"``).

    ``batch_indices`` are the dataset indices of the samples in the batch, read from the DataLoader's batch
    sampler; they are None when the loader has no batch sampler (an IterableDataset, or ``batch_size=None``).
    For ``"epoch"`` the writer keeps every prediction itself, so ``trainer.predict(...,
    return_predictions=False)`` still hands them to ``write_on_epoch_end`` (a list of batch outputs, or one
    such list per dataloader when there are several; ``batch_indices`` is always one list per dataloader).

    >>> import os, torch
    >>> from ember.callbacks.prediction_writer import BasePredictionWriter
    >>> class TorchWriter(BasePredictionWriter):
    ...     def __init__(self, output_dir):
    ...         super().__init__(write_interval="epoch")
    ...         self.output_dir = output_dir
    ...     def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
    ...         torch.save(predictions, os.path.join(self.output_dir, "predictions.pt"))
    ...         torch.save(batch_indices, os.path.join(self.output_dir, "batch_indices.pt"))
    >>> # trainer = ember.Trainer(callbacks=[TorchWriter("out")])
    >>> # trainer.predict(model, loader, return_predictions=False)
    """

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in _INTERVALS:
            raise ValueError(f"BasePredictionWriter(write_interval={write_interval!r}) must be one of {_INTERVALS}.")
        self.interval = write_interval
        self._recorders: list = []  # (loader, its own batch sampler, our recording wrapper), restored at the end
        self._predictions: list = []
        self._epoch_indices: list = []

    @property
    def write_interval(self) -> str:
        return self.interval

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        """Override with the logic to write one batch's prediction."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval!r}) must override "
                                  "write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, "
                                  "batch_idx, dataloader_idx).")

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        """Override with the logic to write all the predictions of the epoch."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval!r}) must override "
                                  "write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices).")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, list) else [loaders]
        self._recorders = [_record_indices(loader) for loader in loaders]
        self._predictions = [[] for _ in loaders]
        self._epoch_indices = [[] for _ in loaders]

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        recorder = self._recorders[dataloader_idx] if dataloader_idx < len(self._recorders) else None
        indices = recorder[2].seen[batch_idx] if recorder is not None and batch_idx < len(recorder[2].seen) else None
        if self.interval != "batch":
            self._predictions[dataloader_idx].append(outputs)
            self._epoch_indices[dataloader_idx].append(indices)
        if self.interval != "epoch":
            self.write_on_batch_end(trainer, pl_module, outputs, indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.interval == "batch":
            return
        predictions = self._predictions[0] if len(self._predictions) == 1 else self._predictions
        self.write_on_epoch_end(trainer, pl_module, predictions, self._epoch_indices)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()
        self._predictions, self._epoch_indices = [], []

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._restore()  # after an exception, too

    def _restore(self) -> None:
        for recorder in self._recorders:
            if recorder is not None:
                loader, original, _ = recorder
                object.__setattr__(loader, "batch_sampler", original)
        self._recorders = []


class _RecordingBatchSampler:
    """Wraps a DataLoader's batch sampler and keeps the indices of every batch it yields, in order; workers
    receive batches in this order and the loader returns them in it, so ``seen[batch_idx]`` is that batch's."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.sampler = getattr(batch_sampler, "sampler", None)
        self.seen: list = []

    def __iter__(self) -> Any:
        self.seen = []
        for indices in self.batch_sampler:
            self.seen.append(list(indices))
            yield indices

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __getattr__(self, name: str) -> Any:
        if name == "batch_sampler":
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


def _record_indices(loader: Any) -> Optional[tuple]:
    """Swap in a recording batch sampler for the duration of ``predict`` (DataLoader forbids assigning the
    attribute, hence ``object.__setattr__``; the original is put back in ``on_predict_end``/``teardown``)."""
    original = getattr(loader, "batch_sampler", None)
    if original is None or isinstance(original, _RecordingBatchSampler) or isinstance(
            getattr(loader, "dataset", None), torch.utils.data.IterableDataset):  # no indices to report
        return None
    recorder = _RecordingBatchSampler(original)
    object.__setattr__(loader, "batch_sampler", recorder)
    return loader, original, recorder
