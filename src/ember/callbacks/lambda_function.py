"""LambdaCallback: a callback built from functions, one per hook."""
from __future__ import annotations

from typing import Any, Callable

from ember.callbacks.callback import Callback

_NOT_HOOKS = {"state_key", "state_dict", "load_state_dict"}
_HOOKS = frozenset(name for name in vars(Callback) if not name.startswith("_") and name not in _NOT_HOOKS)


class LambdaCallback(Callback):
    """Each keyword names a hook and gives the function to run there, with the hook's arguments.

    >>> from ember.callbacks.lambda_function import LambdaCallback
    >>> cb = LambdaCallback(on_train_epoch_end=lambda trainer, pl_module: print("epoch", trainer.current_epoch),
    ...                     on_exception=lambda trainer, pl_module, exc: print("failed:", exc))
    >>> # trainer = ember.Trainer(callbacks=[cb])
    """

    def __init__(self, **hooks: Callable) -> None:
        unknown = sorted(set(hooks) - _HOOKS)
        if unknown:
            what = "is not a hook" if len(unknown) == 1 else "are not hooks"
            raise TypeError(f"LambdaCallback got {unknown}, which {what}; the hooks are: {', '.join(sorted(_HOOKS))}.")
        for name, fn in hooks.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback({name}=...) must be a callable; got a {type(fn).__name__}.")
        hooks = {name: fn for name, fn in hooks.items() if fn is not None}
        # The Trainer calls a hook only on callbacks whose class overrides it (decided once per run), so the
        # functions become methods of a class made for this instance rather than instance attributes.
        methods = {name: _method(fn) for name, fn in hooks.items()}
        self.__class__ = type("LambdaCallback", (LambdaCallback,), {"__qualname__": "LambdaCallback", **methods})
        self._hooks = hooks


def _method(fn: Callable) -> Callable:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    method.__name__ = getattr(fn, "__name__", "hook")
    return method
