"""``lightning.pytorch.core.datamodule``: LightningDataModule lives in ``ember.datamodule``."""
from ember.datamodule import LightningDataModule

__all__ = ["LightningDataModule"]
