"""HyperparametersMixin: ``self.save_hyperparameters()`` and ``self.hparams`` on a class of your own, the same
methods LightningModule and LightningDataModule have."""
from __future__ import annotations

from ember.datamodule import LightningDataModule


class HyperparametersMixin:
    """Give a plain class ``save_hyperparameters``, ``hparams`` and ``hparams_initial``.

    >>> class Encoder(HyperparametersMixin):
    ...     def __init__(self, width: int = 8):
    ...         self.save_hyperparameters()
    >>> Encoder(16).hparams.width
    16
    """

    save_hyperparameters = LightningDataModule.save_hyperparameters  # the same code as the data module's
    hparams = LightningDataModule.hparams
    hparams_initial = LightningDataModule.hparams_initial


__all__ = ["HyperparametersMixin"]
