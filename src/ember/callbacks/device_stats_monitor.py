"""DeviceStatsMonitor: log the accelerator's memory and utilisation statistics during a run."""
from __future__ import annotations

import importlib.util
from typing import Any, Optional

import torch

from ember.callbacks.callback import Callback

_PSUTIL = importlib.util.find_spec("psutil") is not None


class DeviceStatsMonitor(Callback):
    """Log device statistics around each training, validation and test batch, on the Trainer's logging
    steps only (``log_every_n_steps``), so the other steps cost a modulo.

    On CUDA: ``torch.cuda.memory_stats()`` (no device synchronisation). On the CPU: ``cpu_percent``,
    ``cpu_vm_percent`` and ``cpu_swap_percent`` from ``psutil`` when it is installed, otherwise the
    process's peak resident memory ``cpu_max_rss_mb`` from ``resource``. ``cpu_stats=True`` adds the CPU
    statistics on a GPU too; ``cpu_stats=False`` logs nothing on a CPU. Keys read
    ``DeviceStatsMonitor.on_train_batch_start/cpu_percent``.

    >>> from ember.callbacks.device_stats_monitor import DeviceStatsMonitor
    >>> device_stats = DeviceStatsMonitor()
    >>> # trainer = ember.Trainer(callbacks=[device_stats], log_every_n_steps=10)
    """

    def __init__(self, cpu_stats: Optional[bool] = None) -> None:
        self._cpu_stats = cpu_stats

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "predict" and not trainer.loggers:
            raise RuntimeError("Cannot use DeviceStatsMonitor callback with Trainer(logger=False): it logs to the "
                               "Trainer's loggers. Give the Trainer a logger or remove the callback.")

    def _log_stats(self, trainer: Any, key: str, due: bool, step: Optional[int] = None) -> None:
        if not due:  # not a logging step: nothing to do
            return
        device = trainer.strategy.root_device
        if device.type == "cpu":
            if self._cpu_stats is False:
                return
            stats = get_cpu_stats()
        else:
            stats = get_device_stats(device)
            if self._cpu_stats:
                stats.update(get_cpu_stats())
        step = trainer.run_state.batches_stepped if step is None else step
        prefix = f"{type(self).__qualname__}.{key}"
        for logger in trainer.loggers:
            separator = getattr(logger, "group_separator", "/")
            logger.log_metrics({f"{prefix}{separator}{k}": v for k, v in stats.items()}, step=step)

    def _log_eval(self, trainer: Any, key: str, batch_idx: int) -> None:
        from ember.trainer.run_state import logs_at  # the Trainer's rule, applied to the evaluation batch count

        self._log_stats(trainer, key, logs_at(batch_idx + 1, trainer.log_every_n_steps))

    # training logs on the Trainer's own logging steps (batches that stepped); evaluation counts its batches
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._log_stats(trainer, "on_train_batch_start", trainer.run_state.next_step_logs)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        run = trainer.run_state  # batches_stepped already counts this batch
        self._log_stats(trainer, "on_train_batch_end", run.is_logging_step, step=run.batches_stepped - 1)

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._log_eval(trainer, "on_validation_batch_start", batch_idx)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._log_eval(trainer, "on_validation_batch_end", batch_idx)

    def on_test_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._log_eval(trainer, "on_test_batch_start", batch_idx)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._log_eval(trainer, "on_test_batch_end", batch_idx)


def get_cpu_stats() -> dict[str, float]:
    """CPU and memory use: psutil's percentages when installed, else the peak resident set size in MB."""
    if _PSUTIL:
        import psutil

        return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
                "cpu_swap_percent": psutil.swap_memory().percent}
    try:
        import resource
        import sys
    except ImportError:  # Windows without psutil
        return {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"cpu_max_rss_mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}


def get_device_stats(device: torch.device) -> dict[str, float]:
    """The allocator's statistics on a CUDA device (host-side counters: no synchronisation)."""
    if device.type == "cuda":
        return {k: float(v) for k, v in torch.cuda.memory_stats(device).items()}
    if device.type == "mps" and hasattr(torch, "mps"):
        return {"mps_allocated_bytes": float(torch.mps.current_allocated_memory())}
    return {}
