"""Checkpoint: the base class of the callbacks that write checkpoints (ModelCheckpoint, OnExceptionCheckpoint)."""
from __future__ import annotations

from ember.callbacks.callback import Callback


class Checkpoint(Callback):
    """Subclass this (rather than ``Callback``) for a checkpointing callback of your own: as in Lightning, it then
    runs after the other callbacks at the end of an epoch, so the state it saves includes theirs.

    >>> from ember.callbacks import Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
    >>> issubclass(ModelCheckpoint, Checkpoint), issubclass(OnExceptionCheckpoint, Checkpoint)
    (True, True)
    """

    _acts_after_module = True  # the hook runner calls it after the module's on_train_epoch_end


__all__ = ["Checkpoint"]
