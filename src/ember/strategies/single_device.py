"""``lightning.pytorch.strategies.single_device``."""
from ember.strategies.strategy import SingleDeviceStrategy

__all__ = ["SingleDeviceStrategy"]
