"""ModelCheckpoint: save the model every N epochs, steps or minutes, keeping the best ``save_top_k`` files.

It saves at the end of an epoch after everything else of the epoch has run (see ``ember.callbacks.monitor``),
so a checkpoint written then holds the completed epoch (weights, optimizer, schedulers, progress), and resuming
from it continues exactly like an uninterrupted run. Validation in the middle of an epoch (``val_check_interval``)
saves from ``on_validation_end``.

Under several processes every rank runs the same decisions and keeps the same state (``best_model_path``,
``best_k_models``, ``last_model_path``), and global rank 0 alone touches the files:

- ``dirpath`` is rank 0's, broadcast in ``setup``;
- whether a monitored value enters the top k is agreed by every rank (``reduce_boolean_decision``); the
  score and file name kept are rank 0's (log the monitored value with ``sync_dist=True`` so they agree);
- a file name taken by an existing file (the ``-v1`` suffix) is decided on rank 0, which alone sees the
  files it wrote, and broadcast; so is a ``train_time_interval`` save (clocks differ between ranks);
- a file name is chosen and written while rank 0 holds a lock on ``dirpath`` (``flock`` on the folder
  itself), so two runs saving into one folder never both take a name; a file this run did not write (or
  that changed since it wrote it) is never replaced: the save takes the next ``-v1``, ``-v2`` name;
- ``trainer.save_checkpoint`` is called on every rank (a sharded strategy needs them all; DDP writes on
  rank 0), while removing old files and linking ``last.ckpt`` happen on rank 0.

Each of these collectives runs on every rank at the same save point; none runs on rank 0 alone.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from ember.callbacks.callback import _ignores_outputs
from ember.callbacks.checkpoint import Checkpoint
from ember.callbacks.monitor import MonitorCallback
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

_FIELD = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")  # "{val_loss:.2f}" -> ("val_loss", ":.2f")


class ModelCheckpoint(Checkpoint, MonitorCallback):
    """Save checkpoints during ``fit`` and keep the best ``save_top_k`` of them by ``monitor``.

    >>> from ember.callbacks import ModelCheckpoint
    >>> checkpoint = ModelCheckpoint(monitor="val_loss", filename="{epoch}-{val_loss:.2f}", save_top_k=2,
    ...                              save_last=True)
    >>> # trainer = ember.Trainer(callbacks=[checkpoint]); trainer.fit(model)
    >>> # checkpoint.best_model_path -> '.../checkpoints/epoch=3-val_loss=0.12.ckpt'

    ``dirpath`` defaults to ``{logger.save_dir}/{logger.name}/version_{n}/checkpoints`` with a logger,
    else ``{default_root_dir}/checkpoints``. With ``monitor=None`` and ``save_top_k=1`` only the latest
    checkpoint is kept. A monitored value that is not finite (NaN) is never ranked, so never becomes best.
    A missing ``monitor`` raises ``ValueError``, except before the first validation of the fit (a step-based
    save may come first), where it warns once and skips. Without ``every_n_train_steps``,
    ``train_time_interval`` or ``every_n_epochs``, it saves every epoch.
    ``save_last=True`` also writes ``last.ckpt`` at every save point; ``save_last="link"`` makes
    ``last.ckpt`` a relative symlink to the file this save point wrote (a full file when it wrote none, or
    where the file system has no symlinks), so one save never writes two copies and ``last`` never links
    to itself. ``save_on_train_epoch_end=True`` saves only at the end of the training epoch (not after a
    mid-epoch validation); otherwise an epoch's end saves if the epoch validated then or the fit has no validation.

    ``save_on_exception=True`` also saves when an exception (or Ctrl-C) interrupts the run, as Lightning 2.6 does:
    the file is named from ``filename`` like any other (``epoch=0-step=7.ckpt`` by default; ``-v1`` is appended
    rather than overwriting an existing file), and ``last.ckpt`` is written too with ``save_last``. Nothing is
    saved when no step was taken since the last save, during the sanity check or with ``fast_dev_run``.
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1
    _skipped = "the top-k save"

    def __init__(
        self,
        dirpath: Optional[Union[str, os.PathLike]] = None,
        filename: Optional[str] = None,
        monitor: Optional[str] = None,
        verbose: bool = False,
        save_last: Optional[Union[bool, str]] = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: Optional[int] = None,
        train_time_interval: Optional[timedelta] = None,
        every_n_epochs: Optional[int] = None,
        save_on_train_epoch_end: Optional[bool] = None,
        enable_version_counter: bool = True,
    ) -> None:
        super().__init__(monitor, mode, save_on_train_epoch_end)
        if save_top_k < -1:
            raise ValueError(f"ModelCheckpoint(save_top_k={save_top_k}) is not valid: use -1 to keep every "
                             "checkpoint, 0 to save none (except last.ckpt), or k > 0 to keep the best k.")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise ValueError(f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None) cannot rank checkpoints "
                             "without a metric. Pass monitor='<logged metric>', or save_top_k=-1 to keep all.")
        if save_last not in (None, True, False, "link"):
            raise ValueError(f"ModelCheckpoint(save_last={save_last!r}) is not valid: use None, True, False or 'link'.")
        triggers = {"every_n_train_steps": every_n_train_steps, "every_n_epochs": every_n_epochs,
                    "train_time_interval": train_time_interval}
        for name in ("every_n_train_steps", "every_n_epochs"):
            if (triggers[name] or 0) < 0:
                raise ValueError(f"ModelCheckpoint({name}={triggers[name]}) must be >= 0 (0 turns this trigger off).")
        if train_time_interval is not None and not isinstance(train_time_interval, timedelta):
            raise TypeError(f"ModelCheckpoint(train_time_interval=...) takes a datetime.timedelta, "
                            f"got {type(train_time_interval).__name__}.")
        active = [f"{name}={value}" for name, value in triggers.items() if value]
        if len(active) > 1:
            raise ValueError(f"ModelCheckpoint got {', '.join(active)}; these triggers are exclusive. "
                             "Pass one of them, or use two ModelCheckpoint callbacks.")
        if all(value is None for value in triggers.values()):
            every_n_epochs = 1  # the default trigger: every epoch

        self.dirpath: Optional[str] = os.path.realpath(os.path.expanduser(dirpath)) if dirpath else None
        self.filename = filename
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self._every_n_train_steps = every_n_train_steps or 0
        self._every_n_epochs = every_n_epochs or 0
        self._train_time_interval = train_time_interval
        self._enable_version_counter = enable_version_counter

        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value: Tensor = self._initial_best()
        self.best_model_path = ""
        self.best_model_score: Optional[Tensor] = None
        self.current_score: Optional[Tensor] = None
        self.last_model_path = ""
        self._last_global_step_saved = 0  # nothing to save before the first optimizer step
        self._last_save_time = time.monotonic()
        self._validated = False  # validation has run in this fit, so a missing monitor is an error
        self._written = ""
        self._wrote: set = set()  # paths this callback wrote in this fit
        self._found_at_setup: set = set()  # names in dirpath before this fit: clashes there are expected
        self._warned_clash = False
        self._lock_stack: Optional[contextlib.ExitStack] = None  # set during a save point, until the lock is held

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode,
                                        every_n_train_steps=self._every_n_train_steps,
                                        every_n_epochs=self._every_n_epochs,
                                        train_time_interval=self._train_time_interval)

    # --- hooks ---------------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        dirpath = self.dirpath if self.dirpath is not None else self._default_dirpath(trainer)
        # every rank uses rank 0's folder (a logger version or a path built from the time may differ elsewhere)
        self.dirpath = trainer.strategy.broadcast(dirpath)
        if trainer.is_global_zero:
            from ember._checkpoint_io import remove_stale_temporaries

            remove_stale_temporaries(self.dirpath)  # left by a save that a SIGKILL interrupted
        if trainer.is_global_zero and os.path.isdir(self.dirpath):
            self._found_at_setup = set(os.listdir(self.dirpath))
        if stage == "fit" and self.save_top_k != 0 and trainer.is_global_zero and self._found_at_setup:
            then = "get a -v1, -v2... suffix" if self._enable_version_counter else "are overwritten"
            rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty; new checkpoints named "
                           f"like existing files {then}.", UserWarning, stacklevel=3)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_save_time = time.monotonic()
        self._validated = False

    @property
    def _idle_hooks(self) -> tuple:
        """Without step or time triggers the per-batch hook has nothing to do: the Trainer does not call it."""
        return () if self._every_n_train_steps or self._train_time_interval is not None else ("on_train_batch_end",)

    @_ignores_outputs
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._idle_hooks or self._should_skip(trainer):
            return  # idle: no step or time trigger (the Trainer does not even call this then)
        step_due = self._every_n_train_steps > 0 and trainer.global_step % self._every_n_train_steps == 0
        interval = self._train_time_interval
        time_due = interval is not None and time.monotonic() - self._last_save_time >= interval.total_seconds()
        if interval is not None:
            # each rank has its own clock: rank 0 decides. A collective per batch, with train_time_interval only
            time_due = trainer.strategy.broadcast(time_due)
        if step_due or time_due:
            self._save(trainer, top_k=True)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._validated = True
        super().on_validation_end(trainer, pl_module)  # saves now, or in on_train_epoch_end: MonitorCallback

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if not self.save_on_exception or self.dirpath is None or bool(trainer.fast_dev_run) \
                or trainer.sanity_checking or trainer.global_step == self._last_global_step_saved:
            return  # dirpath None: setup has not run, nothing was trained
        # no collective here: the exception may have reached this rank alone (the Trainer writes on rank 0)
        metrics = _name_metrics(trainer)
        filepath = self.format_checkpoint_name(metrics)
        try:
            with self._save_point():
                self._lock_folder(trainer)
                ver = self.STARTING_VERSION
                while self._enable_version_counter and os.path.exists(filepath):  # never overwrite a ranked file
                    filepath = self.format_checkpoint_name(metrics, ver=ver)
                    ver += 1
                self._write(trainer, filepath)
                if self.save_last:
                    last = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST)
                    linked = self.save_last == "link" and trainer.is_global_zero and _link(filepath, last)
                    if not linked:
                        trainer.save_checkpoint(last, weights_only=self.save_weights_only)
                    self._remember(trainer, last)
                    self.last_model_path = last
        except Exception as error:  # never hide the user's exception behind a failed save
            rank_zero_warn(f"ModelCheckpoint(save_on_exception=True) could not write {filepath!r} after "
                           f"{type(exception).__name__}: {error!r}", stacklevel=3)
            return
        rank_zero_info(f"An {type(exception).__name__} was raised with message: {exception}, saved checkpoint to "
                       f"{filepath}")

    # --- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "best_model_score": self.best_model_score,
                "best_model_path": self.best_model_path, "current_score": self.current_score, "dirpath": self.dirpath,
                "best_k_models": dict(self.best_k_models), "kth_best_model_path": self.kth_best_model_path,
                "kth_value": self.kth_value, "last_model_path": self.last_model_path}

    def load_state_dict(self, state_dict: dict) -> None:
        saved_dir = state_dict.get("dirpath", self.dirpath)
        if saved_dir == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.current_score = state_dict.get("current_score")
            self.best_k_models = dict(state_dict["best_k_models"])
            self.kth_best_model_path = state_dict["kth_best_model_path"]
            self.kth_value = state_dict["kth_value"]
            self.last_model_path = state_dict["last_model_path"]
        else:
            rank_zero_warn(f"ModelCheckpoint's dirpath changed from {saved_dir!r} to {self.dirpath!r}: only "
                           "best_model_path is restored; the top-k ranking starts afresh in the new folder.",
                           UserWarning, stacklevel=3)
        self.best_model_path = state_dict["best_model_path"]

    # --- file names ----------------------------------------------------------------------------------
    def format_checkpoint_name(self, metrics: dict, filename: Optional[str] = None, ver: Optional[int] = None) -> str:
        """The path for ``metrics``: ``"{epoch}-{val_loss:.2f}"`` gives ``dirpath/epoch=3-val_loss=0.12.ckpt``.

        A metric missing from ``metrics`` formats as 0. ``ver`` appends ``-v{ver}``.
        """
        template = filename or self.filename or f"{{epoch}}{self.CHECKPOINT_JOIN_CHAR}{{step}}"

        def fill(match: re.Match) -> str:
            name, spec = match.group(1), (match.group(2) or ":")[1:]
            value = metrics.get(name, 0)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item()
            text = format(value, spec)
            return f"{name}{self.CHECKPOINT_EQUALS_CHAR}{text}" if self.auto_insert_metric_name else text

        name = _FIELD.sub(fill, template)
        if ver is not None:
            name = f"{name}{self.CHECKPOINT_JOIN_CHAR}v{ver}"
        name += self.FILE_EXTENSION
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def _default_dirpath(self, trainer: Any) -> str:
        logger = trainer.logger if trainer.loggers else None
        if logger is None:
            return os.path.join(trainer.default_root_dir, "checkpoints")
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), version, "checkpoints")

    def _free_path(self, trainer: Any, metrics: dict, reusable: str, filename: Optional[str] = None) -> str:
        """The formatted path, with -v1, -v2... while a file we may not overwrite already has that name.

        Decided on rank 0, which alone writes (and sees) the files, and broadcast: every rank calls this."""
        path = self.format_checkpoint_name(metrics, filename)
        if trainer.is_global_zero:
            self._lock_folder(trainer)  # held until this save point's files are written
            ver = self.STARTING_VERSION
            while self._enable_version_counter and os.path.exists(path) and not (path == reusable and
                                                                                 self._still_ours(path)):
                self._warn_clash(path)
                path = self.format_checkpoint_name(metrics, filename, ver=ver)
                ver += 1
        return trainer.strategy.broadcast(path)

    def _still_ours(self, path: str) -> bool:
        """``path`` (the file this callback may replace) is as this process last wrote it. A path known from the
        restored state only (written before a resume, by this run's earlier part) counts as ours."""
        from ember._checkpoint_io import written_here

        return path not in self._wrote or written_here(path)

    def _warn_clash(self, path: str) -> None:
        """Warn, once, when a file appears under a name this run is about to use and this run did not write it
        (nor was it in the folder when the fit started): another live run is saving into the same folder."""
        from ember._checkpoint_io import written_here

        if self._warned_clash or written_here(path) or (os.path.basename(path) in self._found_at_setup
                                                        and path not in self._wrote):
            return  # this process's file (another ModelCheckpoint of this run), or one there before the fit
        self._warned_clash = True
        rank_zero_warn(f"ModelCheckpoint: {path} was written by another run saving into {self.dirpath} (it was not "
                       "there when this fit started, or changed since this run wrote it). This run never replaces "
                       "it and saves under the next -v1, -v2... name instead. Give each run its own folder "
                       "(`dirpath`, or a logger version).", UserWarning, stacklevel=4)

    def _remember(self, trainer: Any, path: str) -> None:
        if trainer.is_global_zero:
            from ember._checkpoint_io import note_written

            note_written(path)  # a symlink or a sharded folder: atomic_save did not record it
            self._wrote.add(path)

    @contextlib.contextmanager
    def _save_point(self) -> Any:
        """The span of one save point: a folder lock taken in it (``_lock_folder``) is released at its end."""
        with contextlib.ExitStack() as stack:
            self._lock_stack = stack
            try:
                yield
            finally:
                self._lock_stack = None

    def _lock_folder(self, trainer: Any) -> None:
        """On rank 0, before a file name is chosen: hold an exclusive lock on ``dirpath`` until the save point
        ends, so that another run saving into the same folder waits and a name checked free is still free
        when the file is renamed into place. Taken only when a file is about to be written (it creates the
        folder)."""
        stack = self._lock_stack
        if stack is None or not trainer.is_global_zero or self.dirpath is None:
            return
        self._lock_stack = None  # once per save point
        stack.enter_context(_folder_lock(self.dirpath))

    # --- saving ------------------------------------------------------------------------------------------
    def _should_skip(self, trainer: Any) -> bool:
        return super()._should_skip(trainer) or trainer.global_step == self._last_global_step_saved

    def _act(self, trainer: Any) -> None:
        """The save after a validation or at the epoch's end: top-k on ``every_n_epochs`` epochs, last.ckpt always."""
        self._save(trainer, top_k=self._every_n_epochs > 0 and (trainer.current_epoch + 1) % self._every_n_epochs == 0)

    def _save(self, trainer: Any, top_k: bool) -> None:
        """A save point: the top-k file (if due) and then last.ckpt, from one read of the metrics."""
        metrics = _name_metrics(trainer)
        self._written = ""  # the top-k file this save point writes, if any: what last.ckpt links to
        if not (top_k and self.save_top_k != 0) and not self.save_last:
            return
        with self._save_point():
            if top_k and self.save_top_k != 0:
                if self.monitor is None:
                    self._save_latest(trainer, metrics)
                else:
                    self._save_ranked(trainer, metrics)
            if self.save_last:
                self._save_last(trainer, metrics)

    def _save_latest(self, trainer: Any, metrics: dict) -> None:
        previous = self.best_model_path
        # set before writing: it is part of the saved state. With save_top_k=-1 a repeated name gets -v1, -v2...
        self.best_model_path = self._free_path(trainer, metrics, reusable=previous if self.save_top_k == 1 else "")
        self._write(trainer, self.best_model_path)
        if self.verbose:
            self._print(trainer, f"saving model to {self.best_model_path!r}")
        if self.save_top_k == 1 and previous:
            self._remove(trainer, previous, self.best_model_path)

    def _save_ranked(self, trainer: Any, metrics: dict) -> None:
        # before the fit's first validation, a missing metric may still come from it: warn once and skip
        value = self._monitored(trainer, metrics, fatal=self._validated or not trainer.run_state.validation_enabled)
        if value is None:
            return
        current = value.detach().cpu().squeeze()
        finite = bool(torch.isfinite(current))
        # every rank votes, always at this point (no rank skips the collective): save only if all agree
        if not trainer.strategy.reduce_boolean_decision(finite and self._in_top_k(current), all=True):
            if self.verbose:
                self._print(trainer, f"{self.monitor!r} is {current.item()}, which is not ranked" if not finite
                            else f"{self.monitor!r} was not in top {self.save_top_k}")
            return
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        replaced = ""
        if len(self.best_k_models) == k:
            replaced = self.kth_best_model_path
            del self.best_k_models[replaced]
        filepath = self._free_path(trainer, metrics, reusable=replaced)
        if trainer.world_size > 1:  # the ranking keeps rank 0's score, so that every rank keeps the same state
            current = trainer.strategy.broadcast(current)
        # update the ranking before writing: it is saved inside the checkpoint
        self.current_score = current
        self.best_k_models[filepath] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.__getitem__)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.__getitem__)
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            self._print(trainer, f"{self.monitor!r} reached {current.item():0.5f} (best "
                                 f"{self.best_model_score.item():0.5f}), saving model to {filepath!r} as top {k}")
        self._write(trainer, filepath)
        if replaced:
            self._remove(trainer, replaced, filepath)

    def _in_top_k(self, current: Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        return bool(self.monitor_op(current, self.best_k_models[self.kth_best_model_path]))

    def _save_last(self, trainer: Any, metrics: dict) -> None:
        previous = self.last_model_path
        self.last_model_path = self._free_path(trainer, metrics, reusable=previous,
                                               filename=self.CHECKPOINT_NAME_LAST)
        target = self._written
        linked = False
        if self.save_last == "link" and target and target != self.last_model_path:
            linked = _link(target, self.last_model_path) if trainer.is_global_zero else False
            if trainer.world_size > 1:  # a file system without symlinks: every rank then writes (FSDP needs all)
                linked = trainer.strategy.broadcast(linked)
        if linked:
            self._remember(trainer, self.last_model_path)
            self._last_global_step_saved = trainer.global_step
        else:  # save_last=True, or nothing new to link to at this save point: a complete file
            self._write(trainer, self.last_model_path)
        if previous:
            self._remove(trainer, previous, self.last_model_path)

    def _write(self, trainer: Any, filepath: str) -> None:
        # on every rank: the Trainer writes on rank 0 (a sharded strategy gathers from all ranks first)
        trainer.save_checkpoint(filepath, weights_only=self.save_weights_only)
        self._remember(trainer, filepath)
        self._written = filepath
        self._last_global_step_saved = trainer.global_step
        self._last_save_time = time.monotonic()
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                after_save = getattr(logger, "after_save_checkpoint", None)
                if after_save is not None:
                    after_save(self)

    def _remove(self, trainer: Any, previous: str, current: str) -> None:
        """Delete ``previous`` (after ``current`` is written), on rank 0 only, unless it is the same file, the
        checkpoint this fit resumed from, a file another run replaced, or a file outside ``dirpath``. A folder
        (a sharded checkpoint) is removed with its contents; a symlink (``last.ckpt``) is removed, never what it
        points to."""
        if previous == current or not trainer.is_global_zero or not self._still_ours(previous):
            return  # ... or another run replaced it since this run wrote it: that file is theirs
        previous_abs = os.path.abspath(previous)
        resumed_from = trainer.ckpt_path
        if resumed_from and os.path.abspath(resumed_from) == previous_abs:
            return
        if self.dirpath and Path(self.dirpath).absolute() in Path(previous_abs).parents:
            _remove_checkpoint(previous_abs)

    def _print(self, trainer: Any, message: str) -> None:
        if trainer.is_global_zero:
            print(f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {message}")


def _name_metrics(trainer: Any) -> dict:
    """The values a file name may use: ``callback_metrics`` with ``epoch`` and ``step``."""
    return {**trainer.callback_metrics, "epoch": torch.tensor(trainer.current_epoch),
            "step": torch.tensor(trainer.global_step)}


@contextlib.contextmanager
def _folder_lock(folder: str) -> Any:
    """An exclusive ``flock`` on the folder itself: no lock file to leave behind, and the lock goes when its
    process dies. Where there is none (Windows, some network file systems), saving proceeds unlocked."""
    fd = None
    try:
        import fcntl

        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass  # no flock here, or an unwritable folder (the save itself then raises the error that names it)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _remove_checkpoint(path: str) -> None:
    """Remove a checkpoint file, link or folder (sharded checkpoints are folders); gone already is fine."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass  # already gone (e.g. a ranking restored from an older checkpoint)


def _link(target: str, link: str) -> bool:
    """Point ``link`` at ``target`` (a relative symlink in the same folder), replacing it atomically.
    False where the file system has no symlinks: the caller then writes a full file."""
    tmp = os.path.join(os.path.dirname(link), f".{os.path.basename(link)}.link.tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.relpath(target, os.path.dirname(link)), tmp)
        os.replace(tmp, link)  # fails where ``link`` is a folder (a sharded last.ckpt): a full save follows
        return True
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return False
