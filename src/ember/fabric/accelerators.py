"""``lightning.fabric.accelerators``: the accelerator classes (``ember.accelerators``), shared with the Trainer.

``from lightning.fabric.accelerators import X`` ported to ``from ember.fabric.accelerators import X`` gets ember's
``ember.accelerators.X`` (the same object), and ``L.fabric.accelerators.<submodule>`` gets
``ember.accelerators.<submodule>``.
"""
import importlib
from typing import Any

from ember._accelerator_api import (Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator,  # noqa: F401
                                    XLAAccelerator, find_usable_cuda_devices)

__all__ = ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator",
           "find_usable_cuda_devices"]


def __getattr__(name: str) -> Any:
    shared = importlib.import_module("ember.accelerators")
    if name in getattr(shared, "__all__", ()) or hasattr(shared, name):
        return getattr(shared, name)
    try:
        return importlib.import_module(f"ember.accelerators.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
