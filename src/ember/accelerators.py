"""Device and precision: which device the model runs on, and how (autocast, GradScaler, true dtypes)."""
from __future__ import annotations

import contextlib
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


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def choose_device(accelerator: Any, devices: Any) -> torch.device:
    """Turn ``Trainer(accelerator=..., devices=...)`` into one torch.device (one device per process)."""
    if not isinstance(accelerator, str) or accelerator.lower() not in _ACCELERATORS:
        raise ValueError(
            f"Trainer(accelerator={accelerator!r}) is not supported; use one of {list(_ACCELERATORS)}."
        )
    accelerator = accelerator.lower()
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if accelerator == "gpu":
        accelerator = "cuda" if torch.cuda.is_available() or not _mps_available() else "mps"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"Trainer(accelerator='gpu'/'cuda') asks for a CUDA device, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}). Use Trainer(accelerator='cpu') or 'auto', or install a CUDA build of torch."
        )
    if accelerator == "mps" and not _mps_available():
        raise RuntimeError("Trainer(accelerator='mps') asks for Apple's MPS device, which this machine does not "
                           "have. Use Trainer(accelerator='cpu') or 'auto'.")
    index = _device_index(devices, accelerator)
    if accelerator == "cuda":
        return torch.device("cuda", index)
    return torch.device(accelerator)


def _device_index(devices: Any, accelerator: str) -> int:
    if devices in ("auto", None, 1, "1", -1, "-1"):
        return 0
    if isinstance(devices, (list, tuple)) and len(devices) == 1:
        return int(devices[0])
    if isinstance(devices, str) and devices.strip().rstrip(",").isdigit() and devices.endswith(","):
        return int(devices.rstrip(","))
    raise ValueError(
        f"Trainer(devices={devices!r}) asks for more than one {accelerator} device in one process, which needs a "
        "distributed strategy that this version of ember does not provide yet. Use devices=1."
    )


class Precision:
    """How numbers are represented: autocast for '*-mixed', a GradScaler for '16-mixed', a dtype for '*-true'."""

    def __init__(self, precision: Union[str, int], device: torch.device) -> None:
        name = _PRECISIONS.get(precision if not isinstance(precision, str) else precision.lower())
        if name is None:
            valid = sorted({v for v in _PRECISIONS.values() if v})
            raise ValueError(f"Trainer(precision={precision!r}) is not supported; use one of {valid}.")
        if name == "16-mixed" and device.type == "cpu":
            raise ValueError(
                "Trainer(accelerator='cpu', precision='16-mixed') is not supported: float16 mixed precision needs a "
                "GPU. Use precision='bf16-mixed' on the CPU, or run on a GPU."
            )
        if name in ("bf16-mixed", "bf16-true") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"Trainer(precision={precision!r}): this GPU ({torch.cuda.get_device_name(device)}) does not support "
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
