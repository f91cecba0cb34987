"""``PyTorchProfiler``: ``torch.profiler`` operator times per action, a table and a Chrome trace."""
from __future__ import annotations

import functools
import inspect
import os
from collections import defaultdict
from typing import Any, Callable, Optional, Union

import torch

from ember.profilers.profiler import Profiler

_SORT_KEYS = ("cpu_time", "cuda_time", "device_time", "cpu_time_total", "cuda_time_total", "device_time_total",
              "self_cpu_time_total", "self_cuda_time_total", "self_device_time_total", "cpu_memory_usage",
              "cuda_memory_usage", "device_memory_usage", "self_cpu_memory_usage", "self_cuda_memory_usage",
              "self_device_memory_usage", "count")
_STEP_SUFFIXES = (".training_step", ".validation_step", ".test_step", ".predict_step")


class PyTorchProfiler(Profiler):
    """``torch.profiler``: operator-level CPU (and CUDA) times, each action a ``record_function`` range,
    a ``key_averages()`` table as the summary and a Chrome trace (``chrome://tracing``, Perfetto) file.

    Args:
        dirpath, filename: see ``Profiler``; the trace is ``dirpath/{stage}-{filename}.pt.trace.json``.
        group_by_input_shapes: one table row per operator and input shape (needs ``record_shapes=True``).
        export_to_chrome: write the Chrome trace.
        row_limit: rows of the summary table (-1: all).
        sort_by_key: the table's sort column; ``device_time_total`` with CUDA, else ``cpu_time_total``.
        record_module_names: a range per submodule forward, named ``[pl][module]<type>: <name>``.
        schedule: a ``torch.profiler.schedule``; the profiler steps after every ``*_step`` action and writes one
            trace per recorded cycle (``...-{cycle}.pt.trace.json``); the table sums the recorded cycles.
        table_kwargs: more arguments of ``EventList.table``.
        **profiler_kwargs: passed to ``torch.profiler.profile`` (``activities``, ``record_shapes``,
            ``profile_memory``, ``with_stack``, ``with_flops``, ...).
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None,
                 group_by_input_shapes: bool = False, export_to_chrome: bool = True, row_limit: int = 20,
                 sort_by_key: Optional[str] = None, record_module_names: bool = True, schedule: Any = None,
                 table_kwargs: Optional[dict] = None, **profiler_kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        activities = profiler_kwargs.pop("activities", None)
        if activities is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
        uses_device = any(a != torch.profiler.ProfilerActivity.CPU for a in activities)
        self.sort_by_key = sort_by_key or ("device_time_total" if uses_device else "cpu_time_total")
        if self.sort_by_key not in _SORT_KEYS:
            raise ValueError(f"PyTorchProfiler(sort_by_key={sort_by_key!r}) is not a column of the table; use one of "
                             f"{', '.join(_SORT_KEYS)}.")
        if "on_trace_ready" in profiler_kwargs:
            raise ValueError("PyTorchProfiler(on_trace_ready=...) is not supported: the profiler writes the Chrome "
                             "trace itself (export_to_chrome=True, into dirpath).")
        self.group_by_input_shapes = group_by_input_shapes and profiler_kwargs.get("record_shapes", False)
        self.export_to_chrome = export_to_chrome
        self.row_limit = row_limit
        self.record_module_names = record_module_names
        self.schedule = schedule
        self.table_kwargs = dict(table_kwargs or {})
        self._profiler_kwargs = dict(profiler_kwargs, activities=activities)
        self.profiler: Optional[torch.profiler.profile] = None
        self._ranges: dict[str, list] = defaultdict(list)
        self._events: Any = None
        self._cycles = 0
        self.trace_paths: list[str] = []

    def _export(self, prof: torch.profiler.profile, cycle: Optional[int] = None) -> None:
        """Write the Chrome trace: ``{stage}-{filename}[-{cycle}].pt.trace.json``, ``pytorch`` without a filename."""
        path = self._output_path(("" if cycle is None else f"-{cycle}") + ".pt.trace.json", default="pytorch")
        prof.export_chrome_trace(path)
        self.trace_paths.append(path)

    def _on_trace_ready(self, prof: torch.profiler.profile) -> None:  # with a schedule: once per recorded cycle
        if self.export_to_chrome:
            self._export(prof, self._cycles)
        self._cycles += 1

    def start(self, action_name: str) -> None:
        if self.profiler is None:
            kwargs = dict(self._profiler_kwargs)
            if self.schedule is not None:
                kwargs.update(schedule=self.schedule, on_trace_ready=self._on_trace_ready)
                if "acc_events" in inspect.signature(torch.profiler.profile).parameters:
                    kwargs.setdefault("acc_events", True)  # the table covers every recorded cycle, not the last
            self.profiler = torch.profiler.profile(**kwargs)
            self.profiler.__enter__()
            self._events = None
        self._ranges[action_name].append(torch.profiler.record_function(action_name).__enter__())

    def stop(self, action_name: str) -> None:
        ranges = self._ranges.get(action_name)
        if not ranges:
            raise ValueError(f"PyTorchProfiler: attempted to stop {action_name!r}, which was never started.")
        ranges.pop().__exit__(None, None, None)
        if self.profiler is not None and action_name.endswith(_STEP_SUFFIXES):
            self.profiler.step()  # advances the schedule; each step shows as ProfilerStep#N in the trace

    def _finish(self) -> None:
        """Stop torch's profiler, keep its averages and write the Chrome trace."""
        prof = self.profiler
        if prof is None:
            return
        for ranges in self._ranges.values():
            while ranges:
                ranges.pop().__exit__(None, None, None)
        self.profiler = None
        prof.__exit__(None, None, None)
        if self.schedule is None and self.export_to_chrome:
            self._export(prof)
        try:
            self._events = prof.key_averages(group_by_input_shape=self.group_by_input_shapes)
        except (AssertionError, RuntimeError):  # a schedule that never reached an active step records nothing
            self._events = None

    def summary(self) -> str:
        self._finish()
        if self._events is None:
            return f"{self._header()}\n\nPyTorchProfiler recorded no events (with a schedule, the run may have " \
                   "ended before its first active step)."
        table = self._events.table(sort_by=self.sort_by_key, row_limit=self.row_limit, **self.table_kwargs)
        return f"{self._header()}\n\n{table}"

    def teardown(self, stage: Optional[str]) -> None:
        self._finish()
        self._cycles = 0

    def _instrument_module(self, module: torch.nn.Module) -> Optional[Callable[[], None]]:
        if not self.record_module_names:
            return None
        open_ranges: list = []

        def pre(name: str, mod: torch.nn.Module, args: Any) -> None:
            label = f"[pl][module]{type(mod).__module__}.{type(mod).__qualname__}: {name}"
            open_ranges.append(torch.profiler.record_function(label).__enter__())

        def post(mod: torch.nn.Module, args: Any, output: Any) -> None:
            if open_ranges:
                open_ranges.pop().__exit__(None, None, None)

        handles = []
        for name, sub in module.named_modules():
            if name:
                handles.append(sub.register_forward_pre_hook(functools.partial(pre, name)))
                handles.append(sub.register_forward_hook(post))

        def undo() -> None:
            for h in handles:
                h.remove()

        return undo
