"""LightningDataModule: everything about a data set in one class."""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Optional, Union

from ember._hparams import load_from_checkpoint as _load_from_checkpoint, save_hyperparameters as _save_hparams
from ember._hparams import snapshot as _snapshot
from ember._utils import AttributeDict


class LightningDataModule:
    """Download, split and serve the data: ``prepare_data``, ``setup(stage)`` and the ``*_dataloader`` methods.

    >>> import torch, ember
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> class Ones(ember.LightningDataModule):
    ...     def setup(self, stage):
    ...         self.data = TensorDataset(torch.ones(8, 2), torch.ones(8, 1))
    ...     def train_dataloader(self):
    ...         return DataLoader(self.data, batch_size=4)
    """

    def __init__(self) -> None:
        self.trainer: Any = None
        self._hparams = AttributeDict()
        self._hparams_initial = AttributeDict()

    def prepare_data(self) -> None:
        """Download or write data; runs once per machine before ``setup``."""

    def setup(self, stage: str) -> None:
        """Build data sets for ``stage`` ('fit', 'validate', 'test' or 'predict')."""

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError

    def val_dataloader(self) -> Any:
        raise NotImplementedError

    def test_dataloader(self) -> Any:
        raise NotImplementedError

    def predict_dataloader(self) -> Any:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """State to keep in checkpoints (plain data and tensors only)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` returned."""

    def save_hyperparameters(self, *args: Any, ignore: Union[str, Iterable[str], None] = None,
                             frame: Any = None, logger: bool = True) -> None:
        """Record the ``__init__`` arguments in ``self.hparams`` and in checkpoints, as
        ``LightningModule.save_hyperparameters`` does (values kept as given)."""
        _save_hparams(self, args, ignore, frame or inspect.currentframe().f_back)
        self._log_hyperparams = logger

    @property
    def hparams(self) -> AttributeDict:
        if not hasattr(self, "_hparams"):
            self._hparams = AttributeDict()
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """The hyperparameters as first saved (a copy: changing it changes nothing)."""
        return _snapshot(getattr(self, "_hparams_initial", {}))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             weights_only: Optional[bool] = None, import_objects: Optional[bool] = None,
                             **kwargs: Any) -> "LightningDataModule":
        """Build the data module from the checkpoint's ``datamodule_hyper_parameters`` and restore its
        ``state_dict``, with the rules of ``LightningModule.load_from_checkpoint`` (keywords win, then stored
        values, then defaults; ``import_objects``/``weights_only`` as there)."""
        datamodule, checkpoint = _load_from_checkpoint(
            cls, checkpoint_path, map_location, hparams_file, weights_only, import_objects, kwargs,
            "datamodule_hyper_parameters", "datamodule_hparams_name")
        state = checkpoint.get(cls.__qualname__)
        if state:
            datamodule.load_state_dict(state)
        return datamodule

    @classmethod
    def from_datasets(cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
                      predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0,
                      **dataloader_kwargs: Any) -> "LightningDataModule":
        """A data module serving the given data sets (only the training loader shuffles)."""
        from torch.utils.data import DataLoader

        def loader(ds: Any, shuffle: bool) -> Optional[DataLoader]:
            return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                              **dataloader_kwargs)

        dm = cls()
        if train_dataset is not None:
            dm.train_dataloader = lambda: loader(train_dataset, True)  # type: ignore[method-assign]
        if val_dataset is not None:
            dm.val_dataloader = lambda: loader(val_dataset, False)  # type: ignore[method-assign]
        if test_dataset is not None:
            dm.test_dataloader = lambda: loader(test_dataset, False)  # type: ignore[method-assign]
        if predict_dataset is not None:
            dm.predict_dataloader = lambda: loader(predict_dataset, False)  # type: ignore[method-assign]
        return dm
