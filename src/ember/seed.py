"""Seeding every random number generator a training run draws from."""
from __future__ import annotations

import functools
import os
import random
from typing import Any, Optional

import torch

_MAX_SEED = 2**32 - 1


def seed_everything(seed: Optional[int] = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed ``random``, NumPy (when installed) and torch (CPU and every CUDA device).

    ``seed=None`` takes ``PL_GLOBAL_SEED`` from the environment, else 0. The seed is stored in
    ``PL_GLOBAL_SEED`` so that processes started later (DDP) use the same one. ``workers=True``
    also records ``PL_SEED_WORKERS=1``: the Trainer and Fabric then give each DataLoader without a
    ``worker_init_fn`` one (``pl_worker_init_function``) that seeds every worker differently. ``verbose``: log
    "Seed set to N" on the ``ember`` logger (INFO, rank 0; shown when logging is configured to show it).

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
    if verbose:
        from ember.utilities.rank_zero import rank_zero_info

        rank_zero_info(f"Seed set to {seed}")
    return seed


def pl_worker_init_function(worker_id: int, rank: Optional[int] = None) -> None:
    """Seed torch, ``random`` and NumPy in a DataLoader worker from the worker's base seed, its id and the global
    rank, so that no two workers (on any rank) draw the same augmentations. The numbers are Lightning's: a program
    using ``seed_everything(..., workers=True)`` sees the same worker streams under either."""
    from ember.utilities.rank_zero import rank_zero_only

    global_rank = rank if rank is not None else rank_zero_only.rank  # type: ignore[attr-defined]
    base_seed = torch.initial_seed() - worker_id  # the loader's base seed (each worker gets base + its id)
    seeds = _mixed_seeds(base_seed, worker_id, global_rank, count=4)
    torch.manual_seed(seeds[0])
    random.seed((seeds[1] << 32) | seeds[2])
    try:
        import numpy as np
    except ImportError:  # NumPy is optional
        return
    np.random.seed(np.random.SeedSequence([base_seed, worker_id, global_rank]).generate_state(4))


def _mixed_seeds(base_seed: int, worker_id: int, global_rank: int, count: int) -> list:
    """``count`` 64-bit seeds from (base seed, worker, rank): the three packed into one number, its bits mixed with
    MurmurHash3's 64-bit finaliser, then a linear congruential sequence (Knuth's MMIX constants) from it."""
    mask = (1 << 64) - 1
    x = (base_seed << 32) | (worker_id << 16) | global_rank  # wider than 64 bits: masked after the first product
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        x = ((x ^ (x >> 33)) * multiplier) & mask
    x ^= x >> 33
    seeds = []
    for _ in range(count):
        x = (x * 6364136223846793005 + 1) & mask
        seeds.append(x)
    return seeds


def add_worker_seeding(loader: Any, global_rank: int) -> None:
    """After ``seed_everything(..., workers=True)``: give ``loader`` Lightning's per-worker seeding unless it has its
    own ``worker_init_fn`` (the loader is changed in place, as Lightning does)."""
    if int(os.environ.get("PL_SEED_WORKERS", 0)) and getattr(loader, "worker_init_fn", 0) is None:
        loader.worker_init_fn = functools.partial(pl_worker_init_function, rank=global_rank)


def reset_seed() -> None:
    """Seed again with what ``seed_everything`` last set (``PL_GLOBAL_SEED``/``PL_SEED_WORKERS``); nothing when it
    was never called. Lightning's ``lightning.fabric.utilities.seed.reset_seed``."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        seed_everything(int(seed), workers=bool(int(os.environ.get("PL_SEED_WORKERS", "0"))), verbose=False)
