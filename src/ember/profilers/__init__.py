"""Profilers: where a run spends its time, one named *action* at a time.

``Trainer(profiler="simple" | "advanced" | "pytorch" | Profiler())`` times the training step,
backward, the optimizer step, the data fetch and every hook, with Lightning's action names
(``[Strategy]SingleDeviceStrategy.training_step``, ``[Callback]ModelCheckpoint.on_train_batch_end``,
``[_TrainingEpochLoop].train_dataloader_next``, ...), and prints (or writes) a report at the end.

How it stays free when unused: the Trainer hands the profiler to what it builds for a run (the hook table,
the steps, the batch transfer, the training loader, the optimizer step), which come already wrapped with
``Profiler.timed``. With no profiler (``PassThroughProfiler``) nothing is wrapped: the hot path is untouched.

>>> import ember
>>> trainer = ember.Trainer(profiler=SimpleProfiler(filename="perf_logs"))  # doctest: +SKIP
>>> # ... after fit: <log_dir>/fit-perf_logs.txt holds the table

Your own code can time a block too, with or without a profiler configured:

>>> with trainer.profiler.profile("load_extra_data"):  # doctest: +SKIP
...     data = load()
"""
from __future__ import annotations

from typing import Any, Union

from ember.profilers._instrument import profiling
from ember.profilers.advanced import AdvancedProfiler
from ember.profilers.base import PassThroughProfiler
from ember.profilers.profiler import Profiler
from ember.profilers.pytorch import PyTorchProfiler
from ember.profilers.simple import SimpleProfiler

__all__ = [
    "AdvancedProfiler",
    "PassThroughProfiler",
    "Profiler",
    "PyTorchProfiler",
    "SimpleProfiler",
    "XLAProfiler",
    "profiling",
    "resolve_profiler",
]

_BY_NAME: dict[str, type] = {"simple": SimpleProfiler, "advanced": AdvancedProfiler, "pytorch": PyTorchProfiler}


def resolve_profiler(value: Union[str, Profiler, None]) -> Profiler:
    """What ``Trainer(profiler=value)`` uses: a Profiler object, built from a name if need be.

    ``None`` gives a ``PassThroughProfiler``, so that ``trainer.profiler.profile(...)`` works in user code as in
    Lightning; the Trainer instruments nothing for it.

    >>> type(resolve_profiler("simple")).__name__
    'SimpleProfiler'
    """
    if value is None:
        return PassThroughProfiler()
    if isinstance(value, Profiler):
        return value
    if isinstance(value, str):
        cls = _BY_NAME.get(value.lower())
        if cls is None:
            raise ValueError(f"Trainer(profiler={value!r}) is not a profiler name; use one of 'simple', 'advanced' "
                             "or 'pytorch', or pass a Profiler object such as SimpleProfiler(filename='perf_logs').")
        return cls()
    raise TypeError(f"Trainer(profiler=...) got a {type(value).__name__}; pass 'simple', 'advanced', 'pytorch', "
                    "a Profiler object (from ember.profilers) or None.")


def __getattr__(name: str) -> Any:
    if name == "XLAProfiler":  # importable for ported programs; constructing it says what to use
        from ember._missing import missing_class

        globals()[name] = cls = missing_class("profilers.XLAProfiler", "ember does not run on TPUs (XLA)",
                                              "Trainer(profiler='pytorch') (PyTorchProfiler) or 'simple'")
        return cls
    raise AttributeError(f"module 'ember.profilers' has no attribute {name!r}")
