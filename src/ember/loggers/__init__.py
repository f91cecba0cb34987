"""Experiment loggers. ``CSVLogger`` needs nothing beyond ember's own dependencies.

``TensorBoardLogger``, ``MLFlowLogger`` and ``WandbLogger`` are imported on first use of their name, and
each imports its library (tensorboard, mlflow, wandb) only when it first logs: ``import ember`` stays light.
"""
import importlib

from ember.loggers.csv_logs import CSVLogger
from ember.loggers.logger import Logger

__all__ = ["CSVLogger", "CometLogger", "LitLogger", "Logger", "MLFlowLogger", "NeptuneLogger", "TensorBoardLogger",
           "WandbLogger"]

_LAZY = {
    "TensorBoardLogger": "ember.loggers.tensorboard",
    "MLFlowLogger": "ember.loggers.mlflow",
    "WandbLogger": "ember.loggers.wandb",
}
_NOT_YET = {
    "CometLogger": "comet_ml",
    "LitLogger": "Lightning AI's hosted service",
    "NeptuneLogger": "neptune",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _NOT_YET:  # importable, so a program that imports but never builds one still runs
        from ember._missing import missing_class

        value = missing_class(f"loggers.{name}", f"ember has no logger for {_NOT_YET[name]} yet",
                              "CSVLogger, TensorBoardLogger, MLFlowLogger or WandbLogger (ember.loggers), or a "
                              "Logger subclass of your own")
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ember.loggers' has no attribute {name!r}")
