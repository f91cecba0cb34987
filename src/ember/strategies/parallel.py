"""``lightning.pytorch.strategies.parallel``: ``isinstance(trainer.strategy, ParallelStrategy)`` is True for
ember's DDP and FSDP strategies; ember has no separate base class to build a strategy on."""
from __future__ import annotations

import abc
from typing import Any

from ember._missing import MISSING, NotInEmberError, _message
from ember.strategies.ddp import DDPStrategy

_PATH = "strategies.ParallelStrategy"
MISSING[_PATH] = _message(_PATH, "ember has no base class for multi-process strategies of your own",
                          "ember.strategies.DDPStrategy (subclass it to customise) or FSDPStrategy")


class ParallelStrategy(abc.ABC):
    """The strategies that run one process per device: DDPStrategy and FSDPStrategy (for ``isinstance``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotInEmberError(MISSING[_PATH])


ParallelStrategy.register(DDPStrategy)  # FSDPStrategy subclasses DDPStrategy

__all__ = ["ParallelStrategy"]
