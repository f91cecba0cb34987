"""``profiling``: one run under its profiler (setup, the report at the end), and the timed training DataLoader.

The Trainer hands the profiler to what it builds for the run (the hook table, the steps, the batch transfer, the
training loader, the optimizer step), each built already wrapped with ``Profiler.timed``; nothing is patched.
Without a profiler nothing is wrapped, so the hot path is untouched.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ember.profilers.base import PassThroughProfiler


class ProfiledLoader:
    """The training DataLoader as the loop sees it while profiling: each ``next`` is timed. Everything else
    (``dataset``, ``sampler``, ``len``) is the loader's own."""

    def __init__(self, loader: Any, profiler: Any, action: str) -> None:
        self._loader = loader
        self._profiler = profiler
        self._action = action

    def __iter__(self) -> Iterator:
        return _ProfiledIterator(iter(self._loader), self._profiler, self._action)

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_profiler", "_action"):
            raise AttributeError(name)
        return getattr(self._loader, name)


class _ProfiledIterator:
    def __init__(self, iterator: Iterator, profiler: Any, action: str) -> None:
        self._iterator = iterator
        self._start, self._stop = profiler.start, profiler.stop
        self._action = action

    def __iter__(self) -> "_ProfiledIterator":
        return self

    def __next__(self) -> Any:
        self._start(self._action)
        try:
            return next(self._iterator)
        finally:
            self._stop(self._action)


@contextlib.contextmanager
def profiling(trainer: Any, stage: str) -> Iterator[None]:
    """One run under ``trainer.profiler``: ``setup``, the profiler's own module instrumentation (PyTorchProfiler
    names submodules), then ``describe()`` (also when the run fails). A ``PassThroughProfiler`` does nothing."""
    profiler = getattr(trainer, "profiler", None)
    if profiler is None or isinstance(profiler, PassThroughProfiler):
        yield
        return
    profiler.setup(stage=stage, local_rank=trainer.local_rank, log_dir=trainer.log_dir)
    undo = profiler._instrument_module(trainer.lightning_module)
    try:
        yield
    finally:
        if undo is not None:
            undo()
        profiler.describe()
