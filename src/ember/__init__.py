"""ember: PyTorch Lightning's API, built to run as fast as a hand-written loop.

Port a Lightning program by changing ``import pytorch_lightning as pl`` to ``import ember as pl``.
Nothing heavy is imported here: loggers, the CLI and optional integrations load when used, and the
subpackages Lightning's root makes reachable (``pl.utilities``, ``pl.plugins``, ``pl.strategies``...) are
imported on first attribute access.
"""
import importlib as _importlib
from typing import Any as _Any

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
    "Fabric",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "callbacks",
    "cli_lightning_logo",
    "loggers",
    "seed_everything",
]

LIGHTNING_LOGO = """
                    ####
                ###########
             ####################
         ############################
    #####################################
    #####################################
         ############################
             ####################
                  ##########
                     ####
"""


def cli_lightning_logo() -> None:
    """Print the Lightning logo (in magenta on a terminal), as Lightning's example scripts do at startup."""
    print()
    print("\033[0;35m" + LIGHTNING_LOGO + "\033[0m")
    print()


_SUBMODULES = ("accelerators", "cli", "core", "demos", "plugins", "profilers", "strategies", "trainer", "tuner",
               "utilities")


def __getattr__(name: str) -> _Any:
    if name in _SUBMODULES:  # `pl.utilities.rank_zero_only` without importing it first, as with Lightning
        return _importlib.import_module(f"ember.{name}")
    if name == "disable_possible_user_warnings":
        from ember.utilities import disable_possible_user_warnings

        return disable_possible_user_warnings
    if name in ("Fabric", "fabric"):  # `L.Fabric` in `import lightning as L` programs; loaded when first used
        fabric = _importlib.import_module("ember.fabric")
        return fabric if name == "fabric" else fabric.Fabric
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
