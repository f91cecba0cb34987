"""ThroughputMonitor: batches, samples (and items, FLOPs, MFU) per second, logged on the logging steps.

Per batch it only adds up counts; the clock is read, and a GPU synchronised, only on the steps that log.
Rates are taken between two such synchronised readings at least ``window_size`` batches apart, so they
measure finished work rather than the time the host took to queue kernels.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Optional

import torch

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn


class ThroughputMonitor(Callback):
    """Log throughput for training, validation, testing and prediction, with Lightning's keys (one device):
    ``train/time``, ``train/batches``, ``train/samples``, ``train/lengths`` (with ``length_fn``), and once
    ``window_size`` batches have run, ``train/device/batches_per_sec``, ``train/device/samples_per_sec``,
    ``train/device/items_per_sec`` (with ``length_fn``), ``train/device/flops_per_sec`` (when the module has a
    ``flops_per_batch`` attribute) and ``train/device/mfu`` (when the device's peak FLOP/s is known or given as
    ``available_flops``). Time spent validating during ``fit`` is not counted as training time.

    ``batch_size_fn(batch)`` gives the number of samples in a batch and ``length_fn(batch)`` the number of
    items (e.g. tokens); both should return Python ints (reading a CUDA tensor's value would synchronise).

    >>> import torch
    >>> from ember.callbacks.throughput_monitor import ThroughputMonitor, measure_flops
    >>> model = torch.nn.Linear(32, 2)
    >>> measure_flops(model, lambda: model(torch.randn(8, 32)))  # forward only: 2 * 8 * 32 * 2
    1024
    >>> monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].size(0), window_size=50)
    >>> # module.flops_per_batch = measure_flops(model, forward_fn, loss_fn=torch.Tensor.sum)
    >>> # trainer = ember.Trainer(callbacks=[monitor], log_every_n_steps=10)
    """

    def __init__(self, batch_size_fn: Callable[[Any], int], length_fn: Optional[Callable[[Any], int]] = None,
                 window_size: int = 100, separator: str = "/", available_flops: Optional[float] = None) -> None:
        if not callable(batch_size_fn):
            raise TypeError(f"ThroughputMonitor(batch_size_fn={batch_size_fn!r}) must be a function of the batch that "
                            "returns its number of samples, e.g. lambda batch: batch[0].size(0).")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f"ThroughputMonitor(window_size={window_size!r}) must be an int >= 2 (the number of "
                             "batches the rates average over).")
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.window_size = window_size
        self.separator = separator
        self.available_flops = available_flops
        self._given_flops = available_flops
        self._meters: dict[str, _Meter] = {}
        self._eval_steps: dict[str, int] = {}  # evaluation batches across runs: the step their rows are logged at
        self._paused_at: Optional[float] = None
        self._cuda = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        device = trainer.strategy.root_device
        self._cuda = device.type == "cuda"
        if self._given_flops is None:
            self.available_flops = get_available_flops(device, _compute_dtype(trainer.precision))
        if not trainer.loggers:
            rank_zero_warn("ThroughputMonitor: the Trainer has no logger, so the throughput is not recorded. Give the "
                           "Trainer a logger, or remove the callback.", stacklevel=3)

    # --- the three steps: start a stage's clock, count a batch, log on logging steps -------------------------
    def _start(self, stage: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()  # once per run of a stage: the clock starts with the device idle
        self._meters[stage] = _Meter(self.window_size, time.perf_counter(), self.length_fn is not None)

    def _update(self, pl_module: Any, stage: str, batch: Any) -> _Meter:
        meter = self._meters[stage]
        meter.batches += 1
        meter.samples += self.batch_size_fn(batch)
        if self.length_fn is not None:
            meter.lengths += self.length_fn(batch)
        flops = getattr(pl_module, "flops_per_batch", None)
        if flops is not None:
            meter.flops += flops
            meter.flop_batches += 1
        return meter

    def _log(self, trainer: Any, stage: str, step: int, extra: Optional[dict] = None) -> None:
        if self._cuda:
            torch.cuda.synchronize()  # a sync point, on logging steps only: the clock then sees finished work
        meter = self._meters[stage]
        sep = self.separator
        metrics = {f"{stage}{sep}{k}": v for k, v in meter.compute(time.perf_counter(), self.available_flops,
                                                                   sep).items()}
        metrics.update(extra or {})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # --- training ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("train")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._update(pl_module, "train", batch)
        run = trainer.run_state  # log where the Trainer logs (batches_stepped already counts this batch)
        if run.is_logging_step:
            self._log(trainer, "train", run.batches_stepped - 1, {"epoch": trainer.current_epoch})

    # --- evaluation ----------------------------------------------------------------------------------------
    def _eval_start(self, trainer: Any, stage: str) -> None:
        if trainer.sanity_checking:
            return
        if stage == "validate" and "train" in self._meters and trainer.state.fn == "fit":
            self._paused_at = time.perf_counter()  # the training clock stops while validating
        self._start(stage)

    def _eval_batch_end(self, trainer: Any, pl_module: Any, stage: str, batch: Any) -> None:
        if trainer.sanity_checking:
            return
        meter = self._update(pl_module, stage, batch)
        self._eval_steps[stage] = self._eval_steps.get(stage, 0) + 1
        if meter.batches % trainer.log_every_n_steps == 0:
            self._log(trainer, stage, self._eval_steps[stage])

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start(trainer, "validate")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._eval_batch_end(trainer, pl_module, "validate", batch)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._paused_at is not None:
            self._meters["train"].t0 += time.perf_counter() - self._paused_at
            self._paused_at = None

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start(trainer, "test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._eval_batch_end(trainer, pl_module, "test", batch)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start(trainer, "predict")

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._eval_batch_end(trainer, pl_module, "predict", batch)


class _Meter:
    """Running counts of one stage, and the clock readings taken on logging steps."""

    def __init__(self, window: int, t0: float, with_lengths: bool) -> None:
        self.window = window
        self.t0 = t0
        self.with_lengths = with_lengths
        self.batches = self.samples = self.lengths = self.flops = self.flop_batches = 0
        # (elapsed, batches, samples, lengths, flops, flop_batches) at each reading, the start included
        self.readings: deque = deque([(0.0, 0, 0, 0, 0, 0)])

    def compute(self, now: float, available_flops: Optional[float], sep: str) -> dict:
        elapsed = now - self.t0
        metrics: dict = {"time": elapsed, "batches": self.batches, "samples": self.samples}
        if self.with_lengths:
            metrics["lengths"] = self.lengths
        # the base is the latest reading at least `window` batches back; older ones are no longer needed
        oldest_allowed = self.batches - self.window
        readings = self.readings
        while len(readings) > 1 and readings[1][1] <= oldest_allowed:
            readings.popleft()
        base = readings[0] if readings[0][1] <= oldest_allowed else None
        readings.append((elapsed, self.batches, self.samples, self.lengths, self.flops, self.flop_batches))
        if base is None or elapsed <= base[0]:
            return metrics  # fewer than `window` batches so far
        dt = elapsed - base[0]
        metrics[f"device{sep}batches_per_sec"] = (self.batches - base[1]) / dt
        metrics[f"device{sep}samples_per_sec"] = (self.samples - base[2]) / dt
        if self.with_lengths:
            metrics[f"device{sep}items_per_sec"] = (self.lengths - base[3]) / dt
        if self.flop_batches - base[5] == self.batches - base[1]:  # every batch of the window gave its FLOPs
            flops_per_sec = (self.flops - base[4]) / dt
            metrics[f"device{sep}flops_per_sec"] = flops_per_sec
            if available_flops:
                metrics[f"device{sep}mfu"] = flops_per_sec / available_flops
        return metrics


def measure_flops(model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
                  loss_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> int:
    """FLOPs of one call of ``forward_fn`` (and of ``loss_fn`` plus the backward pass when given), counted by
    ``torch.utils.flop_counter.FlopCounterMode``. Build the model on the ``meta`` device to count without
    computing::

        with torch.device("meta"):
            model = MyModel()
            x = torch.randn(2, 32)
        flops = measure_flops(model, lambda: model(x), loss_fn=torch.Tensor.sum)
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        if loss_fn is None:
            forward_fn()
        else:
            loss_fn(forward_fn()).backward()
    return counter.get_total_flops()


# Peak dense FLOP/s per device from the vendors' data sheets (no sparsity), by compute dtype.
_CUDA_FLOPS: dict = {
    "h200": {torch.float64: 34e12, torch.float32: 67e12, "tfloat32": 494.7e12, torch.bfloat16: 989.4e12,
             torch.float16: 989.4e12},
    "h100 sxm": {torch.float64: 34e12, torch.float32: 67e12, "tfloat32": 494.7e12, torch.bfloat16: 989.4e12,
                 torch.float16: 989.4e12},
    "h100 pcie": {torch.float64: 26e12, torch.float32: 51e12, "tfloat32": 378e12, torch.bfloat16: 756e12,
                  torch.float16: 756e12},
    "a100": {torch.float64: 9.7e12, torch.float32: 19.5e12, "tfloat32": 156e12, torch.bfloat16: 312e12,
             torch.float16: 312e12},
    "l4": {torch.float32: 30.3e12, "tfloat32": 60e12, torch.bfloat16: 121e12, torch.float16: 121e12},
    "a10g": {torch.float32: 31.2e12, "tfloat32": 62.5e12, torch.bfloat16: 125e12, torch.float16: 125e12},
}


def get_available_flops(device: torch.device, dtype: torch.dtype) -> Optional[float]:
    """The device's peak FLOP/s for ``dtype`` when ember knows the device (a few NVIDIA GPUs), else None.
    Pass ``ThroughputMonitor(available_flops=...)`` for others."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    if "h200" in name:
        chip = "h200"
    elif "h100" in name:
        chip = "h100 pcie" if "pcie" in name else "h100 sxm"
    else:
        chip = next((c for c in ("a100", "a10g", "l4") if c in name.split() or (c != "l4" and c in name)), None)
    if chip is None:
        return None
    if dtype is torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return _CUDA_FLOPS[chip].get("tfloat32")
    return _CUDA_FLOPS[chip].get(dtype)


def _compute_dtype(precision: str) -> torch.dtype:
    precision = str(precision)
    if "bf16" in precision:
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    if precision.startswith("64"):
        return torch.float64
    return torch.float32
