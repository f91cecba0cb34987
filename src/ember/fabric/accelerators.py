"""``lightning.fabric.accelerators``: the accelerator classes (``ember.accelerators``), shared with the Trainer.

``from lightning.fabric.accelerators import X`` ported to ``from ember.fabric.accelerators import X`` gets ember's
``ember.accelerators.X`` (the same object), and ``L.fabric.accelerators.<submodule>`` gets
``ember.accelerators.<submodule>``.
"""
from ember._accelerator_api import (Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator,  # noqa: F401
                                    XLAAccelerator, find_usable_cuda_devices)
from ember.fabric._shared import attributes_of

__all__ = ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator",
           "find_usable_cuda_devices"]


__getattr__ = attributes_of(__name__, "ember.accelerators")
