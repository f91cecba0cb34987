"""``Profiler``: the base class every profiler implements (``start``/``stop``/``summary``), and the report file."""
from __future__ import annotations

import contextlib
import functools
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Optional, Union

import torch


class Profiler(ABC):
    """Base class: ``start(action)`` / ``stop(action)`` record one action; ``summary()`` reports them.

    Args:
        dirpath: folder of the report file; by default the trainer's ``log_dir``.
        filename: write the report to ``dirpath/{stage}-{filename}.txt`` (e.g. ``fit-perf_logs.txt``)
            instead of printing it.
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None) -> None:
        self.dirpath = os.fspath(dirpath) if dirpath is not None else None
        self.filename = filename
        self._stage: Optional[str] = None
        self._local_rank: Optional[int] = None

    @abstractmethod
    def start(self, action_name: str) -> None:
        """Start recording ``action_name``."""

    @abstractmethod
    def stop(self, action_name: str) -> None:
        """Stop recording ``action_name``."""

    @abstractmethod
    def summary(self) -> str:
        """The report of everything recorded so far."""

    @contextlib.contextmanager
    def profile(self, action_name: str) -> Iterator[str]:
        """Time the ``with`` block as ``action_name``."""
        self.start(action_name)
        try:
            yield action_name
        finally:
            self.stop(action_name)

    def timed(self, fn: Callable, action_name: str) -> Callable:
        """``fn`` wrapped so that each call is recorded as ``action_name`` (the Trainer builds a profiled run's
        steps and hooks with it)."""
        start, stop = self.start, self.stop

        @functools.wraps(fn)  # keeps the signature, which the Trainer inspects (adapt_step)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start(action_name)
            try:
                return fn(*args, **kwargs)
            finally:
                stop(action_name)

        return timed

    def timed_loader(self, loader: Any, action_name: str) -> Any:
        """``loader`` with each batch fetched recorded as ``action_name``; everything else is the loader's."""
        from ember.profilers._instrument import ProfiledLoader

        return ProfiledLoader(loader, self, action_name)

    def setup(self, stage: str, local_rank: Optional[int] = None, log_dir: Optional[str] = None) -> None:
        """Called by the Trainer when a run starts: ``stage`` is 'fit', 'validate', 'test' or 'predict'."""
        self._stage = stage
        self._local_rank = local_rank
        self.dirpath = self.dirpath or log_dir

    def teardown(self, stage: Optional[str]) -> None:
        """Called after ``describe()`` at the end of a run: release what the run held."""

    def describe(self) -> None:
        """Print the summary, or write it to ``dirpath/{stage}-{filename}.txt`` when ``filename`` is set."""
        try:
            text = self.summary()
            if text:
                if self.filename:
                    with open(self._output_path(), "a", encoding="utf-8") as f:  # appended, as Lightning does
                        f.write(text + "\n")
                elif self._local_rank in (None, 0):
                    print(text)
        finally:
            self.teardown(self._stage)

    def _output_path(self, extension: str = ".txt", default: str = "profile") -> str:
        """``dirpath/{stage}-[{local_rank}-]{filename}{extension}`` (Lightning's file names); makes the folder."""
        parts = [self._stage] if self._stage else []
        if self._local_rank not in (None, 0):
            parts.append(str(self._local_rank))
        parts.append(self.filename or default)
        path = os.path.join(self.dirpath or os.getcwd(), "-".join(parts) + extension)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def _header(self) -> str:
        return f"{self._stage.upper()} Profiler Report" if self._stage else "Profiler Report"

    def _instrument_module(self, module: torch.nn.Module) -> Optional[Callable[[], None]]:
        """Extra instrumentation of the module for one run (PyTorchProfiler names submodules); returns an undo."""
        return None
