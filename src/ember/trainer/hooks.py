"""One helper runs a hook everywhere: on the callbacks (in order), then on the LightningModule.

Which objects override which hook is decided once per run; calling a hook that nobody overrides
costs a dict lookup and nothing else. A callback can also list in ``_idle_hooks`` the hooks it overrides but
has nothing to do in with its settings (ModelCheckpoint's per-batch hook without ``every_n_train_steps``):
those are left out the same way.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional

from ember._utils import is_overridden
from ember.callbacks.callback import Callback, _is_monitoring
from ember.module import LightningModule

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class HookRunner:
    """The hook table of one run. With a ``profiler`` each entry is built already timed, under Lightning's
    action names ('[Callback]ModelCheckpoint.on_train_epoch_end', '[LightningModule]Net.on_fit_start')."""

    def __init__(self, trainer: Trainer, module: LightningModule, callbacks: list, profiler: Any = None) -> None:
        self.trainer = trainer
        self.module = module
        self.callbacks = callbacks
        self.profiler = profiler
        self._table: dict = {}
        # the hook running now decides self.log's defaults; written to the instance dict directly because
        # nn.Module.__setattr__ costs a microsecond per assignment
        self._state = module.__dict__

    def has(self, name: str) -> bool:
        return bool(self._targets(name))

    def _targets(self, name: str, monitoring: Any = None) -> tuple:
        key = name if monitoring is None else (name, monitoring)
        fns = self._table.get(key)
        if fns is None:
            fns = []
            for cb in self.callbacks:
                if monitoring is not None and _is_monitoring(cb) != monitoring:
                    continue
                if is_overridden(name, cb, Callback) and name not in getattr(cb, "_idle_hooks", ()):
                    fns.append(self._timed(functools.partial(getattr(cb, name), self.trainer, self.module),
                                           f"[Callback]{type(cb).__name__}.{name}"))
            if monitoring is None and is_overridden(name, self.module, LightningModule):
                fns.append(self._module_hook(name))
            fns = tuple(fns)
            self._table[key] = fns
        return fns

    def caller(self, name: str) -> Optional[Callable]:
        """``call`` for ``name``, or None when nothing overrides the hook: the per-batch code checks for None and
        makes no call at all (a call that finds no one still costs a Python frame, six times a step)."""
        fns = self._targets(name)
        if not fns:
            return None
        if len(fns) == 1 and getattr(getattr(fns[0], "func", None), "_does_not_log", False):
            return fns[0]  # one callback's hook that never logs (the progress bar's): called as it is
        return functools.partial(self.call, name)

    def wants_outputs(self, name: str) -> bool:
        """Whether some target of the batch-end hook ``name`` may read its ``outputs`` (see ``_ignores_outputs``)."""
        for fn in self._targets(name):
            method = fn.func if isinstance(fn, functools.partial) else fn
            if not getattr(method, "_ignores_outputs", False):
                return True
        return False

    def call(self, name: str, *args: Any) -> Any:
        """Run ``name`` on every callback that overrides it, then on the module; returns the module's result."""
        fns = self._table.get(name)
        if fns is None:
            fns = self._targets(name)
        if not fns:
            return None
        state = self._state
        previous, state["_current_fx"] = state["_current_fx"], name
        try:
            result = None
            for fn in fns:
                result = fn(*args)
            return result
        finally:
            state["_current_fx"] = previous

    def call_callbacks(self, name: str, *args: Any, monitoring: bool) -> None:
        """Run ``name`` on the monitoring callbacks (ModelCheckpoint, EarlyStopping) or on the others."""
        fns = self._targets(name, monitoring)
        if not fns:
            return
        state = self._state
        previous, state["_current_fx"] = state["_current_fx"], name
        try:
            for fn in fns:
                fn(*args)
        finally:
            state["_current_fx"] = previous

    def call_module(self, name: str, *args: Any) -> Any:
        if not is_overridden(name, self.module, LightningModule):
            return None
        state = self._state
        previous, state["_current_fx"] = state["_current_fx"], name
        try:
            return self._module_hook(name)(*args)
        finally:
            state["_current_fx"] = previous

    def _module_hook(self, name: str) -> Callable:
        return self._timed(getattr(self.module, name), f"[LightningModule]{type(self.module).__name__}.{name}")

    def _timed(self, fn: Callable, action: str) -> Callable:
        return fn if self.profiler is None else self.profiler.timed(fn, action)


def strategy_action(trainer: Trainer) -> str:
    """How profiler reports name what the strategy runs: '[Strategy]SingleDeviceStrategy'."""
    return f"[Strategy]{type(trainer.strategy).__name__.lstrip('_')}"


class StepHooks:
    """The hooks inside every training step, each a callable or None when nothing overrides it; and the module's
    instance dict, where the step writes the running hook's name (reaching it through the module costs a
    microsecond: ``nn.Module.__getattr__`` makes every attribute lookup on a module slow)."""

    _HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
    __slots__ = _HOOKS + ("module_dict",)

    def __init__(self, hooks: HookRunner) -> None:
        for name in self._HOOKS:
            setattr(self, name, hooks.caller(name))
        self.module_dict = hooks._state

    @property
    def none(self) -> bool:
        """Nothing overrides any of them."""
        return all(getattr(self, name) is None for name in self._HOOKS)
