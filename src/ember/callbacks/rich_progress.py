"""RichProgressBar: the progress bar drawn with ``rich`` (an optional dependency: ``pip install rich``).

The same hot-path rules as ``TQDMProgressBar``: per batch the bar does a modulo and reads the clock;
it redraws, and reads metric values (``.item()``, a host-device sync on a GPU), at most
``refresh_per_second`` times a second, plus once at the end of each epoch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Optional, Union

from ember.callbacks.callback import _ignores_outputs
from ember.callbacks.progress import ProgressBar


def _require_rich(what: str) -> None:
    try:
        import rich  # noqa: F401
    except ImportError as e:
        raise ModuleNotFoundError(f"{what} draws with the `rich` package, which is not installed. Install it with "
                                  "`pip install rich`, or use the default TQDMProgressBar / ModelSummary.") from e


@dataclass
class RichProgressBarTheme:
    """Styles of the bar's parts, in rich's style syntax (``"bold red"``, ``"#6206E0"``, ``"dim underline"``).

    ``metrics_format`` formats float metrics; ``metrics_text_delimiter`` separates them.
    """

    description: str = ""
    progress_bar: str = "#6206E0"
    progress_bar_finished: str = "#6206E0"
    progress_bar_pulse: str = "#6206E0"
    batch_progress: str = ""
    time: str = "dim"
    processing_speed: str = "dim underline"
    metrics: str = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(ProgressBar):
    """A progress bar drawn with rich, one line per bar:
    ``Epoch 1/9 ━━━━━━━━ 32/32 0:00:01 • 0:00:00 35.80it/s v_num: 0 loss: 0.123``.

    Args:
        refresh_rate: consider redrawing every this many batches; 0 hides the bars.
        leave: keep each finished epoch's bar on screen instead of reusing one bar.
        theme: the styles (``RichProgressBarTheme``).
        console_kwargs: arguments of the ``rich.console.Console`` the bar draws on (e.g. ``record=True``).
        refresh_per_second: the most redraws (and metric reads) per second.

    >>> import ember
    >>> trainer = ember.Trainer(callbacks=[RichProgressBar(leave=True)])  # doctest: +SKIP
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False, theme: Optional[RichProgressBarTheme] = None,
                 console_kwargs: Optional[dict[str, Any]] = None, refresh_per_second: float = 4) -> None:
        _require_rich("RichProgressBar")
        super().__init__()
        if not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"RichProgressBar(refresh_rate={refresh_rate!r}): use a positive number of batches, or "
                             "0 to hide the bar.")
        if refresh_per_second <= 0:
            raise ValueError(f"RichProgressBar(refresh_per_second={refresh_per_second!r}) must be > 0.")
        self._refresh_rate = refresh_rate
        self._leave = leave
        self.theme = theme if theme is not None else RichProgressBarTheme()
        self._console_kwargs = dict(console_kwargs or {})
        self._min_interval = 1.0 / refresh_per_second
        self._console: Any = None
        self.progress: Any = None  # the rich.progress.Progress on screen while a stage runs
        self.train_progress_bar_id: Optional[int] = None
        self.val_progress_bar_id: Optional[int] = None
        self.test_progress_bar_id: Optional[int] = None
        self.predict_progress_bar_id: Optional[int] = None
        self._train_total: Optional[int] = None
        self._eval_totals: list[Optional[int]] = []
        self._eval_description = ""
        self._eval_dataloader_idx = 0
        self._last_draw = -math.inf  # time.monotonic() of the last redraw

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._refresh_rate > 0

    # --- the display: override configure_columns to change it -------------------------------------------
    def configure_columns(self, trainer: Any) -> list:
        """The columns of every bar: description, bar, batches, elapsed • remaining, speed, metrics."""
        from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.text import Text

        theme = self.theme

        class Batches(ProgressColumn):
            def render(self, task: Any) -> Text:
                total = "?" if task.total is None else int(task.total)
                return Text(f"{int(task.completed)}/{total}", style=theme.batch_progress)

        class Speed(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text("" if speed is None else f"{speed:.2f}it/s", style=theme.processing_speed)

        return [
            TextColumn("{task.description}", style=theme.description),
            BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                      pulse_style=theme.progress_bar_pulse),
            Batches(),
            TimeElapsedColumn(),
            TextColumn("•", style=theme.time),
            TimeRemainingColumn(),
            Speed(),
            TextColumn("{task.fields[metrics]}", style=theme.metrics),
        ]

    def _init_progress(self, trainer: Any) -> None:
        if self.progress is not None or not self.is_enabled:
            return
        from rich.console import Console
        from rich.progress import Progress

        if self._console is None:
            self._console = Console(**self._console_kwargs)
        # no refresh thread: the bar redraws from the hooks, at most refresh_per_second times a second
        self.progress = Progress(*self.configure_columns(trainer), console=self._console, auto_refresh=False)
        self.progress.start()

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
        self.progress = None
        self.train_progress_bar_id = self.val_progress_bar_id = None
        self.test_progress_bar_id = self.predict_progress_bar_id = None

    def _due(self, n: int, total: Optional[int]) -> bool:
        """Whether batch ``n`` (1-based) redraws: every ``refresh_rate`` batches, throttled in time; the last always."""
        if n == total:
            return True
        if n % self._refresh_rate:
            return False
        return time.monotonic() - self._last_draw >= self._min_interval

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        self.progress.refresh()

    def _metrics_text(self, trainer: Any, pl_module: Any) -> str:
        fmt = self.theme.metrics_format
        return self.theme.metrics_text_delimiter.join(
            f"{k}: {v:{fmt}}" if isinstance(v, float) else f"{k}: {v}"
            for k, v in self.get_metrics(trainer, pl_module).items())

    # --- training ------------------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self._init_progress(trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._init_progress(trainer)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.progress is None:
            return
        total = self._train_total = _total(trainer.num_training_batches)
        epoch = trainer.current_epoch
        max_epochs = trainer.max_epochs
        description = f"Epoch {epoch}/{max_epochs - 1}" if max_epochs not in (None, -1) else f"Epoch {epoch}"
        bar = self.train_progress_bar_id
        if bar is None or self._leave:
            if bar is not None:  # the finished epoch stays on screen with its final metrics
                self.progress.update(bar, metrics=self._metrics_text(trainer, pl_module))
            self.train_progress_bar_id = self.progress.add_task(description, total=total, metrics="")
        else:
            self.progress.reset(bar, total=total, description=description)  # the last metrics stay until refreshed
        self._draw()

    @_ignores_outputs
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self.train_progress_bar_id
        if bar is None:
            return
        n = batch_idx + 1
        if not self._due(n, self._train_total):
            return
        self.progress.update(bar, completed=n, metrics=self._metrics_text(trainer, pl_module))  # may sync a GPU
        self._draw()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._show_train_metrics(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._show_train_metrics(trainer, pl_module)  # now with the last epoch's epoch-level values

    def _show_train_metrics(self, trainer: Any, pl_module: Any) -> None:
        if self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, metrics=self._metrics_text(trainer, pl_module))
            self._draw()

    # --- validation, test, predict ---------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._init_progress(trainer)
        if self.progress is None:
            return
        if trainer.sanity_checking:
            self.val_progress_bar_id = self._start_eval("Sanity Checking", trainer.num_sanity_val_batches)
        else:
            self.val_progress_bar_id = self._start_eval("Validation", trainer.num_val_batches)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._advance_eval(self.val_progress_bar_id, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        bar = self.val_progress_bar_id
        if bar is None:
            return
        if self.train_progress_bar_id is not None or trainer.sanity_checking:  # inside fit: a transient bar
            self.progress.remove_task(bar)
            self.val_progress_bar_id = None
            self._show_train_metrics(trainer, pl_module)  # the new validation values
        else:
            self._draw()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._init_progress(trainer)
        if self.progress is not None:
            self.test_progress_bar_id = self._start_eval("Testing", trainer.num_test_batches)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._advance_eval(self.test_progress_bar_id, batch_idx, dataloader_idx)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._init_progress(trainer)
        if self.progress is not None:
            self.predict_progress_bar_id = self._start_eval("Predicting", trainer.num_predict_batches)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._advance_eval(self.predict_progress_bar_id, batch_idx, dataloader_idx)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stop_progress()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop_progress()

    # --- helpers -----------------------------------------------------------------------------------------
    def _start_eval(self, description: str, num_batches: list) -> int:
        """One bar for all of a stage's dataloaders, reset when the next dataloader starts."""
        self._eval_totals = [_total(n) for n in num_batches]
        self._eval_description = description
        self._eval_dataloader_idx = 0
        bar = self.progress.add_task(self._eval_label(0), total=self._eval_totals[0] if self._eval_totals else None,
                                     metrics="")
        self._draw()
        return bar

    def _eval_label(self, dataloader_idx: int) -> str:
        if len(self._eval_totals) > 1:
            return f"{self._eval_description} DataLoader {dataloader_idx}"
        return self._eval_description

    def _advance_eval(self, bar: Optional[int], batch_idx: int, dataloader_idx: int) -> None:
        if bar is None:
            return
        if dataloader_idx != self._eval_dataloader_idx:
            self._eval_dataloader_idx = dataloader_idx
            total = self._eval_totals[dataloader_idx] if dataloader_idx < len(self._eval_totals) else None
            self.progress.reset(bar, total=total, description=self._eval_label(dataloader_idx))
        n = batch_idx + 1
        total = self._eval_totals[dataloader_idx] if dataloader_idx < len(self._eval_totals) else None
        if self._due(n, total):
            self.progress.update(bar, completed=n)
            self._draw()


def _total(num_batches: Union[int, float]) -> Optional[int]:
    """rich's ``total``: None for an iterable without a length (``math.inf`` batches)."""
    return None if num_batches == math.inf else int(num_batches)
