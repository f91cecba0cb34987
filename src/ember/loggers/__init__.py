"""Experiment loggers. ``CSVLogger`` needs nothing beyond ember's own dependencies.

``TensorBoardLogger``, ``MLFlowLogger`` and ``WandbLogger`` are imported on first use of their name, and
each imports its library (tensorboard, mlflow, wandb) only when it first logs: ``import ember`` stays light.
"""
import importlib

from ember.loggers.csv_logs import CSVLogger
from ember.loggers.logger import Logger

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]

_LAZY = {
    "TensorBoardLogger": "ember.loggers.tensorboard",
    "MLFlowLogger": "ember.loggers.mlflow",
    "WandbLogger": "ember.loggers.wandb",
}
_NOT_YET = ("CometLogger", "LitLogger", "NeptuneLogger")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _NOT_YET:
        raise ImportError(f"{name} is not available yet in ember; use CSVLogger, TensorBoardLogger, MLFlowLogger "
                          "or WandbLogger (ember.loggers).", name=name)
    raise AttributeError(f"module 'ember.loggers' has no attribute {name!r}")
