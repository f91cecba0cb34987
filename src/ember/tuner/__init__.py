"""Tuning before training: ``Tuner(trainer).lr_find(model)`` and ``Tuner(trainer).scale_batch_size(model)``.

Imported only when used (``import ember`` does not load it, nor matplotlib).
"""
from ember.tuner.tuning import Tuner

__all__ = ["Tuner"]
