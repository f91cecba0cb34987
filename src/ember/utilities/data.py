"""``lightning.pytorch.utilities.data`` (and Fabric's): the batch size of a batch, whether a loader has a length,
``AttributeDict`` and ``suggested_max_num_workers``."""
from __future__ import annotations

from typing import Any

from ember._utils import AttributeDict  # noqa: F401  (Fabric's utilities.data has it)
from ember._utils import extract_batch_size as _first_size
from ember.utilities._distributed import suggested_max_num_workers  # noqa: F401


def extract_batch_size(batch: Any) -> int:
    """The first dimension of the first tensor in ``batch`` (tensors inside dicts, lists and tuples are found).

    >>> import torch
    >>> extract_batch_size({"x": torch.zeros(4, 3), "y": torch.zeros(4)})
    4
    """
    size = _first_size(batch)
    if size is None:
        raise ValueError(f"extract_batch_size found no tensor in the batch (a {type(batch).__name__}); pass "
                         "`batch_size=` to self.log.")
    return size


def has_len(dataloader: Any) -> bool:
    """Whether ``len(dataloader)`` works (False for a loader over an IterableDataset without ``__len__``)."""
    try:
        len(dataloader)
        return True
    except (TypeError, NotImplementedError):
        return False


def sized_len(dataloader: Any) -> Any:
    """``len(dataloader)``, or None when it has none."""
    return len(dataloader) if has_len(dataloader) else None


def has_iterable_dataset(dataloader: Any) -> bool:
    from torch.utils.data import IterableDataset

    return isinstance(getattr(dataloader, "dataset", None), IterableDataset)


__all__ = ["AttributeDict", "extract_batch_size", "has_iterable_dataset", "has_len", "sized_len",
           "suggested_max_num_workers"]
