"""Work done once per run, by the process of global rank 0: files, prints, warnings.

Loggers decorate their writing methods with ``@rank_zero_only`` and their ``experiment`` property with
``ember.loggers.logger.rank_zero_experiment``, as in Lightning; a custom logger does the same.

``rank_zero_only.rank`` is read from the environment at import (torchrun's ``RANK``, SLURM's
``SLURM_PROCID``, ember's ``LOCAL_RANK``/``NODE_RANK``) and set by the strategy when it joins the
process group.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")
log = logging.getLogger("ember")


def _rank_from_environment() -> int:
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    if "LOCAL_RANK" in os.environ:  # processes ember started: node_rank * devices + local_rank is set at join
        return int(os.environ["LOCAL_RANK"]) + int(os.environ.get("NODE_RANK", 0)) * int(
            os.environ.get("LOCAL_WORLD_SIZE", 1))
    return 0


def rank_zero_only(fn: Callable[..., T], default: Optional[T] = None) -> Callable[..., Optional[T]]:
    """Decorate ``fn`` so that it runs on global rank 0 only; other ranks get ``default``.

    >>> @rank_zero_only
    ... def hello():
    ...     return "hello from rank 0"
    >>> hello()
    'hello from rank 0'
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Optional[T]:
        if rank_zero_only.rank == 0:
            return fn(*args, **kwargs)
        return default

    return wrapped


rank_zero_only.rank = _rank_from_environment()  # type: ignore[attr-defined]


def rank_zero_warn(message: Any, category: type = UserWarning, stacklevel: int = 3, **kwargs: Any) -> None:
    """``warnings.warn`` on rank 0 only. ``stacklevel=3`` points at the line that called the caller."""
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        warnings.warn(message, category, stacklevel=stacklevel)


def rank_zero_deprecation(message: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """A ``DeprecationWarning`` on rank 0 only."""
    rank_zero_warn(message, DeprecationWarning, stacklevel=stacklevel)


def rank_prefixed_message(message: str, rank: Optional[int]) -> str:
    """``"[rank: 1] message"``; the message unchanged when ``rank`` is None.

    >>> rank_prefixed_message("stopping", 1)
    '[rank: 1] stopping'
    """
    return message if rank is None else f"[rank: {rank}] {message}"


def rank_zero_info(message: str, *args: Any, **kwargs: Any) -> None:
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        log.info(message, *args, **kwargs)


def rank_zero_debug(message: str, *args: Any, **kwargs: Any) -> None:
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        log.debug(message, *args, **kwargs)


class WarningCache(set):
    """Say each message once: ``cache.warn("...")`` warns the first time a message is seen, on rank 0."""

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_info(message, *args, **kwargs)
