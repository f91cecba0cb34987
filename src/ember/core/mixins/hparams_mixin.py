"""HyperparametersMixin: ``self.save_hyperparameters()`` and ``self.hparams`` on a class of your own, the same
methods LightningModule and LightningDataModule have."""
from __future__ import annotations

from ember._utils import AttributeDict
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

    @property
    def hparams_initial(self) -> AttributeDict:
        return AttributeDict(getattr(self, "_hparams_initial", {}))


__all__ = ["HyperparametersMixin"]
