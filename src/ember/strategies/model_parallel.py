"""``lightning.pytorch.strategies.model_parallel``: not in ember."""
from ember.strategies import ModelParallelStrategy

__all__ = ["ModelParallelStrategy"]
