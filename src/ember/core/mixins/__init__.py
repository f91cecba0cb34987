"""``lightning.pytorch.core.mixins``: ``save_hyperparameters`` for any class."""
from ember.core.mixins.hparams_mixin import HyperparametersMixin

__all__ = ["HyperparametersMixin"]
