"""Device and precision: which device the model runs on, and how (autocast, GradScaler, true dtypes)."""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Optional, Union

import torch

from ember._utils import apply_to_tensors

_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")

# every spelling Lightning accepts -> the canonical name
_PRECISIONS = {
    "32-true": "32-true", "32": "32-true", 32: "32-true",
    "16-mixed": "16-mixed", "16": "16-mixed", 16: "16-mixed",
    "bf16-mixed": "bf16-mixed", "bf16": "bf16-mixed",
    "16-true": "16-true", "bf16-true": "bf16-true",
    "64-true": "64-true", "64": "64-true", 64: "64-true",
    "transformer-engine": None,
}
_HISTORICAL = ("16", "bf16")  # spellings Lightning still accepts with a warning (precision=16 included)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_devices(accelerator: Any, devices: Any, owner: str = "Trainer") -> tuple:
    """``Trainer(accelerator=..., devices=...)`` -> (device type, device indices: one entry per process on this node).

    ``devices="auto"`` means one device (ember does not start many processes unless asked; ``devices=-1`` takes
    every GPU). On the CPU, ``devices=N`` means N processes. ``owner`` names the caller in messages ("Fabric").
    """
    accelerator = _accelerator_name(accelerator)  # Trainer(accelerator=CUDAAccelerator()) as in Lightning
    if not isinstance(accelerator, str) or accelerator.lower() not in _ACCELERATORS:
        raise ValueError(
            f"{owner}(accelerator={accelerator!r}) is not supported; use one of {list(_ACCELERATORS)}."
        )
    accelerator = accelerator.lower()
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if accelerator == "gpu":
        accelerator = "cuda" if torch.cuda.is_available() or not _mps_available() else "mps"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{owner}(accelerator='gpu'/'cuda') asks for a CUDA device, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}). Use {owner}(accelerator='cpu') or 'auto', or install a CUDA build of torch."
        )
    if accelerator == "mps" and not _mps_available():
        raise RuntimeError(f"{owner}(accelerator='mps') asks for Apple's MPS device, which this machine does not "
                           f"have. Use {owner}(accelerator='cpu') or 'auto'.")
    return accelerator, _device_indices(devices, accelerator, owner)


def _device_indices(devices: Any, accelerator: str, owner: str = "Trainer") -> list:
    value = devices
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1") or text.lstrip("-").isdigit():
            value = text if text == "auto" else int(text)
        elif all(part.strip().isdigit() for part in text.rstrip(",").split(",")):
            value = [int(part) for part in text.rstrip(",").split(",")]  # "0,1" or "1," (the device with index 1)
    if value in ("auto", None):
        return [0]
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)) or (isinstance(value, int) and value < -1) \
            or value == 0 or (isinstance(value, (list, tuple)) and (not value or not all(
                isinstance(i, int) and i >= 0 for i in value))):
        raise ValueError(f"{owner}(devices={devices!r}) must be a positive int (how many), -1 (all GPUs), a list of "
                         "device indices like [0, 1], or 'auto'.")
    if isinstance(value, int):
        if accelerator != "cuda":
            return [0] * (1 if value == -1 else value)  # CPU/MPS: one process per "device"
        count = torch.cuda.device_count()
        if value > count:
            raise ValueError(f"{owner}(devices={value}) asks for {value} GPUs, but this machine has {count}.")
        return list(range(count if value == -1 else value))
    indices = list(value)
    if accelerator == "cuda" and max(indices) >= torch.cuda.device_count():
        raise ValueError(f"{owner}(devices={devices!r}) names GPU {max(indices)}, but this machine has "
                         f"{torch.cuda.device_count()} (indices 0..{torch.cuda.device_count() - 1}).")
    return indices if accelerator == "cuda" else [0] * len(indices)


class Precision:
    """How numbers are represented: autocast for '*-mixed', a GradScaler for '16-mixed', a dtype for '*-true'."""

    def __init__(self, precision: Union[str, int], device: torch.device, owner: str = "Trainer") -> None:
        name = _PRECISIONS.get(precision if not isinstance(precision, str) else precision.lower())
        if name is None:
            valid = sorted({v for v in _PRECISIONS.values() if v})
            raise ValueError(f"{owner}(precision={precision!r}) is not supported; use one of {valid}.")
        if str(precision).lower() in _HISTORICAL:
            warnings.warn(f"`precision={precision}` is supported for historical reasons but its usage is discouraged. "
                          f"Please set your precision to {name} instead!", stacklevel=3)
        if name == "16-mixed" and device.type == "cpu":  # as Lightning: bfloat16 autocast instead, with a warning
            warnings.warn(f"You passed `{owner}(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not "
                          "supported on CPU. Using `precision='bf16-mixed'` instead.", stacklevel=3)
            name = "bf16-mixed"
        if name in ("bf16-mixed", "bf16-true") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"{owner}(precision={precision!r}): this GPU ({torch.cuda.get_device_name(device)}) does not support "
                "bfloat16. Use precision='16-mixed'."
            )
        self.name = name
        self.device = device
        self.autocast_dtype: Optional[torch.dtype] = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(name)
        self.param_dtype: Optional[torch.dtype] = {"16-true": torch.float16, "bf16-true": torch.bfloat16,
                                                    "64-true": torch.float64}.get(name)
        self.scaler: Optional[torch.amp.GradScaler] = (
            torch.amp.GradScaler(device.type) if name == "16-mixed" else None
        )
        self._unscaled: set = set()  # ids of optimizers whose grads were unscaled since their last step
        # full precision needs none of the calls below: the training step then skips them altogether
        self.plain = self.autocast_dtype is None and self.param_dtype is None and self.scaler is None

    def forward_context(self) -> Any:
        """The context every ``*_step`` runs in: autocast for mixed precision, else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.param_dtype is not None:
            module.to(self.param_dtype)
        return module

    def convert_input(self, batch: Any) -> Any:
        if self.param_dtype is None:
            return batch
        dtype = self.param_dtype
        return apply_to_tensors(batch, lambda t: t.to(dtype) if t.is_floating_point() else t)

    def backward(self, loss: torch.Tensor, module: Any, *args: Any, **kwargs: Any) -> None:
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        module.backward(loss, *args, **kwargs)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring AMP-scaled gradients back to their true size (once per step), before clipping."""
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def optimizer_step(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> Any:
        if self.scaler is None:
            return optimizer.step(**kwargs)
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        return out

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def release_device(module: torch.nn.Module, optimizers: list) -> None:
    """The module and every optimizer's state tensors back on the CPU, and the GPU's cached blocks freed."""
    from ember._utils import move_data_to_device

    cpu = torch.device("cpu")
    for optimizer in optimizers:
        for param, state in optimizer.state.items():
            optimizer.state[param] = move_data_to_device(state, cpu)
    module.cpu()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# Lightning's accelerator classes (``from lightning.pytorch.accelerators import CUDAAccelerator``).
from ember._accelerator_api import (  # noqa: E402,F401
    Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator, _accelerator_name,
    find_usable_cuda_devices,
)
