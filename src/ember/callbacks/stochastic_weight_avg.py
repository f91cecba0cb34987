"""``lightning.pytorch.callbacks.stochastic_weight_avg``: StochasticWeightAveraging lives in weight_averaging.py."""
from ember.callbacks.weight_averaging import StochasticWeightAveraging

__all__ = ["StochasticWeightAveraging"]
