"""``suggested_max_num_workers`` and ``is_shared_filesystem`` (exported from ``ember.utilities``)."""
from __future__ import annotations


def suggested_max_num_workers(local_world_size: int) -> int:
    """A ``num_workers`` for a DataLoader: the CPU cores this process may use, shared between the
    ``local_world_size`` processes on this machine, less one for the main process (at least 1)."""
    import os

    if local_world_size < 1:
        raise ValueError(f"suggested_max_num_workers(local_world_size={local_world_size}) must be >= 1.")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // local_world_size - 1)


def is_shared_filesystem(strategy: object, path: object = None, timeout: int = 3) -> bool:
    """Whether every process of the run sees the same files under ``path`` (default: the current folder).

    Rank 0 writes a marker file there; each rank looks for it (for up to ``timeout`` seconds); all must see it.
    A collective: call it on every rank. True at once in a single-process run.
    """
    import os
    import tempfile
    import time
    from pathlib import Path

    folder = Path(os.getcwd() if path is None else os.fspath(path)).resolve()
    if getattr(strategy, "world_size", 1) == 1:
        return True
    if strategy.broadcast(str(folder)) != str(folder):  # type: ignore[attr-defined]
        return False
    marker = ""
    if strategy.is_global_zero:  # type: ignore[attr-defined]
        fd, marker = tempfile.mkstemp(prefix=".ember_shared_fs_", dir=folder)
        os.close(fd)
    marker = strategy.broadcast(marker)  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    found = os.path.exists(marker)
    while not found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = os.path.exists(marker)
    shared = strategy.reduce_boolean_decision(found, all=True)  # type: ignore[attr-defined]
    strategy.barrier()  # type: ignore[attr-defined]
    if strategy.is_global_zero:  # type: ignore[attr-defined]
        os.remove(marker)
    return bool(shared)
