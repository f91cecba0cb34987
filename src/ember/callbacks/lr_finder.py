"""``lightning.pytorch.callbacks.lr_finder``: LearningRateFinder lives in finders.py."""
from ember.callbacks.finders import LearningRateFinder

__all__ = ["LearningRateFinder"]
