"""``lightning.pytorch.core.module``: LightningModule lives in ``ember.module``."""
from ember.module import LightningModule

__all__ = ["LightningModule"]
