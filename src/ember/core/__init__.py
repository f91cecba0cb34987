"""``lightning.pytorch.core``: the LightningModule and LightningDataModule (the same classes as ``ember.X``)."""
from ember.datamodule import LightningDataModule
from ember.module import LightningModule

__all__ = ["LightningDataModule", "LightningModule"]
