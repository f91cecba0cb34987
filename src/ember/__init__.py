"""ember: PyTorch Lightning's API, built to run as fast as a hand-written loop.

Port a Lightning program by changing ``import pytorch_lightning as pl`` to ``import ember as pl``.
Nothing heavy is imported here: loggers, the CLI and optional integrations load when used.
"""
from ember.__about__ import __version__
from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer
from ember import callbacks, loggers  # noqa: E402  (light: the heavy parts inside load lazily)

DataModule = LightningDataModule  # the name the introductory articles use

__all__ = [
    "Callback",
    "DataModule",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "callbacks",
    "loggers",
    "seed_everything",
]
