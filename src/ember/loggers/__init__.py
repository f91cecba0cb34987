"""Experiment loggers. ``CSVLogger`` needs nothing beyond ember's own dependencies.

Loggers backed by optional packages (TensorBoard, MLflow, W&B, ...) are imported only when used.
"""
from ember.loggers.csv_logs import CSVLogger
from ember.loggers.logger import Logger

__all__ = ["CSVLogger", "Logger"]

_NOT_YET = ("TensorBoardLogger", "MLFlowLogger", "WandbLogger", "CometLogger", "NeptuneLogger")


def __getattr__(name: str) -> object:
    if name in _NOT_YET:
        raise ImportError(f"{name} is not available yet in ember; use CSVLogger (ember.loggers.CSVLogger).",
                          name=name)
    raise AttributeError(f"module 'ember.loggers' has no attribute {name!r}")
