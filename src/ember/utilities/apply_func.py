"""``lightning.fabric.utilities.apply_func``: moving a batch to a device and turning tensors into numbers (and back).

>>> import torch
>>> convert_tensors_to_scalars({"loss": torch.tensor(0.5), "n": 3})
{'loss': 0.5, 'n': 3}
"""
from __future__ import annotations

from typing import Any

import torch

from ember._utils import apply_to_tensors, move_data_to_device

__all__ = ["convert_tensors_to_scalars", "convert_to_tensors", "move_data_to_device"]


def convert_tensors_to_scalars(data: Any) -> Any:
    """Every one-element tensor in ``data`` (a tensor, or dicts/lists/tuples of them) as a Python number."""
    def to_item(value: torch.Tensor) -> Any:
        if value.numel() != 1:
            raise ValueError(f"convert_tensors_to_scalars: a tensor of shape {tuple(value.shape)} is not one number; "
                             "reduce it first (e.g. `.mean()`).")
        return value.item()

    return apply_to_tensors(data, to_item)


def convert_to_tensors(data: Any, device: Any) -> Any:
    """Numbers and NumPy arrays in ``data`` as tensors, and every tensor on ``device``."""
    def convert(value: Any) -> Any:
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return type(value)(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return torch.tensor(value, device=device)
        if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
            return torch.as_tensor(value, device=device)
        return value

    return move_data_to_device(convert(data), torch.device(device))
