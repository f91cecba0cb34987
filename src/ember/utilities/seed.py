"""``lightning.pytorch.utilities.seed`` (and Fabric's): ``seed_everything``, ``reset_seed``, ``isolate_rng`` and
``pl_worker_init_function``."""
from __future__ import annotations

import contextlib
from typing import Iterator

from ember.seed import pl_worker_init_function, reset_seed, seed_everything


@contextlib.contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random states (CUDA's too unless ``include_cuda=False``) on exit.

    >>> import torch
    >>> _ = torch.manual_seed(1)
    >>> with isolate_rng():
    ...     inside = torch.rand(1)
    >>> bool(torch.rand(1) == inside)
    True
    """
    import random

    import torch

    states: dict = {"random": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy

        states["numpy"] = numpy.random.get_state()
    except ImportError:
        numpy = None  # type: ignore[assignment]
    if include_cuda and torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        yield
    finally:
        random.setstate(states["random"])
        torch.set_rng_state(states["torch"])
        if numpy is not None:
            numpy.random.set_state(states["numpy"])
        if "cuda" in states:
            torch.cuda.set_rng_state_all(states["cuda"])


__all__ = ["isolate_rng", "pl_worker_init_function", "reset_seed", "seed_everything"]
