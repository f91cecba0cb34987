"""Seeding every random number generator a training run draws from."""
from __future__ import annotations

import os
import random
from typing import Optional

import torch

_MAX_SEED = 2**32 - 1


def seed_everything(seed: Optional[int] = None, workers: bool = False) -> int:
    """Seed ``random``, NumPy (when installed) and torch (CPU and every CUDA device).

    ``seed=None`` takes ``PL_GLOBAL_SEED`` from the environment, else 0. The seed is stored in
    ``PL_GLOBAL_SEED`` so that processes started later (DDP) use the same one. ``workers=True``
    also records ``PL_SEED_WORKERS=1`` so that DataLoader workers are seeded from it.

    >>> seed_everything(42)
    42
    """
    if seed is None:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed_everything(seed={seed}): the seed must be in [0, {_MAX_SEED}]; pass a smaller number.")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # NumPy is optional
        pass
    else:
        np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    return seed
