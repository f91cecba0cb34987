"""``lightning.pytorch.trainer.states``: names for what ``trainer.state`` holds.

ember keeps plain strings in ``trainer.state`` (``fn``: 'fit'...; ``stage``: 'train'...; ``status``: 'running'...);
these enums are ``str`` enums with the same values, so ``trainer.state.fn == TrainerFn.FITTING`` holds as in
Lightning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ember.utilities.enums import LightningEnum


@dataclass
class TrainerState:
    """What the trainer is doing (``trainer.state``): ``fn`` is the method running ('fit', 'validate', 'test',
    'predict'). Its own module, so that code outside the Trainer can name the type without importing it."""

    fn: Optional[str] = None
    stage: Optional[str] = None  # 'train', 'sanity_check', 'validate', 'test', 'predict'
    status: str = "initializing"  # 'running', 'finished', 'interrupted', 'failed'


class TrainerFn(LightningEnum):
    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class TrainerStatus(LightningEnum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (self.FINISHED, self.INTERRUPTED)


class RunningStage(LightningEnum):
    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (self.VALIDATING, self.TESTING, self.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str | None:
        return {"train": "train", "sanity_check": "val", "validate": "val", "test": "test",
                "predict": "predict"}[self.value]


__all__ = ["RunningStage", "TrainerFn", "TrainerStatus"]
