"""Trainer: Lightning's arguments and methods; inside, a few small objects built once per run.

``fit`` reads as: attach the model, set up data and optimizers, restore a checkpoint if asked,
sanity-check validation, then ``loops.run_fit``. The per-batch story is in ``loops.py``.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import operator
import os
import time
import warnings
from typing import Any, Optional, Union

import torch

from ember._utils import adapt_step, is_overridden
from ember.accelerators import Precision, release_device, resolve_devices
from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.profilers import PassThroughProfiler, profiling, resolve_profiler
from ember.strategies import launcher
from ember.trainer import checkpoint as _ckpt
from ember.trainer import loops
from ember.loggers.logger import agree_on_logger_versions, log_hyperparams
from ember.trainer.arguments import (apply_shortcuts, build_callbacks, build_loggers, check_arguments, check_limit,
                                     check_weights_only, parse_max_time, resolve_strategy, uncompiled,
                                     with_model_callbacks)
from ember.trainer.data import TrainerData, check_data_args, no_data_message
from ember.trainer.hooks import HookRunner, strategy_action
from ember.trainer.metrics import MetricViews, to_float
from ember.trainer import step
from ember.trainer.optim import configure_optimizers
from ember.trainer.progress import Progress
from ember.trainer.run_state import RunState
from ember.trainer.signals import SignalCatcher
from ember.trainer.states import TrainerState


def _read(owner: str, name: str, doc: str) -> property:
    """A read-only property that reads ``trainer.<owner>.<name>``."""
    return property(operator.attrgetter(f"{owner}.{name}"), doc=doc)


class Trainer:
    """Runs a LightningModule's training, validation, test and prediction loops.

    >>> import ember
    >>> trainer = ember.Trainer(max_epochs=3, accelerator="cpu", enable_progress_bar=False)
    >>> trainer.max_epochs
    3
    """

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        strategy: Any = "auto",
        devices: Any = "auto",
        num_nodes: int = 1,
        precision: Union[str, int, None] = None,
        logger: Any = None,
        callbacks: Union[Callback, list, None] = None,
        fast_dev_run: Union[int, bool] = False,
        max_epochs: Optional[int] = None,
        min_epochs: Optional[int] = None,
        max_steps: int = -1,
        min_steps: Optional[int] = None,
        max_time: Union[str, datetime.timedelta, dict, None] = None,
        limit_train_batches: Union[int, float, None] = None,
        limit_val_batches: Union[int, float, None] = None,
        limit_test_batches: Union[int, float, None] = None,
        limit_predict_batches: Union[int, float, None] = None,
        overfit_batches: Union[int, float] = 0.0,
        val_check_interval: Union[int, float, None] = None,
        check_val_every_n_epoch: Optional[int] = 1,
        num_sanity_val_steps: Optional[int] = None,
        log_every_n_steps: Optional[int] = None,
        enable_checkpointing: Optional[bool] = None,
        enable_progress_bar: Optional[bool] = None,
        enable_model_summary: Optional[bool] = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: Union[int, float, None] = None,
        gradient_clip_algorithm: Optional[str] = None,
        deterministic: Union[bool, str, None] = None,
        benchmark: Optional[bool] = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Any = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: Optional[str] = None,
        enable_autolog_hparams: bool = True,
        on_nonfinite_loss: str = "raise",
    ) -> None:
        check_arguments(locals())
        self._plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        device_type, device_indices = resolve_devices(accelerator, devices)
        self.strategy = resolve_strategy(strategy, device_type, device_indices, num_nodes,
                                          devices_given=devices not in ("auto", None), plugins=self._plugins)
        self.strategy.sync_batchnorm = sync_batchnorm
        self.profiler = resolve_profiler(profiler)  # a pass-through one costs nothing: it wraps nothing
        self._device = self.strategy.root_device
        self._precision = Precision("32-true" if precision is None else precision, self._device)
        self.accelerator = self._device.type

        self.fast_dev_run = int(fast_dev_run)
        self.max_epochs = max_epochs if max_epochs is not None else (1000 if max_steps == -1 else -1)
        self.min_epochs = min_epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self._max_time_s = parse_max_time(max_time)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm.lower() if gradient_clip_algorithm else "norm"
        self.limit_train_batches = check_limit("limit_train_batches", limit_train_batches)
        self.limit_val_batches = check_limit("limit_val_batches", limit_val_batches)
        self.limit_test_batches = check_limit("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = check_limit("limit_predict_batches", limit_predict_batches)
        self.overfit_batches = check_limit("overfit_batches", overfit_batches)
        self.val_check_interval = check_limit("val_check_interval", val_check_interval)
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = 2 if num_sanity_val_steps is None else num_sanity_val_steps
        self.log_every_n_steps = 50 if log_every_n_steps is None else log_every_n_steps
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.enable_autolog_hparams = enable_autolog_hparams  # the hyperparameters to the loggers at each run's start
        self._inference_mode = inference_mode
        self._detect_anomaly = detect_anomaly
        if on_nonfinite_loss not in ("raise", "skip", "ignore"):
            raise ValueError(f"Trainer(on_nonfinite_loss={on_nonfinite_loss!r}) must be 'raise', 'skip' or 'ignore'.")
        # an ember addition: a NaN/inf loss stops training with the step named in the message. Checked every
        # step on the CPU (no sync there) or when skipping; on a GPU at the logging steps, to avoid a sync per step.
        # With detect_anomaly, torch's anomaly mode reports the operation instead.
        self.on_nonfinite_loss = on_nonfinite_loss
        checking = on_nonfinite_loss != "ignore" and not detect_anomaly
        self._check_finite_every_step = checking and (self._device.type == "cpu" or on_nonfinite_loss == "skip")
        self._check_finite_when_logging = checking and not self._check_finite_every_step
        self.use_distributed_sampler = use_distributed_sampler
        self.sync_batchnorm = sync_batchnorm
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()

        apply_shortcuts(self, deterministic, benchmark)
        if barebones:
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
        self._loggers = build_loggers(logger, self.default_root_dir, disabled=bool(self.fast_dev_run))
        self.callbacks = build_callbacks(callbacks, enable_checkpointing is not False,
                                          enable_progress_bar is not False, enable_model_summary is not False)

        self.state = TrainerState()
        self.should_stop = False
        self.sanity_checking = False
        self.optimizers: list = []
        self.lr_scheduler_configs: list = []
        self._wrapped_optimizers: list = []
        self._progress = Progress()
        self.run_state = RunState(self)  # what callbacks read about the running loop (never trainer._*)
        self._model: Optional[LightningModule] = None
        self.datamodule: Optional[LightningDataModule] = None
        self._hooks: Optional[HookRunner] = None
        self._profiler_now: Any = None  # the profiler of the running run, None when there is none
        self._metrics = MetricViews()  # what callback_metrics, logged_metrics and progress_bar_metrics show
        self._fit_start_time = time.monotonic()
        self._evaluating: Optional[str] = None
        self._epoch_end_validated = False
        self._return_predictions = True
        self.data = TrainerData(self)  # the loaders, their batch counts, the validation schedule, batch transfer
        self.ckpt_path: Optional[str] = None
        self._keep_module_on_device = False  # a tuner's trial run: the model stays for the run that follows
        self._signals = SignalCatcher()
        self._warned_none_step = False  # "training_step returned None" is said once per fit
        self._warned_shared_names = False  # "the same name logged in training and validation": once per fit
        self._warned_empty_epoch = False  # "the training DataLoader yielded no batch": once per fit
        self._resumed_train_metrics: Optional[dict] = None
        self._resumed = False  # this fit continues a checkpoint

    # --- the four entry points ------------------------------------------------------------------------
    def fit(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Optional[LightningDataModule] = None, ckpt_path: Optional[str] = None,
            weights_only: Optional[bool] = None) -> None:
        """Train ``model``; ``ckpt_path`` (a path, "last" or "best") continues an earlier run exactly.

        ``weights_only``: how ``ckpt_path`` is read. None (the default) or True: ``torch.load(weights_only=True)``,
        tensors and plain data only, so a file cannot run code. False: unpickle everything the file holds (objects
        of your own classes included), which runs code named in the file; only for files you trust.
        """
        check_weights_only(weights_only)
        if self.strategy.spawns_processes:  # ddp_spawn: run this in new processes, then adopt rank 0's results
            return launcher.spawn(self, "fit", (model, train_dataloaders, val_dataloaders, datamodule, ckpt_path,
                                                weights_only), model)
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        check_data_args("fit", train_dataloaders, val_dataloaders, datamodule)
        with self._run("fit", model, datamodule):
            module = self.lightning_module
            self._warned_none_step = self._warned_shared_names = self._warned_empty_epoch = False
            self.data.setup_fit(train_dataloaders, val_dataloaders, module)
            configure_optimizers(self, module)
            resume_from = _ckpt.resolve_ckpt_path(self, ckpt_path)
            self._resumed = resume_from is not None
            if resume_from is not None:
                _ckpt.restore_training_state(self, _ckpt.read(self, resume_from, weights_only), resume_from)
                self.ckpt_path = str(resume_from)
            log_hyperparams(self._loggers if self.enable_autolog_hparams else [], module, self.datamodule)
            anomaly = torch.autograd.set_detect_anomaly(True) if self._detect_anomaly else contextlib.nullcontext()
            with anomaly, self._signals.installed():
                self._hooks.call("on_fit_start")
                loops.run_sanity_check(self)
                self.state.stage = "train"
                self._fit_start_time = time.monotonic()
                loops.run_fit(self)
                self._hooks.call("on_fit_end")

    def validate(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
                 ckpt_path: Optional[str] = None, verbose: bool = True,
                 datamodule: Optional[LightningDataModule] = None, weights_only: Optional[bool] = None) -> list:
        """Run one validation epoch; returns one dict of metrics per dataloader. ``weights_only``: as in ``fit``."""
        return self._evaluate("validate", model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
             ckpt_path: Optional[str] = None, verbose: bool = True,
             datamodule: Optional[LightningDataModule] = None, weights_only: Optional[bool] = None) -> list:
        """Run one test epoch; returns one dict of metrics per dataloader. ``weights_only``: as in ``fit``."""
        return self._evaluate("test", model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
                datamodule: Optional[LightningDataModule] = None, return_predictions: Optional[bool] = None,
                ckpt_path: Optional[str] = None, weights_only: Optional[bool] = None) -> Any:
        """Run ``predict_step`` over the data; returns its outputs per batch (a list per dataloader if several).
        ``weights_only``: as in ``fit``."""
        check_weights_only(weights_only)
        if self.strategy.spawns_processes:
            return launcher.spawn(self, "predict", (model, dataloaders, datamodule, return_predictions, ckpt_path,
                                                    weights_only), model)
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        self._return_predictions = True if return_predictions is None else return_predictions
        with self._run("predict", model, datamodule):
            module = self.lightning_module
            loaders = self.data.resolve_eval("predict", dataloaders, module)
            if not loaders:
                raise ValueError(no_data_message("predict", module, self.datamodule))
            _ckpt.load_weights_from(self, ckpt_path, weights_only)
            log_hyperparams(self._loggers if self.enable_autolog_hparams else [], module, self.datamodule)
            self.state.stage = "predict"
            out = loops.run_evaluation(self, "predict", loaders, self.num_predict_batches)
        return out if self._return_predictions else None

    def _evaluate(self, stage: str, model: Optional[LightningModule], dataloaders: Any, ckpt_path: Optional[str],
                  verbose: bool, datamodule: Optional[LightningDataModule], weights_only: Optional[bool]) -> list:
        check_weights_only(weights_only)
        if self.strategy.spawns_processes:
            return launcher.spawn(self, "_evaluate", (stage, model, dataloaders, ckpt_path, verbose, datamodule,
                                                      weights_only), model)
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        if model is None and ckpt_path is None and self.state.fn == "fit" and getattr(
                self.checkpoint_callback, "best_model_path", ""):
            ckpt_path = "best"  # as Lightning: after fit, trainer.test() evaluates the best checkpoint
            warnings.warn(f"Trainer.{stage}() was called without a model after fit(): it uses the best checkpoint, "
                          f"{self.checkpoint_callback.best_model_path}. Pass ckpt_path='last' or a path, or the "
                          "model, to choose.", stacklevel=3)
        with self._run(stage, model, datamodule):
            module = self.lightning_module
            loaders = self.data.resolve_eval(stage, dataloaders, module)
            step = "validation_step" if stage == "validate" else "test_step"
            if not is_overridden(step, module, LightningModule):
                raise NotImplementedError(f"Trainer.{stage}() needs {type(module).__name__}.{step}(self, batch, "
                                          "batch_idx); define it.")
            if not loaders:
                raise ValueError(no_data_message(stage, module, self.datamodule))
            _ckpt.load_weights_from(self, ckpt_path, weights_only)
            log_hyperparams(self._loggers if self.enable_autolog_hparams else [], module, self.datamodule)
            self.state.stage = stage
            limits = self.num_val_batches if stage == "validate" else self.num_test_batches
            results = loops.run_evaluation(self, stage, loaders, limits)
        if verbose and self.is_global_zero:
            _print_results(stage, results)
        return [to_float(r) for r in results]

    # --- running a stage ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _run(self, fn: str, model: Optional[LightningModule], datamodule: Optional[LightningDataModule]) -> Any:
        """Attach model and data, call setup, yield, then teardown; on an error call ``on_exception`` first."""
        if model is None:
            if self._model is None:
                raise TypeError(f"Trainer.{fn}() needs a model: pass `trainer.{fn}(model, ...)`.")
            model = self._model
        model = uncompiled(model)
        if not isinstance(model, LightningModule):
            raise TypeError(f"Trainer.{fn}() expects a ember.LightningModule, got {type(model).__name__}. Subclass "
                            "`ember.LightningModule` (or `pl.LightningModule` after `import ember as pl`).")
        if fn != "fit" and self.state.fn == "fit" and self.state.status == "running":
            raise RuntimeError(f"Trainer.{fn}() was called while fit() is running; call it after fit() returns.")
        self._model = model
        self.datamodule = datamodule if datamodule is not None else (self.datamodule if fn != "fit" else None)
        self.state = TrainerState(fn=fn, status="running")
        self.should_stop = False
        self._signals.received = None  # received_sigterm speaks of this run
        self._metrics.reset()  # as Lightning: each run's metrics only (after test(), no train_loss)
        model.trainer = self
        if self.datamodule is not None:
            self.datamodule.trainer = self
        self.callbacks = with_model_callbacks(self.callbacks, model)
        # a profiler is handed to what the run builds (the hook table, the steps, the data): each part comes timed
        profiler = self._profiler_now = None if isinstance(self.profiler, PassThroughProfiler) else self.profiler
        self._hooks = HookRunner(self, model, self.callbacks, profiler)
        stage = {"validate": "validate", "test": "test", "predict": "predict"}.get(fn, "fit")
        try:
            self.strategy.setup_environment()  # DDP: start the other processes (plain python) and join them
            if self.world_size > 1:
                agree_on_logger_versions(self.strategy, self._loggers)
            if self.local_rank == 0:  # downloads and files: once per machine, the others wait
                if self.datamodule is not None:
                    self.datamodule.prepare_data()
                model.prepare_data()
            self.strategy.barrier("prepare_data")
            if self.datamodule is not None:
                self.datamodule.setup(stage)
            for cb in self.callbacks:
                cb.setup(self, model, stage)
            model.setup(stage)
            model.configure_model()
            self._precision.convert_module(model.to(self._device))
            self._training_step = adapt_step(model.training_step)
            if fn == "fit":  # DDP wraps the module here: the training step then runs through the wrapper
                self._training_step = self.strategy.setup_module(model, self._training_step)
            else:  # FSDP shards the module for evaluation too
                self.strategy.setup_eval_module(model)
            if profiler is not None:
                self._training_step = profiler.timed(self._training_step, f"{strategy_action(self)}.training_step")
            self.data.choose_transfer(model)
            with profiling(self, fn):  # a profiler's setup, and its report at the end (also when the run fails)
                yield
            self.state.status = "finished"
        except BaseException as exception:
            if self.state.status != "interrupted":  # preemption (signals.py) has already said so
                self.state.status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
            for cb in self.callbacks:
                cb.on_exception(self, model, exception)
            for lg in self._loggers:
                lg.finalize("failed")
            if isinstance(exception, Exception):
                launcher.kill_children()  # ranks this process started would wait for it until the timeout
            raise
        finally:
            self.strategy.teardown()
            self._training_step = None  # under DDP the wrapper, which holds the process group: let it go now
            self._profiler_now = None
            if (self.state.status == "finished" and self._device.type != "cpu" and self.strategy.returns_module_to_cpu
                    and not self._keep_module_on_device):
                # as Lightning: `model(x)` on CPU tensors works after fit (not after a failure, where moving could
                # raise again and hide the error)
                release_device(model, self.optimizers)
            for cb in self.callbacks:
                cb.teardown(self, model, stage)
            model.teardown(stage)
            if self.datamodule is not None:
                self.datamodule.teardown(stage)
            self._metrics.end_run(failed=self.state.status == "failed", on_device=self._device.type != "cpu")
        for lg in self._loggers:
            lg.finalize("success")

    # --- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, filepath: Union[str, os.PathLike], weights_only: bool = False,
                        storage_options: Any = None) -> None:
        """Write a checkpoint atomically: a temporary file in the same folder, flushed, then renamed."""
        if self._model is None:
            raise RuntimeError("Trainer.save_checkpoint() needs a model: call it during or after trainer.fit().")
        # DDP: rank 0 writes and no rank waits for another, so calling this on rank 0 alone is fine; a sharded
        # model (FSDP) gathers its weights, so every rank must call it
        if self.strategy.save_needs_all_ranks or self.is_global_zero:
            self.strategy.save_checkpoint(_ckpt.dump_checkpoint(self, weights_only), filepath)

    # --- metrics -------------------------------------------------------------------------------------------
    def _log_metrics(self, values: dict, step: int, add_epoch: bool = True) -> None:
        """Send values to every logger: the only place training metrics become Python floats. Values logged
        per step in validation/test go out without 'epoch', at their batch index, as in Lightning."""
        if not values or not self._loggers:
            return
        metrics = to_float(values)
        if add_epoch:
            metrics["epoch"] = self.current_epoch
        for lg in self._loggers:
            lg.log_metrics(metrics, step)

    @property
    def callback_metrics(self) -> dict:
        """The metrics callbacks monitor (tensors), as in Lightning: each run starts empty; the latest epoch values
        under 'x' (and 'x_epoch' when also logged per step), the latest training step values under 'x_step'.
        Evaluation step values are not here (they are in ``logged_metrics``)."""
        return self._metrics.read(0)  # one dict per run, as Lightning's: what a callback adds to it stays

    @property
    def logged_metrics(self) -> dict:
        """The latest value of everything sent to the loggers in this run (tensors)."""
        return self._metrics.read(1)

    @property
    def progress_bar_metrics(self) -> dict:
        """The values logged with ``prog_bar=True``, as Python numbers (reading them syncs with the device)."""
        return to_float(self._metrics.read(2))

    # --- properties users read ------------------------------------------------------------------------------
    train_dataloader = _read("data", "train_dataloader",
                              "The training DataLoader of this fit (this rank's share under DDP).")
    val_dataloaders = _read("data", "val_dataloaders", "The validation DataLoader, or a list of them.")
    test_dataloaders = _read("data", "test_dataloaders", "The test DataLoader, or a list of them.")
    predict_dataloaders = _read("data", "predict_dataloaders", "The prediction DataLoader, or a list of them.")
    num_training_batches = _read("data", "num_training_batches",
                                  "Training batches per epoch, after ``limit_train_batches`` (``inf`` without a length).")
    num_val_batches = _read("data", "num_val_batches",
                             "Validation batches per dataloader (a list), after ``limit_val_batches``.")
    num_sanity_val_batches = _read("data", "num_sanity_val_batches", "Batches per dataloader the sanity check runs.")
    num_test_batches = _read("data", "num_test_batches",
                              "Test batches per dataloader (a list), after ``limit_test_batches``.")
    num_predict_batches = _read("data", "num_predict_batches",
                                 "Prediction batches per dataloader (a list), after ``limit_predict_batches``.")
    current_epoch = _read("_progress", "epoch",
                           "The epoch being trained, from 0 (after fit: the number of epochs trained).")
    global_step = _read("_progress", "optimizer_steps", "Optimizer steps taken so far.")
    precision = _read("_precision", "name", "The precision name, e.g. '32-true' or 'bf16-mixed'.")
    scaler = _read("_precision", "scaler", "The AMP GradScaler of '16-mixed', else None.")
    num_devices = _read("strategy", "num_processes", "Devices (processes) per node.")
    global_rank = _read("strategy", "global_rank", "This process's rank among all processes.")
    local_rank = _read("strategy", "local_rank", "This process's rank on its node.")
    node_rank = _read("strategy", "node_rank", "This node's rank.")
    world_size = _read("strategy", "world_size", "The number of processes.")
    num_nodes = _read("strategy", "num_nodes", "The number of nodes.")

    @property
    def lightning_module(self) -> LightningModule:
        return self._model  # type: ignore[return-value]

    @property
    def model(self) -> Optional[torch.nn.Module]:
        """The model as the strategy runs it (the DDP wrapper under DDP, during fit); else the LightningModule."""
        return self.strategy.model if self.strategy.model is not None else self._model

    @property
    def precision_plugin(self) -> Precision:
        """The run's precision: ``forward_context()`` runs code under its autocast, as the training step does."""
        return self._precision

    @property
    def device_ids(self) -> list:
        return list(getattr(self.strategy, "_device_indices", [self._device.index or 0]))

    @property
    def root_device(self) -> torch.device:
        return self._device

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.global_rank == 0

    @property
    def training(self) -> bool:
        return self.state.stage == "train" and self._evaluating is None

    @property
    def validating(self) -> bool:
        return self._evaluating == "validate" or self.state.fn == "validate"

    @property
    def testing(self) -> bool:
        return self.state.fn == "test"

    @property
    def predicting(self) -> bool:
        return self.state.fn == "predict"

    @property
    def interrupted(self) -> bool:
        return self.state.status == "interrupted"

    @property
    def received_sigterm(self) -> bool:
        """Whether this run (fit) received SIGTERM; ember then saves last.ckpt and leaves with exit code 143."""
        return self._signals.received_sigterm

    @property
    def logger(self) -> Any:
        return self._loggers[0] if self._loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self._loggers = [] if logger is None else [logger]

    @property
    def loggers(self) -> list:
        return list(self._loggers)

    @loggers.setter
    def loggers(self, loggers: Optional[list]) -> None:
        self._loggers = list(loggers or [])

    @property
    def log_dir(self) -> str:
        logger = self.logger
        if logger is not None:
            return logger.log_dir or logger.save_dir or self.default_root_dir
        return self.default_root_dir

    @property
    def checkpoint_callbacks(self) -> list:
        from ember.callbacks.checkpoint import Checkpoint

        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callback(self) -> Any:
        from ember.callbacks.early_stopping import EarlyStopping

        found = [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]
        return found[0] if found else None

    @property
    def progress_bar_callback(self) -> Any:
        from ember.callbacks.progress import ProgressBar

        found = [cb for cb in self.callbacks if isinstance(cb, ProgressBar)]
        return found[0] if found else None

    @property
    def estimated_stepping_batches(self) -> Union[int, float]:
        """Optimizer steps the whole fit will take (e.g. for OneCycleLR's ``total_steps``)."""
        if self.train_dataloader is None and self.max_steps == -1:
            raise RuntimeError("estimated_stepping_batches is known once fit() has the training data; read it in "
                               "configure_optimizers or later.")
        if self.train_dataloader is None or self.num_training_batches == math.inf or self.max_epochs == -1:
            return self.max_steps if self.max_steps != -1 else math.inf
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        total = per_epoch * max(self.max_epochs, 1)
        return min(total, self.max_steps) if self.max_steps != -1 else total

    _optimizer_step = step.optimizer_step  # LightningOptimizer.step (manual optimization) calls it (trainer/step.py)

    def _time_is_up(self) -> bool:
        return self._max_time_s is not None and time.monotonic() - self._fit_start_time >= self._max_time_s


def _print_results(stage: str, results: list) -> None:
    rows = [(f"{k}" + (f" (dataloader {i})" if len(results) > 1 else ""), v)
            for i, r in enumerate(results) for k, v in sorted(to_float(r).items())]
    if not rows:
        return
    title = "Validate metric" if stage == "validate" else "Test metric"
    width = max(len(title), *(len(k) for k, _ in rows))
    line = "-" * (width + 24)
    print(line)
    print(f"{title:<{width}}    DataLoader value")
    print(line)
    for key, value in rows:
        print(f"{key:<{width}}    {value:.6g}")
    print(line)
