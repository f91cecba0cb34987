"""The ``Logger`` base class: what the Trainer calls on every experiment logger."""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Optional, Union


class Logger(ABC):
    """Base class of experiment loggers. Subclasses implement ``name``, ``version``,
    ``log_metrics`` and ``log_hyperparams``; everything else has a sensible default.

    >>> class PrintLogger(Logger):
    ...     name = "print"
    ...     version = 0
    ...     def log_metrics(self, metrics, step=None):
    ...         print(step, metrics)
    ...     def log_hyperparams(self, params, *args, **kwargs):
    ...         print(dict(params))
    >>> PrintLogger().log_metrics({"loss": 0.5}, step=3)
    3 {'loss': 0.5}
    """

    @property
    @abstractmethod
    def name(self) -> Optional[str]:
        """The experiment name (the folder under ``save_dir`` for file-based loggers)."""

    @property
    @abstractmethod
    def version(self) -> Optional[Union[int, str]]:
        """The experiment version: an int (``version_{n}``) or a name."""

    @property
    def save_dir(self) -> Optional[str]:
        """The folder that holds every experiment, or None when the logger writes no files."""
        return None

    @property
    def root_dir(self) -> Optional[str]:
        """The folder that holds every version of this experiment."""
        return None

    @property
    def log_dir(self) -> Optional[str]:
        """The folder of this version's files."""
        return None

    @property
    def experiment(self) -> Any:
        """The backend object that receives the data (a writer, a run, ...), or None."""
        return None

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Record scalar ``metrics`` at ``step`` (the number of optimizer steps taken)."""

    @abstractmethod
    def log_hyperparams(self, params: Union[dict[str, Any], argparse.Namespace], *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model's computational graph; loggers that cannot show one ignore it."""

    def save(self) -> None:
        """Write anything still buffered."""

    def finalize(self, status: str) -> None:
        """Called once when the run ends with ``status`` ("success", "failed", ...): saves by default."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called after ``ModelCheckpoint`` writes a file; loggers that upload checkpoints hook in here."""


def _params_to_dict(params: Union[Mapping[str, Any], argparse.Namespace, None]) -> dict[str, Any]:
    """Hyperparameters as a plain ``dict`` (an ``argparse.Namespace`` becomes its ``vars()``)."""
    if params is None:
        return {}
    if isinstance(params, argparse.Namespace):
        return dict(vars(params))
    return dict(params)
