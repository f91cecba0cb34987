"""Callbacks: plain objects with named hook methods (see ``Callback``)."""
from ember.callbacks.callback import Callback
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.model_summary import ModelSummary
from ember.callbacks.progress import ProgressBar, TQDMProgressBar

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ModelSummary", "ProgressBar", "TQDMProgressBar"]
