"""``lightning.pytorch.callbacks.batch_size_finder``: BatchSizeFinder lives in finders.py."""
from ember.callbacks.finders import BatchSizeFinder

__all__ = ["BatchSizeFinder"]
