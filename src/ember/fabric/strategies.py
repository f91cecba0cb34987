"""``lightning.fabric.strategies``: the strategies the Trainer runs on (``ember.strategies``):
``Fabric(strategy=DDPStrategy(...))`` takes the same objects.

``from lightning.fabric.strategies import X`` ported to ``from ember.fabric.strategies import X`` gets ember's
``ember.strategies.X`` (the same object), and ``L.fabric.strategies.<submodule>`` gets
``ember.strategies.<submodule>``.
"""
import importlib
from typing import Any

from ember.strategies import *  # noqa: F401,F403
from ember.strategies import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    shared = importlib.import_module("ember.strategies")
    if name in getattr(shared, "__all__", ()) or hasattr(shared, name):
        return getattr(shared, name)
    try:
        return importlib.import_module(f"ember.strategies.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
