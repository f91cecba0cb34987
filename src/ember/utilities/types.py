"""``lightning.pytorch.utilities.types`` (and ``lightning.fabric.utilities.types``): the type aliases Lightning
programs annotate their hooks with, and Fabric's protocols (``Optimizable``, ``Steppable``, ``_Stateful``), which
programs also use in ``isinstance`` checks.

The aliases are annotations only: ember checks the values themselves where it uses them.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, TypedDict, TypeVar, Union, runtime_checkable

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ember.trainer.optim import LRSchedulerConfig

_NUMBER = Union[int, float]
_METRIC = Union[Tensor, _NUMBER]
STEP_OUTPUT = Optional[Union[Tensor, Mapping[str, Any]]]
_EVALUATE_OUTPUT = list[Mapping[str, float]]  # one dict per dataloader
_PREDICT_OUTPUT = Union[list[Any], list[list[Any]]]
TRAIN_DATALOADERS = Any  # a DataLoader or any iterable of batches
EVAL_DATALOADERS = Any  # a DataLoader, or a list or dict of them

LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]
LRSchedulerPLType = Union[LRScheduler, ReduceLROnPlateau]


class LRSchedulerConfigType(TypedDict, total=False):
    """The dict form of a scheduler in ``configure_optimizers``: ``{"scheduler": ..., "interval": "step"}``."""

    scheduler: Any
    name: Optional[str]
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: Optional[str]
    strict: bool


class OptimizerConfig(TypedDict):
    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict, total=False):
    optimizer: Optimizer
    lr_scheduler: Union[LRSchedulerTypeUnion, LRSchedulerConfigType]
    monitor: str


OptimizerLRScheduler = Optional[Union[
    Optimizer,
    Sequence[Optimizer],
    tuple[Sequence[Optimizer], Sequence[Union[LRSchedulerTypeUnion, LRSchedulerConfig]]],
    OptimizerConfig,
    OptimizerLRSchedulerConfig,
    Sequence[OptimizerConfig],
    Sequence[OptimizerLRSchedulerConfig],
]]

# Fabric's names (lightning.fabric.utilities.types)
_PATH = Union[str, Path, os.PathLike]
_DEVICE = Union[torch.device, str, int]
_MAP_LOCATION_TYPE = Optional[Union[_DEVICE, Callable[[Tensor, str], Tensor], dict[_DEVICE, _DEVICE]]]
_PARAMETERS = Any  # an iterable of parameters or of parameter-group dicts
ReduceOp = torch.distributed.ReduceOp if torch.distributed.is_available() else Any
_DictKey = TypeVar("_DictKey")


@runtime_checkable
class _Stateful(Protocol[_DictKey]):
    """Anything with ``state_dict()``/``load_state_dict()``: what ``fabric.save``/``load`` restore in place."""

    def state_dict(self) -> dict[_DictKey, Any]: ...

    def load_state_dict(self, state_dict: dict[_DictKey, Any]) -> None: ...


@runtime_checkable
class Steppable(Protocol):
    """Anything with ``step(closure=None)``."""

    def step(self, closure: Optional[Callable[[], float]] = ...) -> Optional[float]: ...


@runtime_checkable
class Optimizable(Steppable, Protocol):
    """An optimizer as Fabric sees one (a torch optimizer, or one set up by Fabric)."""

    param_groups: list[dict[Any, Any]]
    defaults: dict[Any, Any]
    state: defaultdict[Tensor, Any]

    def state_dict(self) -> dict[str, dict[Any, Any]]: ...

    def load_state_dict(self, state_dict: dict[str, dict[Any, Any]]) -> None: ...


__all__ = [
    "EVAL_DATALOADERS",
    "LRSchedulerConfig",
    "Optimizable",
    "LRSchedulerConfigType",
    "LRSchedulerPLType",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "OptimizerConfig",
    "OptimizerLRScheduler",
    "OptimizerLRSchedulerConfig",
    "ReduceOp",
    "STEP_OUTPUT",
    "Steppable",
    "TRAIN_DATALOADERS",
]
