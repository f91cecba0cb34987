"""``lightning.pytorch.utilities.memory``: detaching outputs, recognising out-of-memory errors, freeing CUDA cache."""
from __future__ import annotations

import gc
from typing import Any

import torch

from ember._utils import apply_to_tensors


def recursive_detach(in_dict: Any, to_cpu: bool = False) -> Any:
    """``in_dict`` (or any nesting of dicts, lists, tuples) with every tensor detached, and moved to the CPU when
    ``to_cpu``."""
    return apply_to_tensors(in_dict, lambda t: t.detach().cpu() if to_cpu else t.detach())


def _single_message(exception: BaseException) -> str:
    if isinstance(exception, RuntimeError) and len(exception.args) == 1 and isinstance(exception.args[0], str):
        return exception.args[0]
    return ""


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    if isinstance(exception, torch.cuda.OutOfMemoryError):
        return True
    message = _single_message(exception)
    return "CUDA" in message and "out of memory" in message


def is_cudnn_snafu(exception: BaseException) -> bool:
    return "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED." in _single_message(exception)


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    return "DefaultCPUAllocator: can't allocate memory" in _single_message(exception)


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` is an out-of-memory error (CUDA, cuDNN or the CPU allocator)."""
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def garbage_collection_cuda() -> None:
    """Collect Python garbage, then give cached CUDA memory back (an out-of-memory error while doing so is ignored)."""
    gc.collect()
    if not torch.cuda.is_available():
        return
    try:
        torch.cuda.empty_cache()
    except RuntimeError as exception:
        if not is_oom_error(exception):
            raise


__all__ = ["garbage_collection_cuda", "is_cuda_out_of_memory", "is_cudnn_snafu", "is_oom_error",
           "is_out_of_cpu_memory", "recursive_detach"]
