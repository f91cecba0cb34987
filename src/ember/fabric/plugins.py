"""``lightning.fabric.plugins``: the plugins (``ember.plugins``), shared with the Trainer: cluster environments, and
Lightning's precision and checkpoint-I/O classes, which raise naming the argument to use.

``from lightning.fabric.plugins import X`` ported to ``from ember.fabric.plugins import X`` gets ember's
``ember.plugins.X`` (the same object), and ``L.fabric.plugins.<submodule>`` gets ``ember.plugins.<submodule>``.
"""
import importlib
from typing import Any

from ember.plugins import *  # noqa: F401,F403
from ember.plugins import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    shared = importlib.import_module("ember.plugins")
    if name in getattr(shared, "__all__", ()) or hasattr(shared, name):
        return getattr(shared, name)
    try:
        return importlib.import_module(f"ember.plugins.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
