"""``lightning.pytorch.core.optimizer``: the optimizer wrapper ``self.optimizers()`` returns in manual optimization."""
from ember.trainer.optim import LightningOptimizer

__all__ = ["LightningOptimizer"]
