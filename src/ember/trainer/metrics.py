"""What ``self.log`` stores: the latest step value, an epoch accumulator and the reduction.

Values stay tensors on their device. Nothing here calls ``.item()``: the conversion to Python
numbers happens only when a logger or the progress bar actually reads them.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from ember._utils import extract_batch_size, move_data_to_device

# hooks whose logs default to per-step values; every other hook defaults to per-epoch values
_STEP_HOOKS = frozenset({
    "training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "optimizer_step", "lr_scheduler_step",
})
_NO_LOG_HOOKS = frozenset({
    "predict_step", "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end", "setup", "teardown", "prepare_data", "configure_optimizers",
    "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end", "on_save_checkpoint",
    "on_load_checkpoint", "configure_callbacks", "configure_model", "train_dataloader", "val_dataloader",
})
_REDUCTIONS = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}
_REDUCTION_FNS = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min",
                  sum: "sum", max: "max", min: "min"}


def _torchmetrics_metric_type() -> Optional[type]:
    module = sys.modules.get("torchmetrics")  # only if the user imported it: never import it ourselves
    return getattr(module, "Metric", None)


class _Entry:
    """One logged name in one loop."""

    __slots__ = ("name", "prog_bar", "logger", "on_step", "on_epoch", "reduce", "last", "total", "count",
                 "metric", "sync_dist", "dataloader_idx", "fx", "synced", "step_name", "epoch_name", "options",
                 "checked_fx")

    def __init__(self, name: str, prog_bar: bool, logger: bool, on_step: bool, on_epoch: bool, reduce: str,
                 sync_dist: bool, dataloader_idx: Optional[int], suffix: str = "") -> None:
        self.name = name + suffix  # the key: 'x', or 'x/dataloader_idx_1' for one of several eval dataloaders
        forked = on_step and on_epoch
        # the names its step and epoch values are shown under, as in Lightning: 'x_step'/'x_epoch' when logged
        # both ways, the dataloader suffix last ('x_epoch/dataloader_idx_1')
        self.step_name = f"{name}_step{suffix}" if forked else self.name
        self.epoch_name = f"{name}_epoch{suffix}" if forked else self.name
        self.prog_bar = prog_bar
        self.logger = logger
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.reduce = reduce
        self.sync_dist = sync_dist
        self.dataloader_idx = dataloader_idx
        self.last: Optional[Tensor] = None
        self.total: Optional[Tensor] = None
        self.count = 0
        self.metric: Any = None
        self.fx: Optional[str] = None
        # the arguments of the call that made it (resolved), which a later call from the same hook must repeat; and
        # the hook whose later calls have been checked against them (then they take Results.log's short path)
        self.options: Optional[tuple] = None
        self.checked_fx: Optional[str] = None
        self.synced: Optional[Tensor] = None  # the epoch value over all ranks (sync_dist), once computed

    @property
    def forked(self) -> bool:
        return self.on_step and self.on_epoch

    def update(self, value: Tensor, batch_size: int) -> None:
        self.last = value
        if not self.on_epoch or self.metric is not None:
            return
        self.synced = None
        if value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # integers, and half precision whose sums lose the running total
        total = self.total
        if total is None:  # the first value: copy so that later in-place updates never touch the user's tensor
            self.total = value * batch_size if self.reduce == "mean" else value.clone()
        elif self.reduce == "mean":
            total.add_(value, alpha=batch_size)
        elif self.reduce == "sum":
            total.add_(value)
        elif self.reduce == "max":
            torch.maximum(total, value, out=total)
        else:
            torch.minimum(total, value, out=total)
        self.count += batch_size

    def compute(self, reset: bool = True) -> Optional[Tensor]:
        if self.metric is not None:
            value = self.metric.compute()
            if reset:
                self.metric.reset()
            return value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
        if self.total is None:
            return None
        if self.synced is not None:
            return self.synced
        if self.reduce == "mean":
            return self.total / max(self.count, 1)
        return self.total

    def sync(self) -> None:
        """Compute the epoch value over all ranks (a collective: every rank calls it at the same point)."""
        self.synced = self._synced_epoch_value()

    def _synced_epoch_value(self) -> Tensor:
        """The epoch value over every rank's samples: for a mean, the sum of values over the sum of batch sizes,
        so ranks with fewer samples weigh less and the result is the data set's exact mean."""
        import torch.distributed as dist

        if self.reduce == "mean":
            both = torch.stack([self.total, torch.tensor(float(self.count), dtype=self.total.dtype,
                                                         device=self.total.device)])
            dist.all_reduce(both)
            return both[0] / both[1].clamp(min=1)
        value = self.total.clone()
        op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[self.reduce]
        dist.all_reduce(value, op=op)
        return value


class Results:
    """The entries logged during one run of a loop (a training epoch, one validation run, ...)."""

    def __init__(self, stage: str, num_dataloaders: int = 1, distributed: bool = False) -> None:
        self.stage = stage
        self.training = stage == "train"  # step values of evaluation loops never reach callback_metrics
        self.num_dataloaders = num_dataloaders
        # the run has several ranks: sync_dist values are reduced (a trainer inside a distributed job, such as the
        # learning-rate finder's, that runs on one rank does not reduce)
        self.distributed = distributed
        self.entries: dict = {}
        self.dataloader_idx = 0
        self._batch: Any = None
        self._batch_size: Optional[int] = None
        # set once the epoch's batches are done: readers then see epoch values, as in Lightning
        self.epoch_end_reached = False

    def set_batch(self, batch: Any, dataloader_idx: int = 0) -> None:
        self._batch = batch
        self._batch_size = None  # inferred lazily: most steps never need it
        self.dataloader_idx = dataloader_idx

    def _current_batch_size(self) -> int:
        if self._batch_size is None:
            size = extract_batch_size(self._batch) if self._batch is not None else None
            self._batch_size = int(size) if size is not None else 1
        return self._batch_size

    def log(self, fx: Optional[str], name: str, value: Any, prog_bar: bool, logger: Optional[bool],
            on_step: Optional[bool], on_epoch: Optional[bool], reduce_fx: Any, enable_graph: bool,
            sync_dist: bool, add_dataloader_idx: bool, batch_size: Optional[int]) -> None:
        entry = self.entries.get(name)
        if entry is not None and entry.checked_fx == fx and type(value) is Tensor and entry.metric is None \
                and self.num_dataloaders == 1 and not entry.sync_dist:
            # the same name logged again from the same hook: the per-step path, kept short (reading a tensor's
            # attribute costs as much as the rest of this path)
            if not entry.on_epoch:
                entry.last = value  # detached, and its shape checked, when read (_step_value): most steps nobody does
                return
            if value.ndim == 0:
                if value.requires_grad and not enable_graph:
                    value = value.detach()
                if entry.reduce == "mean" and batch_size is None:
                    batch_size = self._current_batch_size()
                entry.update(value, batch_size or 1)
                return
        in_loop = fx in ("validation_step", "test_step", "on_validation_batch_start", "on_validation_batch_end",
                         "on_test_batch_start", "on_test_batch_end")
        suffix = ""
        if in_loop and add_dataloader_idx and self.num_dataloaders > 1:
            suffix = f"/dataloader_idx_{self.dataloader_idx}"
        key = name + suffix
        entry = self.entries.get(key)
        if entry is None:
            entry = self._new_entry(fx, name, suffix, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist,
                                    self.dataloader_idx if in_loop else None)
            entry.fx = fx
            entry.options = (*_resolve_options(fx, key, on_step, on_epoch, reduce_fx), bool(prog_bar),
                             True if logger is None else bool(logger), bool(sync_dist), bool(enable_graph),
                             bool(add_dataloader_idx))
        elif entry.fx == fx and entry.checked_fx != fx:
            # the second call for this name from this hook (later in the step, or at the next step): once per name
            # and epoch, so the short path above pays nothing for it
            if entry.options is not None:
                _check_same_options(entry, fx, key, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist,
                                    enable_graph, add_dataloader_idx)
            entry.checked_fx = fx
        metric_type = _torchmetrics_metric_type()
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise _not_a_scalar(name, fx, value)
            if not enable_graph:
                value = value.detach()
            if value.ndim:
                value = value.reshape(())
        elif metric_type is not None and isinstance(value, metric_type):
            entry.metric = value
            cached = getattr(value, "_forward_cache", None)
            value = cached.detach() if isinstance(cached, Tensor) else None
            if value is None:
                if entry.on_step:
                    raise ValueError(
                        f"self.log({name!r}, metric, on_step=True) in {fx}: the metric has no value for this step "
                        "because it was only `.update()`d. Call the metric as `metric(preds, target)`, or log it "
                        "with on_step=False."
                    )
                return
        elif isinstance(value, (bool, int, float)) or hasattr(value, "__float__"):
            value = torch.tensor(float(value))
        else:
            raise TypeError(
                f"self.log({name!r}, ...) in {fx}: the value must be a number, a one-element tensor or a "
                f"torchmetrics Metric; it is a {type(value).__name__}."
            )
        if entry.on_epoch and entry.metric is None and entry.reduce == "mean" and batch_size is None:
            batch_size = self._current_batch_size()
        entry.update(value, batch_size or 1)
        if entry.sync_dist and entry.on_step and self.stage == "train" and entry.metric is None and self.distributed:
            # a collective at every call, as asked; evaluation steps are synced at the epoch's end only (ranks
            # may hold different numbers of evaluation batches, so a per-step collective could wait forever)
            entry.last = _all_reduce_mean(entry.last.detach())

    def _new_entry(self, fx: Optional[str], name: str, suffix: str, prog_bar: bool, logger: Optional[bool],
                   on_step: Optional[bool], on_epoch: Optional[bool], reduce_fx: Any, sync_dist: bool,
                   dataloader_idx: Optional[int]) -> _Entry:
        key = name + suffix
        if fx in _NO_LOG_HOOKS:
            raise RuntimeError(
                f"self.log({key!r}, ...) is not allowed in {fx}: nothing there is reported to loggers. Log from a "
                "training/validation/test step or a train/validation/test hook instead."
            )
        on_step, on_epoch, reduce = _resolve_options(fx, key, on_step, on_epoch, reduce_fx)
        entry = _Entry(name, bool(prog_bar), True if logger is None else bool(logger), on_step, on_epoch, reduce,
                       sync_dist, dataloader_idx, suffix)
        self.entries[key] = entry
        return entry

    def state_dict(self) -> dict:
        """The epoch's accumulators so far (torchmetrics objects keep their own state)."""
        return {key: {"fx": e.fx, "prog_bar": e.prog_bar, "logger": e.logger, "on_step": e.on_step,
                      "on_epoch": e.on_epoch, "reduce": e.reduce, "total": e.total, "count": e.count,
                      "sync_dist": e.sync_dist,
                      # as it is: a checkpoint (SIGTERM's included) is never refused over a value's shape
                      "last": None if e.last is None else e.last.detach()}
                for key, e in self.entries.items() if e.metric is None and e.dataloader_idx is None}

    def load_state_dict(self, state: dict) -> None:
        for key, s in state.items():
            entry = _Entry(key, s["prog_bar"], s["logger"], s["on_step"], s["on_epoch"], s["reduce"],
                           s.get("sync_dist", False), None)
            entry.fx, entry.total, entry.count, entry.last = s["fx"], s["total"], s["count"], s["last"]
            self.entries[key] = entry

    # --- reading values -----------------------------------------------------------------------------------
    # Three views, as in Lightning: callback values (trainer.callback_metrics; ModelCheckpoint and EarlyStopping
    # read them), logger values (trainer.logged_metrics, what loggers receive) and progress bar values.
    def step_values(self, logger_only: bool = False) -> dict:
        """The latest per-step values under their step names ('x' or 'x_step'): what a logging step sends.
        In an evaluation loop, those of the dataloader running now."""
        current = self.dataloader_idx
        return {e.step_name: _step_value(e) for e in self.entries.values()
                if e.on_step and e.last is not None and (e.logger or not logger_only)
                and (e.dataloader_idx is None or e.dataloader_idx == current)}

    def step_metrics(self) -> tuple:
        """(callback, logger, progress bar) values of the latest step. Callback values come from training only:
        an evaluation loop's step values reach the loggers and the bar, never ``callback_metrics``."""
        callback, logged, pbar = {}, {}, {}
        training = self.training
        current = self.dataloader_idx
        for key, e in self.entries.items():
            if not e.on_step or e.last is None or (e.dataloader_idx is not None and e.dataloader_idx != current):
                continue
            value = _step_value(e)
            name = e.step_name
            if e.logger:
                logged[name] = value
            if training:
                callback[key] = value
                callback[name] = value
            if e.prog_bar:
                pbar[name] = value
        return callback, logged, pbar

    def epoch_metrics(self, reset: bool, dataloader_idx: Optional[int] = None) -> tuple:
        """(callback, logger, progress bar) values of the epoch: each value logged with on_epoch, reduced, under
        'x' and its epoch name ('x' or 'x_epoch'); only one dataloader's with ``dataloader_idx``. ``reset`` starts
        torchmetrics objects afresh."""
        callback, logged, pbar = {}, {}, {}
        for key, e in self.entries.items():
            if dataloader_idx is not None and e.dataloader_idx != dataloader_idx:
                continue
            if not e.on_epoch:
                if e.metric is not None and reset:
                    e.metric.reset()
                continue
            value = e.compute(reset)
            if value is None:
                continue
            name = e.epoch_name
            callback[key] = value
            callback[name] = value
            if e.logger:
                logged[name] = value
            if e.prog_bar:
                pbar[name] = value
        return callback, logged, pbar

    def live_metrics(self) -> tuple:
        """What the three views show while the loop runs: the latest step's values, and once the epoch's batches
        are done the epoch values over them."""
        callback, logged, pbar = self.step_metrics()
        if self.epoch_end_reached:
            for view, epoch in zip((callback, logged, pbar), self.epoch_metrics(reset=False)):
                view.update(epoch)
        return callback, logged, pbar

    def epoch_end(self) -> tuple:
        """Reduce the epoch and reset torchmetrics objects: (callback, logger, progress bar) epoch values."""
        self.sync_epoch()
        return self.epoch_metrics(reset=True)

    def sync_epoch(self) -> None:
        """Under torch.distributed, the epoch values of ``sync_dist=True`` entries over all ranks. Every rank calls
        this at the same points (epoch ends), so values read later, on rank 0 alone, need no collective."""
        if not self.distributed:
            return
        for e in self.entries.values():
            if e.metric is not None and e.on_epoch:
                e.metric.compute()  # torchmetrics syncs its states here on every rank and caches the result
            elif e.sync_dist and e.on_epoch and e.total is not None and e.synced is None:
                e.sync()

    def dataloader_values(self, logged: dict, num_dataloaders: int) -> list:
        """Split an evaluation loop's logger epoch values into one dict per dataloader, as validate/test return
        them (Lightning returns what the loggers receive: values logged with ``logger=False`` are left out)."""
        per_loader: list = [dict() for _ in range(num_dataloaders)]
        for entry in self.entries.values():
            name = entry.epoch_name
            if not entry.on_epoch or name not in logged:
                continue
            idx = entry.dataloader_idx
            targets = range(num_dataloaders) if idx is None or num_dataloaders == 1 else (idx,)
            for i in targets:
                per_loader[i][name] = logged[name]
        return per_loader


@contextlib.contextmanager
def logging_into(module: Any, results: Results) -> Iterator[Results]:
    """``self.log`` in ``module`` records into ``results`` inside the block; the store before it comes back after
    (validation inside a training epoch returns to the epoch's Results)."""
    state = module.__dict__  # a plain attribute: nn.Module.__setattr__ is not needed (and costs a microsecond)
    previous = state.get("_log_store")
    state["_log_store"] = results
    try:
        yield results
    finally:
        state["_log_store"] = previous


class MetricViews:
    """The three views users read (``trainer.callback_metrics``, ``logged_metrics``, ``progress_bar_metrics``):
    what finished loops stored, plus the live values of the running loops (``train``, ``eval``), merged when read.
    Each run starts empty, as in Lightning."""

    def __init__(self) -> None:
        self.train: Optional[Results] = None
        self.eval: Optional[Results] = None
        self.reset()

    def reset(self) -> None:
        self.callback: dict = {}  # one dict per run, as Lightning's: what a callback adds to it stays
        self.logged: dict = {}
        self.pbar: dict = {}

    def store(self, views: tuple) -> None:
        """Keep (callback, logger, progress bar) values of a finished step or epoch."""
        for stored, values in zip((self.callback, self.logged, self.pbar), views):
            stored.update(values)

    def read(self, which: int) -> dict:
        """0: callback_metrics (the stored dict itself), 1: logged_metrics, 2: progress bar values (copies)."""
        stored = (self.callback, self.logged, self.pbar)[which]
        merged = stored if which == 0 else dict(stored)
        for results in (self.train, self.eval):
            if results is not None:
                merged.update(results.live_metrics()[which])
        return merged

    def end_run(self, failed: bool, on_device: bool) -> None:
        """A run ended: a training epoch stopped mid-way keeps its last step's values (unless the run failed); the
        views hold CPU tensors afterwards, as in Lightning (one copy per run)."""
        if self.train is not None and not failed:
            self.store(self.train.step_metrics())
        self.train = self.eval = None
        if not on_device:
            return
        cpu = torch.device("cpu")
        self.callback, self.logged, self.pbar = (move_data_to_device(d, cpu) for d in (self.callback, self.logged,
                                                                                          self.pbar))


def _resolve_options(fx: Optional[str], key: str, on_step: Optional[bool], on_epoch: Optional[bool],
                     reduce_fx: Any) -> tuple:
    """``self.log``'s on_step, on_epoch (their defaults follow the hook) and reduction, checked."""
    per_step = fx in _STEP_HOOKS
    on_step = per_step if on_step is None else bool(on_step)
    on_epoch = (not per_step) if on_epoch is None else bool(on_epoch)
    if not per_step and fx is not None and fx.endswith(("_epoch_start", "_epoch_end", "_start", "_end")) \
            and "batch" not in fx and on_step:
        raise ValueError(
            f"self.log({key!r}, on_step=True) in {fx}: there is no step in an epoch-level hook. Use on_epoch=True."
        )
    if callable(reduce_fx) and reduce_fx in _REDUCTION_FNS:
        reduce = _REDUCTION_FNS[reduce_fx]
    elif isinstance(reduce_fx, str) and reduce_fx.lower() in _REDUCTIONS:
        reduce = _REDUCTIONS[reduce_fx.lower()]
    else:
        raise ValueError(
            f"self.log({key!r}, reduce_fx={reduce_fx!r}): the reduction must be 'mean', 'sum', 'max' or 'min' "
            "(or torch.mean/sum/max/min)."
        )
    return on_step, on_epoch, reduce


_OPTION_NAMES = ("on_step", "on_epoch", "reduce_fx", "prog_bar", "logger", "sync_dist", "enable_graph",
                 "add_dataloader_idx")


def _check_same_options(entry: _Entry, fx: Optional[str], key: str, prog_bar: bool, logger: Optional[bool],
                        on_step: Optional[bool], on_epoch: Optional[bool], reduce_fx: Any, sync_dist: bool,
                        enable_graph: bool, add_dataloader_idx: bool) -> None:
    """As Lightning: one name logged again from the same hook must be logged with the same arguments (which of
    the two calls' reductions or flags should apply is ambiguous, so neither is picked silently)."""
    now = (*_resolve_options(fx, key, on_step, on_epoch, reduce_fx), bool(prog_bar),
           True if logger is None else bool(logger), bool(sync_dist), bool(enable_graph), bool(add_dataloader_idx))
    if now == entry.options:
        return
    changed = ", ".join(f"{n}={a!r} then {b!r}" for n, a, b in zip(_OPTION_NAMES, entry.options, now) if a != b)
    raise ValueError(
        f"You called `self.log({key!r}, ...)` twice in `{fx}` with different arguments ({changed}). This is not "
        "allowed: log it with the same arguments each time, or log the second value under another name."
    )


def _all_reduce_mean(value: Tensor) -> Tensor:
    import torch.distributed as dist

    value = value.clone() if value.is_floating_point() else value.float()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def _step_value(e: _Entry) -> Tensor:
    """An entry's latest step value, detached. ``Results.log`` stores a step-only value unchecked, so its shape is
    checked here."""
    value = e.last
    if value.ndim:
        if value.numel() != 1:
            raise _not_a_scalar(e.name, e.fx, value)
        value = value.reshape(())
    return value.detach() if value.requires_grad else value


def _not_a_scalar(name: str, fx: Optional[str], value: Tensor) -> ValueError:
    return ValueError(
        f"self.log({name!r}, ...) in {fx}: the value must be a scalar, but it is a tensor of shape "
        f"{tuple(value.shape)}. Log a reduction such as `.mean()`, or each element under its own name."
    )


def to_float(values: dict) -> dict:
    """Tensors to Python floats: a host-device sync, done only when a logger or the bar reads values."""
    return {k: (v.item() if isinstance(v, Tensor) else float(v)) for k, v in values.items()}
