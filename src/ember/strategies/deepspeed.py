"""``lightning.pytorch.strategies.deepspeed``: not in ember."""
from ember.strategies import DeepSpeedStrategy

__all__ = ["DeepSpeedStrategy"]
