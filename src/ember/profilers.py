"""Profilers: where a run spends its time, one named *action* at a time.

``Trainer(profiler="simple" | "advanced" | "pytorch" | Profiler())`` times the training step,
backward, the optimizer step, the data fetch and every hook, with Lightning's action names
(``[Strategy]SingleDeviceStrategy.training_step``, ``[Callback]ModelCheckpoint.on_train_batch_end``,
``[_TrainingEpochLoop].train_dataloader_next``, ...), and prints (or writes) a report at the end.

How it stays free when unused: the loop has no profiler branches. For the length of one run,
``instrument`` replaces the bound methods the loop calls with timed versions (on the instances:
the trainer, the module, the optimizers, the hook table) and puts the originals back afterwards.
With no profiler (``PassThroughProfiler``) nothing is replaced, so the hot path is untouched.

>>> import ember
>>> trainer = ember.Trainer(profiler=SimpleProfiler(filename="perf_logs"))  # doctest: +SKIP
>>> # ... after fit: <log_dir>/fit-perf_logs.txt holds the table

Your own code can time a block too, with or without a profiler configured:

>>> with trainer.profiler.profile("load_extra_data"):  # doctest: +SKIP
...     data = load()
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import io
import os
import time
import types
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any, Callable, Iterator, Optional, Union

import torch

__all__ = [
    "AdvancedProfiler",
    "PassThroughProfiler",
    "Profiler",
    "PyTorchProfiler",
    "SimpleProfiler",
    "XLAProfiler",
    "instrument",
    "profiling",
    "resolve_profiler",
]


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
                    path = os.path.join(self.dirpath or os.getcwd(), self._prepare_filename())
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "a", encoding="utf-8") as f:  # appended, as Lightning does
                        f.write(text + "\n")
                elif self._local_rank in (None, 0):
                    print(text)
        finally:
            self.teardown(self._stage)

    def _prepare_filename(self, action_name: Optional[str] = None, extension: str = ".txt",
                          split_token: str = "-", default: str = "profile") -> str:
        """``{stage}-[{local_rank}-][{action}-]{filename}{extension}``, Lightning's file names."""
        parts = [self._stage] if self._stage else []
        if self._local_rank not in (None, 0):
            parts.append(str(self._local_rank))
        if action_name:
            parts.append(action_name)
        parts.append(self.filename or default)
        return split_token.join(parts) + extension

    def _header(self) -> str:
        return f"{self._stage.upper()} Profiler Report" if self._stage else "Profiler Report"

    def _instrument_module(self, module: torch.nn.Module) -> Optional[Callable[[], None]]:
        """Extra instrumentation of the module for one run (PyTorchProfiler names submodules); returns an undo."""
        return None


class PassThroughProfiler(Profiler):
    """Records nothing: what ``trainer.profiler`` is when no profiler was asked for. The Trainer does not
    instrument anything for it, so it costs nothing per step; ``profile()`` blocks in user code still work."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def summary(self) -> str:
        return ""


class SimpleProfiler(Profiler):
    """Wall-clock time per action: mean duration, number of calls, total time and share of the run.

    Args:
        dirpath, filename: see ``Profiler``.
        extended: with False, report only the mean and total duration of each action.

    >>> p = SimpleProfiler()
    >>> with p.profile("load"):
    ...     pass
    >>> p.recorded_durations["load"][0] >= 0
    True
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None,
                 extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.extended = extended
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.start_time = time.perf_counter()

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"SimpleProfiler: attempted to start {action_name!r}, which has already started. "
                             "Stop it first, or give the nested block another name.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        begin = self.current_actions.pop(action_name, None)
        if begin is None:
            raise ValueError(f"SimpleProfiler: attempted to stop {action_name!r}, which was never started.")
        self.recorded_durations[action_name].append(end - begin)

    def summary(self) -> str:
        stats = [(name, sum(d) / len(d), len(d), sum(d)) for name, d in self.recorded_durations.items() if d]
        stats.sort(key=lambda s: s[3], reverse=True)
        if self.extended:
            total = time.perf_counter() - self.start_time
            headers = ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
            rows = [[name, f"{mean:.5g}", str(n), f"{tot:.5g}", f"{100 * tot / total:.5g}"]
                    for name, mean, n, tot in stats]
            top = [["Total", "-", str(sum(s[2] for s in stats)), f"{total:.5g}", "100 %"]]
        else:
            headers = ["Action", "Mean duration (s)", "Total time (s)"]
            rows = [[name, f"{mean:.5g}", f"{tot:.5g}"] for name, mean, _, tot in stats]
            top = []
        return "\n".join([self._header(), "", *_format_table(headers, top, rows)])


class AdvancedProfiler(Profiler):
    """``cProfile`` per action: the functions each action spends its time in, as ``pstats`` prints them.

    Args:
        dirpath, filename: see ``Profiler``.
        line_count_restriction: how many lines of each action's stats to show: a fraction (0.1 = the top 10%)
            or a number of lines.

    When actions nest (a hook that runs inside another), the outer action's profile pauses while the inner
    one runs: Python allows one active profiler, and each function's time is counted once.
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None,
                 line_count_restriction: float = 1.0) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.line_count_restriction = line_count_restriction
        self.profiled_actions: dict[str, Any] = {}
        self._active: list[tuple[str, Any]] = []

    def start(self, action_name: str) -> None:
        import cProfile

        profiler = self.profiled_actions.get(action_name)
        if profiler is None:
            profiler = self.profiled_actions[action_name] = cProfile.Profile()
        if self._active:
            self._active[-1][1].disable()
        self._active.append((action_name, profiler))
        profiler.enable()

    def stop(self, action_name: str) -> None:
        if not self._active or self._active[-1][0] != action_name:
            raise ValueError(f"AdvancedProfiler: attempted to stop {action_name!r}, which is not the action "
                             f"running now ({self._active[-1][0] if self._active else 'none'!r}).")
        _, profiler = self._active.pop()
        profiler.disable()
        if self._active:
            self._active[-1][1].enable()

    def summary(self) -> str:
        import pstats

        parts = [self._header()]
        for name, profiler in self.profiled_actions.items():
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction)
            parts.append(f"Profile stats for: {name}\n{stream.getvalue()}")
        return "\n".join(parts)

    def teardown(self, stage: Optional[str]) -> None:
        for _, profiler in reversed(self._active):
            profiler.disable()
        self._active = []


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

    def _trace_path(self, cycle: Optional[int] = None) -> str:
        name = self._prepare_filename(extension="", default="pytorch")
        if cycle is not None:
            name += f"-{cycle}"
        return os.path.join(self.dirpath or os.getcwd(), name + ".pt.trace.json")

    def _export(self, prof: torch.profiler.profile, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        prof.export_chrome_trace(path)
        self.trace_paths.append(path)

    def _on_trace_ready(self, prof: torch.profiler.profile) -> None:  # with a schedule: once per recorded cycle
        if self.export_to_chrome:
            self._export(prof, self._trace_path(self._cycles))
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
        rf = torch.profiler.record_function(action_name)
        rf.__enter__()
        self._ranges[action_name].append(rf)

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
            self._export(prof, self._trace_path())
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
            rf = torch.profiler.record_function(f"[pl][module]{type(mod).__module__}.{type(mod).__qualname__}: "
                                                f"{name}")
            rf.__enter__()
            open_ranges.append(rf)

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


# --- choosing a profiler ------------------------------------------------------------------------------
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


# --- instrumenting one run ----------------------------------------------------------------------------
_MISSING = object()


class _Patches:
    """Instance attributes replaced for one run, and how to put each back exactly."""

    def __init__(self) -> None:
        self._undo: list[tuple[dict, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        d = obj.__dict__  # nn.Module.__setattr__ is bypassed: a plain instance attribute shadows the method
        self._undo.append((d, name, d.get(name, _MISSING)))
        d[name] = value

    def add_undo(self, fn: Optional[Callable[[], None]]) -> None:
        if fn is not None:
            self._undo.append(({}, "", fn))

    def undo(self) -> None:
        while self._undo:
            d, name, old = self._undo.pop()
            if not name:
                old()
            elif old is _MISSING:
                d.pop(name, None)
            else:
                d[name] = old


def _profiled(profiler: Profiler, fn: Callable, action: str) -> Callable:
    start, stop = profiler.start, profiler.stop

    @functools.wraps(fn)  # keeps the signature, which adapt_step inspects
    def profiled(*args: Any, **kwargs: Any) -> Any:
        start(action)
        try:
            return fn(*args, **kwargs)
        finally:
            stop(action)

    profiled._ember_profiled = True  # type: ignore[attr-defined]
    return profiled


class _ProfiledLoader:
    """The training DataLoader as the loop sees it while profiling: each ``next`` is timed. Everything else
    (``dataset``, ``sampler``, ``len``) is the loader's own."""

    def __init__(self, loader: Any, profiler: Profiler, action: str) -> None:
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
    def __init__(self, iterator: Iterator, profiler: Profiler, action: str) -> None:
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


def _hook_names() -> list[str]:
    from ember.callbacks.callback import Callback

    return [name for name in vars(Callback) if name.startswith("on_")]


def instrument(trainer: Any, profiler: Profiler) -> Callable[[], None]:
    """Time what the loop calls during one run; returns the function that undoes it.

    Call it once the run's ``trainer._hooks`` and ``trainer._training_step`` exist. It wraps, on the
    instances: the adapted ``trainer._training_step``, the module's ``validation_step``/``test_step``/
    ``predict_step``, ``backward``, ``optimizer_zero_grad`` and hooks, the callbacks' entries of the hook table,
    ``trainer._transfer_batch``, each ``next`` on the training DataLoader, and the optimizer step, including
    optimizers configured after this call (``trainer._configure_optimizers`` is wrapped to catch them).
    A ``PassThroughProfiler`` wraps nothing.
    """
    if profiler is None or isinstance(profiler, PassThroughProfiler):
        return _nothing
    from ember._utils import is_overridden
    from ember.callbacks.callback import Callback
    from ember.module import LightningModule

    patches = _Patches()
    wrap = functools.partial(_profiled, profiler)
    module = trainer.lightning_module
    as_module = f"[LightningModule]{type(module).__name__}"
    as_strategy = f"[Strategy]{type(trainer.strategy).__name__.lstrip('_')}"

    # the steps, backward and zero_grad: the loop calls these as trainer/module attributes
    if getattr(trainer, "_training_step", None) is not None:
        patches.set(trainer, "_training_step", wrap(trainer._training_step, f"{as_strategy}.training_step"))
    for name in ("validation_step", "test_step", "predict_step"):
        if is_overridden(name, module, LightningModule):
            patches.set(module, name, wrap(getattr(module, name), f"{as_strategy}.{name}"))
    patches.set(module, "backward", wrap(module.backward, f"{as_strategy}.backward"))
    patches.set(module, "optimizer_zero_grad", wrap(module.optimizer_zero_grad, f"{as_module}.optimizer_zero_grad"))
    patches.set(module, "configure_optimizers", wrap(module.configure_optimizers, f"{as_module}.configure_optimizers"))
    if getattr(trainer, "_transfer_batch", None) is not None:
        patches.set(trainer, "_transfer_batch", wrap(trainer._transfer_batch, f"{as_strategy}.batch_to_device"))

    # hooks: the module's as attributes (call_module looks them up), then a fresh hook table built from them
    names = _hook_names()
    for name in names:
        if is_overridden(name, module, LightningModule):
            patches.set(module, name, wrap(getattr(module, name), f"{as_module}.{name}"))
    hooks = trainer._hooks
    patches.set(hooks, "_table", {})  # the run's own table comes back on undo
    for name in names:
        for monitoring in (None, True, False):
            fns = hooks._targets(name, monitoring)
            hooks._table[name if monitoring is None else (name, monitoring)] = tuple(
                wrap(fn, f"[Callback]{type(fn.func.__self__).__name__}.{name}")
                if isinstance(fn, functools.partial) and isinstance(getattr(fn.func, "__self__", None), Callback)
                else fn
                for fn in fns)
    patches.add_undo(profiler._instrument_module(module))

    # the training data: each batch fetched
    loader_for_epoch = trainer._train_loader_for_epoch
    patches.set(trainer, "_train_loader_for_epoch", lambda: _ProfiledLoader(
        loader_for_epoch(), profiler, "[_TrainingEpochLoop].train_dataloader_next"))

    # the optimizer step: the module's optimizer_step when the loop calls it, else each optimizer's step
    done: set[int] = set()

    def instrument_optimizers() -> None:
        if trainer._custom_optimizer_step and module.automatic_optimization:
            if id(module) not in done:
                done.add(id(module))
                patches.set(module, "optimizer_step", wrap(module.optimizer_step, f"{as_module}.optimizer_step"))
            return
        for opt in trainer.optimizers:
            if id(opt) not in done:
                done.add(id(opt))
                step = wrap(opt.step, f"{as_module}.optimizer_step")
                # a bound method, like the original: LR schedulers built later read ``opt.step.__func__``
                patches.set(opt, "step", types.MethodType(lambda self, *a, _s=step, **k: _s(*a, **k), opt))

    def through_the_module() -> None:
        # the loop's direct step calls torch's zero_grad/backward itself when the module keeps LightningModule's own;
        # timed, they must go through the wrapped module methods (set again after configure, which decides it)
        patches.set(trainer, "_plain_zero_grad", False)
        patches.set(trainer, "_plain_backward", False)

    configure = trainer._configure_optimizers

    def configure_then_instrument(*args: Any, **kwargs: Any) -> Any:
        out = configure(*args, **kwargs)
        instrument_optimizers()
        through_the_module()
        return out

    instrument_optimizers()
    through_the_module()
    patches.set(trainer, "_configure_optimizers", configure_then_instrument)
    return patches.undo


def _nothing() -> None:
    pass


@contextlib.contextmanager
def profiling(trainer: Any, stage: str) -> Iterator[None]:
    """One run under ``trainer.profiler``: ``setup``, ``instrument``, then undo and ``describe()`` (also when the
    run fails). With a ``PassThroughProfiler`` it does nothing at all."""
    profiler = getattr(trainer, "profiler", None)
    if profiler is None or isinstance(profiler, PassThroughProfiler):
        yield
        return
    profiler.setup(stage=stage, local_rank=trainer.local_rank, log_dir=trainer.log_dir)
    undo = instrument(trainer, profiler)
    try:
        yield
    finally:
        undo()
        profiler.describe()


def _format_table(headers: list[str], top: list[list[str]], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *top, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "|  " + "  |  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  |"

    rule = "-" * len(line(headers))
    out = [rule, line(headers), rule]
    if top:
        out += [line(r) for r in top] + [rule]
    if rows:
        out += [line(r) for r in rows] + [rule]
    return out


def __getattr__(name: str) -> Any:
    if name == "XLAProfiler":  # importable for ported programs; constructing it says what to use
        from ember._missing import missing_class

        globals()[name] = cls = missing_class("profilers.XLAProfiler", "ember does not run on TPUs (XLA)",
                                              "Trainer(profiler='pytorch') (PyTorchProfiler) or 'simple'")
        return cls
    raise AttributeError(f"module 'ember.profilers' has no attribute {name!r}")
