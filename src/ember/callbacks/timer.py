"""Timer: measure the time spent training, validating and testing, and stop training after a duration."""
from __future__ import annotations

import datetime
import re
import time
from typing import Any, Optional, Union

from ember.callbacks.callback import Callback

_STAGES = ("train", "sanity_check", "validate", "test", "predict")


class Timer(Callback):
    """Stop ``fit`` once the training time exceeds ``duration``, checked after every batch
    (``interval="step"``) or every epoch (``interval="epoch"``); it sets ``trainer.should_stop``.

    ``duration`` is ``"DD:HH:MM:SS"``, a ``datetime.timedelta`` or a dict of timedelta arguments.
    The training time elapsed is saved in checkpoints, so a resumed run counts the time already spent.
    Under several processes each rank reads its own clock; the Trainer's stop vote makes every rank stop at
    the same batch once any rank is out of time, and only global rank 0 prints.

    >>> from datetime import timedelta
    >>> from ember.callbacks.timer import Timer
    >>> timer = Timer(duration="00:12:00:00")          # 12 hours
    >>> timer = Timer(duration=timedelta(weeks=1))
    >>> timer = Timer(duration=dict(minutes=30), interval="epoch")
    >>> # trainer = ember.Trainer(callbacks=[timer]); trainer.fit(model)
    >>> # timer.time_elapsed("train"), timer.time_remaining(), timer.start_time("validate")
    """

    def __init__(self, duration: Union[str, datetime.timedelta, dict, None] = None, interval: str = "step",
                 verbose: bool = True) -> None:
        if isinstance(duration, str):
            match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
            if not match:
                raise ValueError(f"Timer(duration={duration!r}) is not a valid duration: use 'DD:HH:MM:SS' (e.g. "
                                 "'00:12:00:00' for 12 hours), a datetime.timedelta, or a dict like {'hours': 12}.")
            d, h, m, s = map(int, match.groups())
            duration = datetime.timedelta(days=d, hours=h, minutes=m, seconds=s)
        elif isinstance(duration, dict):
            duration = datetime.timedelta(**duration)
        elif duration is not None and not isinstance(duration, datetime.timedelta):
            raise TypeError(f"Timer(duration={duration!r}) must be 'DD:HH:MM:SS', a datetime.timedelta or a dict; "
                            f"got a {type(duration).__name__}.")
        if interval not in ("step", "epoch"):
            raise ValueError(f"Timer(interval={interval!r}) must be 'step' or 'epoch'.")
        self._duration: Optional[float] = duration.total_seconds() if duration is not None else None
        self._interval = interval
        self._verbose = verbose
        self._start_time: dict[str, Optional[float]] = dict.fromkeys(_STAGES)
        self._end_time: dict[str, Optional[float]] = dict.fromkeys(_STAGES)
        self._offset = 0.0  # training time spent before a resume

    # --- what users read ------------------------------------------------------------------------------
    def start_time(self, stage: str = "train") -> Optional[float]:
        """When ``stage`` started (``time.monotonic()`` seconds), or None if it has not run."""
        return self._start_time[_check_stage(stage)]

    def end_time(self, stage: str = "train") -> Optional[float]:
        """When ``stage`` ended (``time.monotonic()`` seconds), or None if it has not ended."""
        return self._end_time[_check_stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds spent in ``stage``; for "train", including the time before a resume."""
        start, end = self.start_time(stage), self.end_time(stage)
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return (end if end is not None else time.monotonic()) - start + offset

    def time_remaining(self, stage: str = "train") -> Optional[float]:
        """Seconds left of ``duration`` (negative once exceeded), or None without a duration."""
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    # --- hooks ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_time["train"] = time.monotonic()
        self._end_time["train"] = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_time["train"] = time.monotonic()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_time["validate"], self._end_time["validate"] = time.monotonic(), None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_time["validate"] = time.monotonic()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_time["test"], self._end_time["test"] = time.monotonic(), None

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_time["test"] = time.monotonic()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._duration is not None:
            self._check_time_remaining(trainer)  # a resumed run may already be out of time

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in _STAGES}}

    def load_state_dict(self, state_dict: dict) -> None:
        self._offset = float(state_dict.get("time_elapsed", {}).get("train", 0.0))

    def _check_time_remaining(self, trainer: Any) -> None:
        assert self._duration is not None
        if self.time_elapsed("train") < self._duration:
            return
        if self._verbose and not trainer.should_stop and trainer.is_global_zero:
            elapsed = datetime.timedelta(seconds=int(self.time_elapsed("train")))
            print(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")
        trainer.should_stop = True


def _check_stage(stage: str) -> str:
    if stage not in _STAGES:
        raise ValueError(f"Timer: unknown stage {stage!r}; use one of {list(_STAGES)}.")
    return stage
