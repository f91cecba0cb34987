"""Lightning's accelerator classes (``lightning.pytorch.accelerators``), for the questions programs ask them:
``CUDAAccelerator.is_available()``, ``auto_device_count()``, ``get_device_stats(device)``, and
``find_usable_cuda_devices(n)``. ember picks the device from ``Trainer(accelerator="cpu" | "gpu" | "cuda" | "mps"
| "auto")``; ``name`` is the string to pass there.
"""
from __future__ import annotations

from typing import Any, Union

import torch

from ember._missing import missing_class


class Accelerator:
    """A kind of device. Subclasses answer with static methods; ``name`` is the ``Trainer(accelerator=)`` string."""

    name = ""

    @staticmethod
    def is_available() -> bool:
        raise NotImplementedError

    @staticmethod
    def auto_device_count() -> int:
        return 1

    def get_device_stats(self, device: Union[str, torch.device]) -> dict:
        """Memory and utilisation figures of ``device``, as DeviceStatsMonitor logs them."""
        from ember.callbacks.device_stats_monitor import get_device_stats

        return get_device_stats(torch.device(device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CPUAccelerator(Accelerator):
    name = "cpu"

    @staticmethod
    def is_available() -> bool:
        return True


class CUDAAccelerator(Accelerator):
    name = "cuda"

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.is_available()

    @staticmethod
    def auto_device_count() -> int:
        return torch.cuda.device_count()


class MPSAccelerator(Accelerator):
    name = "mps"

    @staticmethod
    def is_available() -> bool:
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


XLAAccelerator = missing_class("accelerators.XLAAccelerator", "ember does not run on TPUs (XLA)",
                               "Trainer(accelerator='gpu') or 'cpu'")


def find_usable_cuda_devices(num_devices: int = -1) -> list:
    """Indices of ``num_devices`` CUDA devices that can allocate memory now (-1: all of them), for
    ``Trainer(devices=find_usable_cuda_devices(2))`` on a shared machine where some GPUs are taken."""
    if num_devices == 0:
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        try:
            torch.empty(1, device=torch.device("cuda", index))
        except RuntimeError:
            continue  # busy (exclusive mode) or out of memory
        found.append(index)
        if len(found) == num_devices:
            return found
    if num_devices > 0:
        raise RuntimeError(f"find_usable_cuda_devices({num_devices}) found only {len(found)} usable CUDA devices "
                           f"({found}) of {torch.cuda.device_count()}. Ask for fewer, or free some.")
    return found


def _accelerator_name(value: Any) -> Any:
    """``Trainer(accelerator=CUDAAccelerator())`` -> ``"cuda"``; any other value unchanged."""
    return value.name if isinstance(value, Accelerator) and value.name else value


__all__ = ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator",
           "find_usable_cuda_devices"]
