"""``instrument`` and ``profiling``: one run's methods timed by its profiler (see ``ember.profilers``)."""
from __future__ import annotations

import contextlib
import functools
import types
from typing import Any, Callable, Iterator, Optional

from ember.profilers.base import PassThroughProfiler
from ember.profilers.profiler import Profiler

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
