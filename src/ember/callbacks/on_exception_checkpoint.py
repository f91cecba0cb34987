"""OnExceptionCheckpoint: save a checkpoint when a run stops with an exception (including Ctrl-C)."""
from __future__ import annotations

import os
from typing import Any, Union

from ember.callbacks.checkpoint import Checkpoint
from ember.utilities.rank_zero import rank_zero_warn


class OnExceptionCheckpoint(Checkpoint):
    """Write ``{dirpath}/{filename}.ckpt`` through ``trainer.save_checkpoint`` when the run raises,
    so that ``trainer.fit(model, ckpt_path=callback.ckpt_path)`` continues from there. As in Lightning,
    the file is removed when a later ``fit`` with this callback finishes without an error.

    Under several processes the Trainer writes on global rank 0 (a rank that fails alone saves nothing under
    DDP, where only rank 0 writes), and only rank 0 removes the file.

    >>> from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    >>> cb = OnExceptionCheckpoint(dirpath="checkpoints")
    >>> cb.ckpt_path
    'checkpoints/on_exception.ckpt'
    >>> # trainer = ember.Trainer(callbacks=[cb])
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: Union[str, os.PathLike], filename: str = "on_exception") -> None:
        if not filename:
            raise ValueError("OnExceptionCheckpoint(filename='') : the filename cannot be empty; pass a name without "
                             "the extension, e.g. filename='on_exception'.")
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        try:
            trainer.save_checkpoint(self.ckpt_path)
        except Exception as error:  # never hide the user's exception behind a failed save
            rank_zero_warn(f"OnExceptionCheckpoint could not write {self.ckpt_path!r} after "
                           f"{type(exception).__name__}: {error!r}", stacklevel=3)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # ember calls teardown after on_exception too: keep the file unless the run finished cleanly
        if stage == "fit" and trainer.state.status == "finished" and trainer.is_global_zero \
                and os.path.lexists(self.ckpt_path):
            from ember.callbacks.model_checkpoint import _remove_checkpoint

            _remove_checkpoint(self.ckpt_path)  # a file, or the folder of a sharded checkpoint
