"""The ``Logger`` base class: what the Trainer calls on every experiment logger; and, as in Lightning,
``rank_zero_experiment`` and ``DummyExperiment``, which keep every process but global rank 0 from writing.

Under several processes the Trainer calls each logger on every rank, and a logger writes on rank 0 only:
its writing methods are decorated with ``@rank_zero_only`` and its ``experiment`` property with
``@rank_zero_experiment``, which gives other ranks a ``DummyExperiment`` that accepts any call. A custom
logger does the same (see ``Logger``).
"""
from __future__ import annotations

import argparse
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional, Union

from ember.utilities.rank_zero import rank_zero_only

__all__ = ["DummyExperiment", "Logger", "rank_zero_experiment", "rank_zero_only"]


class DummyExperiment:
    """What ``logger.experiment`` is on ranks other than 0: every attribute, call, item and iteration is a
    no-op that returns the dummy again, so ``self.logger.experiment.add_image(...)`` or
    ``experiment.config.update(...)`` run on every rank and write once.

    >>> experiment = DummyExperiment()
    >>> experiment.add_image("x", None, 0) is experiment, experiment[0].log({"a": 1}) is experiment
    (True, True)
    """

    def nop(self, *args: Any, **kwargs: Any) -> "DummyExperiment":
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # copy/pickle protocols look these up
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> "DummyExperiment":
        return self

    def __getitem__(self, idx: Any) -> "DummyExperiment":  # enables experiment[0].add_image(...)
        return self

    def __setitem__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __enter__(self) -> "DummyExperiment":
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def __repr__(self) -> str:
        return "DummyExperiment()"


def rank_zero_experiment(fn: Callable) -> Callable:
    """Decorate a logger's ``experiment`` (under ``@property``): the real object on global rank 0, a
    ``DummyExperiment`` on every other rank, where ``fn`` never runs (so it creates no run, file or folder).

    >>> class MyLogger(Logger):
    ...     name, version = "mine", 0
    ...     @property
    ...     @rank_zero_experiment
    ...     def experiment(self):
    ...         return "the real writer"
    ...     @rank_zero_only
    ...     def log_metrics(self, metrics, step=None):
    ...         print(step, metrics)
    ...     @rank_zero_only
    ...     def log_hyperparams(self, params, *args, **kwargs):
    ...         pass
    >>> MyLogger().experiment
    'the real writer'
    """

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]
            return DummyExperiment()
        return fn(self)

    return experiment


class Logger(ABC):
    """Base class of experiment loggers. Subclasses implement ``name``, ``version``,
    ``log_metrics`` and ``log_hyperparams``; everything else has a sensible default.

    Under several processes the Trainer calls the logger on every rank (``after_save_checkpoint`` on rank 0
    only). As in Lightning, a logger that should write once decorates its writing methods with
    ``@rank_zero_only`` (``ember.utilities.rank_zero``) and its ``experiment`` property with
    ``@rank_zero_experiment``; ember's own loggers do. Properties (``version``, ``log_dir``) must not create
    anything on ranks other than 0: every rank reads them. (ember's CSV and TensorBoard loggers create their
    ``version_{n}`` folder on rank 0 when the version is first read: that is how a version is claimed.)

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


def log_hyperparams(loggers: list, module: Any, datamodule: Any = None) -> None:
    """As Lightning at the start of every run (fit, validate, test, predict; the Trainer passes no loggers with
    ``enable_autolog_hparams=False``): the module's and datamodule's hyperparameters to every logger (unless
    ``save_hyperparameters(logger=False)``), then the model graph."""
    if not loggers:
        return
    from ember._hparams import hparams_to_log

    from_module = getattr(module, "_log_hyperparams", True)
    from_dm = datamodule is not None and getattr(datamodule, "_log_hyperparams", True)
    params = hparams_to_log(module, datamodule)  # hparams_initial, merged; a clash between the two raises
    for lg in loggers:
        if from_module or from_dm:
            lg.log_hyperparams(params)
        lg.log_graph(module)  # a no-op unless the logger draws graphs (TensorBoardLogger(log_graph=True))
        lg.save()


def agree_on_logger_versions(strategy: Any, loggers: list) -> None:
    """Under torch.distributed every rank uses rank 0's logger versions, so that paths built from them
    (checkpoints) agree."""
    versions = strategy.broadcast([lg.version if hasattr(lg, "_version") else None for lg in loggers])
    for lg, version in zip(loggers, versions):
        if version is not None:
            lg._version = version
