"""SpikeDetection: stop training when the loss jumps far above its running mean, and record the batches to skip."""
from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Mapping
from typing import Any, Optional, Union

import torch

from ember.callbacks.callback import Callback


class TrainingSpikeException(RuntimeError):
    """Raised by SpikeDetection when the loss of a batch is a spike."""

    def __init__(self, batch_idx: int, *args: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args)
        self.batch_idx = batch_idx


class SpikeDetection(Callback):
    """Raise ``TrainingSpikeException`` when a batch's loss is a spike, after writing the indices of that batch
    and the one before it to ``exclude_batches_path`` (a JSON list), so that a restarted run can skip them.

    A loss is a spike when it is not an improvement on the previous batch's loss (lower in ``mode="min"``) and
    differs from the running mean of the last ``window`` losses by at least ``atol`` (when given) and by at
    least ``rtol`` times that mean (when given). With ``finite_only=True`` (the default) a NaN or infinite loss
    is a spike too; with False, non-finite losses are neither spikes nor counted in the mean. Batches before
    ``warmup`` (``batch_idx`` of the epoch) are not checked. Under several processes a spike on any rank stops
    every rank. Note that ember itself stops at a non-finite loss by default (``Trainer(on_nonfinite_loss=
    "raise")``), before this callback sees it; batches skipped with ``on_nonfinite_loss="skip"`` are not checked.

    Args:
        mode: "min" or "max": which direction is an improvement.
        window: how many recent losses the running mean covers.
        warmup: the first batch index that is checked.
        atol, rtol: absolute and relative tolerances around the running mean (None: that test is skipped).
        exclude_batches_path: a ``.json`` file or a folder for ``skip_batches.json``; default
            ``{default_root_dir}/skip_batches.json``.
        finite_only: whether a non-finite loss counts as a spike (see above).

    >>> from ember.callbacks import SpikeDetection
    >>> spike = SpikeDetection(window=10, rtol=2.0)  # a loss 3x the recent mean (and not better) stops the run
    """

    def __init__(self, mode: str = "min", window: int = 10, warmup: int = 1, atol: Optional[float] = None,
                 rtol: Optional[float] = 2.0, exclude_batches_path: Optional[Union[str, os.PathLike]] = None,
                 finite_only: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"SpikeDetection(mode={mode!r}) is not valid: use 'min' or 'max'.")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"SpikeDetection(window={window!r}) must be an int >= 1.")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.exclude_batches_path = exclude_batches_path
        self.finite_only = finite_only
        self.last_val: Union[torch.Tensor, float] = 0.0
        self.bad_batches: list = []
        self._recent: deque = deque(maxlen=window)  # detached loss tensors, on the loss's device

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if outputs is None:
            return  # a batch ember skipped (Trainer(on_nonfinite_loss="skip")): no loss to check
        if isinstance(outputs, torch.Tensor):
            loss = outputs.detach()
        elif isinstance(outputs, Mapping) and "loss" in outputs:
            loss = outputs["loss"].detach()
        else:
            raise TypeError(f"SpikeDetection needs the loss: training_step must return a tensor or a dict with a "
                            f"'loss' key, got {type(outputs).__qualname__}.")
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.path.join(trainer.default_root_dir, "skip_batches.json")
        if not str(self.exclude_batches_path).endswith(".json"):
            self.exclude_batches_path = os.path.join(self.exclude_batches_path, "skip_batches.json")
        # a host-device sync per batch: the price of checking every loss (the user asked for it)
        is_spike = batch_idx >= self.warmup and self._is_spike(loss)
        if trainer.strategy.reduce_boolean_decision(is_spike, all=False):  # a spike on any rank stops them all
            self._handle_spike(trainer, batch_idx)
        finite = self.finite_only or trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss).all()),
                                                                              all=True)
        if finite:
            self._recent.append(loss)
            self.last_val = loss

    def _is_spike(self, loss: torch.Tensor) -> bool:
        if self.finite_only and not bool(torch.isfinite(loss).all()):
            return True
        if not self._recent:
            return False  # nothing to compare with yet
        diff = loss - self.last_val
        better = (diff <= 0) if self.mode == "min" else (diff >= 0)
        if bool(better.all()):
            return False
        mean = torch.stack([v.to(loss.device, torch.float32) for v in self._recent]).mean()
        gap = (loss - mean).abs()
        atol_hit = self.atol is None or bool(gap >= abs(self.atol))
        rtol_hit = self.rtol is None or bool(gap >= (self.rtol * mean).abs())
        return atol_hit and rtol_hit

    def _handle_spike(self, trainer: Any, batch_idx: int) -> None:
        # the batch before is excluded too: it may have corrupted the weights that this batch's loss reveals
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if trainer.is_global_zero:
            path = os.fspath(self.exclude_batches_path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(self.bad_batches, f, indent=4)
            os.replace(tmp, path)  # never a half-written list under the final name
        raise TrainingSpikeException(batch_idx=batch_idx)

    def state_dict(self) -> dict:
        return {"last_val": float(self.last_val), "mode": self.mode, "warmup": self.warmup, "atol": self.atol,
                "rtol": self.rtol, "bad_batches": list(self.bad_batches),
                "bad_batches_path": None if self.exclude_batches_path is None else os.fspath(self.exclude_batches_path),
                "recent": [float(v) for v in self._recent]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_val = state_dict["last_val"]
        self.mode = state_dict["mode"]
        self.warmup = state_dict["warmup"]
        self.atol = state_dict["atol"]
        self.rtol = state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
        self._recent = deque((torch.tensor(v) for v in state_dict.get("recent", [])), maxlen=self.window)


__all__ = ["SpikeDetection", "TrainingSpikeException"]
