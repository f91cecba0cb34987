"""Progress bars: the ``ProgressBar`` base and the default ``TQDMProgressBar``.

The bar sits on the hot path (a hook after every batch), so per step it only counts batches.
Metric values, which may live on a GPU, are read (``.item()``, a host-device sync) at most
once per ``mininterval`` seconds and at the end of an epoch.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional, Union

from tqdm import tqdm

from ember.callbacks.callback import Callback, _does_not_log, _ignores_outputs


class ProgressBar(Callback):
    """Base class of progress bars: the Trainer keeps exactly one, reachable as
    ``trainer.progress_bar_callback``. Subclass it to report progress elsewhere.

    >>> class PrintEpochs(ProgressBar):
    ...     def on_train_epoch_end(self, trainer, pl_module):
    ...         if self.is_enabled:
    ...             print(trainer.current_epoch, self.get_metrics(trainer, pl_module))
    """

    def __init__(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        """Stop showing progress (the Trainer does this on every process but global rank 0)."""
        self._enabled = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not trainer.is_global_zero:
            self.disable()

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Union[int, float, str]]:
        """The values to show: ``trainer.progress_bar_metrics`` as numbers, and ``v_num``, the logger's version.

        Tensors are read with ``.item()``, a host-device sync: call this sparingly.
        """
        items: dict[str, Union[int, float, str]] = {}
        logger = trainer.logger
        if logger is not None and logger.version is not None:
            version = logger.version
            items["v_num"] = version[-4:] if isinstance(version, str) else version  # long names would crowd the bar
        for key, value in trainer.progress_bar_metrics.items():
            if hasattr(value, "item"):
                value = value.item()
            items[key] = value if isinstance(value, (int, float, str)) else str(value)
        return items


class TQDMProgressBar(ProgressBar):
    """The default progress bar, drawn with tqdm on ``sys.stdout``.

    One bar per training epoch (``Epoch N``), a bar under it while validation runs, and bars for
    sanity checking, testing and prediction.

    Args:
        refresh_rate: advance the bar every this many batches; 0 hides the bars.
        process_position: the line to draw on, for several bars from different processes.
        leave: keep each finished epoch's bar on screen instead of redrawing one bar.

    >>> import ember
    >>> trainer = ember.Trainer(callbacks=[TQDMProgressBar(refresh_rate=10)])  # doctest: +SKIP

    Customise a bar by overriding its ``init_*_tqdm`` method:

    >>> class NoValidationBar(TQDMProgressBar):
    ...     def init_validation_tqdm(self):
    ...         bar = super().init_validation_tqdm()
    ...         bar.disable = True
    ...         return bar
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__()
        if refresh_rate < 0:
            raise ValueError(f"TQDMProgressBar(refresh_rate={refresh_rate}): use a positive number of batches, "
                             "or 0 to hide the bar.")
        self._refresh_rate = refresh_rate
        self._process_position = process_position
        self._leave = leave
        self.train_progress_bar: Optional[tqdm] = None
        self.val_progress_bar: Optional[tqdm] = None
        self.test_progress_bar: Optional[tqdm] = None
        self.predict_progress_bar: Optional[tqdm] = None
        self._train_total: Optional[int] = None
        self._eval_description = ""
        self._eval_totals: list[Optional[int]] = []
        self._eval_dataloader_idx = 0
        self._last_postfix = -math.inf  # time.monotonic() of the train bar's last metric read

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        return self._process_position

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._refresh_rate > 0

    @property
    def _idle_hooks(self) -> tuple:
        """A hidden bar (``refresh_rate=0``, or a process other than global rank 0) has nothing to do per batch: the
        Trainer leaves these hooks out when it first calls them in a run."""
        if self.is_enabled:
            return ()
        return ("on_train_batch_end", "on_validation_batch_end", "on_test_batch_end", "on_predict_batch_end")

    # --- creating bars: override these to customise them ---------------------------------------------
    def _new_bar(self, desc: str, position: int, leave: bool) -> tqdm:
        return tqdm(desc=desc, position=position, leave=leave, disable=self.is_disabled, file=sys.stdout,
                    dynamic_ncols=True, smoothing=0)

    def init_train_tqdm(self) -> tqdm:
        return self._new_bar("Training", 2 * self._process_position, leave=True)

    def init_sanity_tqdm(self) -> tqdm:
        return self._new_bar("Sanity Checking", 2 * self._process_position, leave=False)

    def init_validation_tqdm(self) -> tqdm:
        under_train_bar = self.train_progress_bar is not None  # validation inside fit: a transient bar below
        return self._new_bar("Validation", 2 * self._process_position + under_train_bar, leave=not under_train_bar)

    def init_test_tqdm(self) -> tqdm:
        return self._new_bar("Testing", 2 * self._process_position, leave=True)

    def init_predict_tqdm(self) -> tqdm:
        return self._new_bar("Predicting", 2 * self._process_position, leave=True)

    # --- training ------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.is_enabled:
            self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        bar = self.train_progress_bar
        if bar is None:
            return
        if self._leave and bar.n:  # keep the finished epoch on screen, with its final metrics
            self._show_metrics(bar, trainer, pl_module)
            bar.close()
            bar = self.train_progress_bar = self.init_train_tqdm()
        self._train_total = _total(trainer.num_training_batches)
        bar.set_description(f"Epoch {trainer.current_epoch}", refresh=False)
        bar.reset(total=self._train_total)  # redraws
        self._last_postfix = time.monotonic()  # the first read waits one interval, like tqdm's own redraw

    @_does_not_log
    @_ignores_outputs
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is None:
            return
        n = batch_idx + 1
        if n % self._refresh_rate and n != self._train_total:
            return
        bar.n = n  # the count moves every refresh_rate batches; the bar is drawn at most every mininterval:
        now = time.monotonic()
        due = now - self._last_postfix >= bar.mininterval
        if not due and n != self._train_total:
            return  # tqdm would not redraw yet, so its update() is not called (code run per batch slows the step)
        if due:
            self._last_postfix = now
            if not bar.disable:  # metrics read as rarely as the bar is drawn: reading them may sync the GPU
                bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.update(0)  # tqdm redraws, its rate computed from the batches counted since its last redraw

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.train_progress_bar is not None:
            self._show_metrics(self.train_progress_bar, trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        bar = self.train_progress_bar
        if bar is not None:
            self._show_metrics(bar, trainer, pl_module)  # now including the last epoch's epoch-level values
            bar.close()
            self.train_progress_bar = None

    # --- sanity check, validation, test, predict ---------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.is_enabled:
            return
        if trainer.sanity_checking:
            self.val_progress_bar = self.init_sanity_tqdm()
            self._start_eval(self.val_progress_bar, "Sanity Checking", trainer.num_sanity_val_batches)
        else:
            self.val_progress_bar = self.init_validation_tqdm()
            self._start_eval(self.val_progress_bar, "Validation", trainer.num_val_batches)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._advance_eval(self.val_progress_bar, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.val_progress_bar = _close(self.val_progress_bar)
        if self.train_progress_bar is not None:
            self._show_metrics(self.train_progress_bar, trainer, pl_module)  # the new validation values

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        if self.is_enabled:
            self.test_progress_bar = self.init_test_tqdm()
            self._start_eval(self.test_progress_bar, "Testing", trainer.num_test_batches)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._advance_eval(self.test_progress_bar, batch_idx, dataloader_idx)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.test_progress_bar = _close(self.test_progress_bar)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        if self.is_enabled:
            self.predict_progress_bar = self.init_predict_tqdm()
            self._start_eval(self.predict_progress_bar, "Predicting", trainer.num_predict_batches)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._advance_eval(self.predict_progress_bar, batch_idx, dataloader_idx)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.predict_progress_bar = _close(self.predict_progress_bar)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.train_progress_bar = _close(self.train_progress_bar)
        self.val_progress_bar = _close(self.val_progress_bar)
        self.test_progress_bar = _close(self.test_progress_bar)
        self.predict_progress_bar = _close(self.predict_progress_bar)

    # --- helpers -----------------------------------------------------------------------------------------
    def _show_metrics(self, bar: tqdm, trainer: Any, pl_module: Any) -> None:
        if not bar.disable:
            self._last_postfix = time.monotonic()
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _start_eval(self, bar: tqdm, description: str, num_batches: list) -> None:
        """One bar for all of a stage's dataloaders, reset when the next dataloader starts."""
        self._eval_totals = [_total(n) for n in num_batches]
        self._eval_dataloader_idx = 0
        self._eval_description = description
        self._reset_eval(bar, 0)

    def _reset_eval(self, bar: tqdm, dataloader_idx: int) -> None:
        self._eval_dataloader_idx = dataloader_idx
        several = len(self._eval_totals) > 1
        bar.set_description(f"{self._eval_description} DataLoader {dataloader_idx}" if several
                            else self._eval_description, refresh=False)
        bar.reset(total=self._eval_totals[dataloader_idx] if dataloader_idx < len(self._eval_totals) else None)

    def _advance_eval(self, bar: Optional[tqdm], batch_idx: int, dataloader_idx: int) -> None:
        if bar is None:
            return
        if dataloader_idx != self._eval_dataloader_idx:
            self._reset_eval(bar, dataloader_idx)
        n = batch_idx + 1
        if n % self._refresh_rate == 0 or n == self._eval_totals[dataloader_idx]:
            bar.update(n - bar.n)


def _total(num_batches: Union[int, float]) -> Optional[int]:
    """tqdm's ``total``: None for an iterable without a length (``math.inf`` batches)."""
    return None if num_batches == math.inf else int(num_batches)


def _close(bar: Optional[tqdm]) -> None:
    if bar is not None:
        bar.close()
    return None
