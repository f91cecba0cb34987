"""What the Trainer's arguments become: checks with the accepted range in each message, the strategy chosen from a
name, the loggers and callbacks built by default, the shortcuts (``fast_dev_run``, ``overfit_batches``)."""
from __future__ import annotations

import datetime
import numbers
import os
from typing import TYPE_CHECKING, Any, Iterable, Optional

import torch

from ember.callbacks.callback import Callback
from ember.module import LightningModule
from ember.strategies.strategy import Strategy

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


def uncompiled(model: Any) -> Any:
    """``trainer.fit(torch.compile(model))``: train the LightningModule itself, with its ``forward`` compiled by the
    same compiler settings. The loop, the hooks and ``self.current_epoch`` stay plain Python; the checkpoint keys
    stay the module's own (no ``_orig_mod.`` prefix)."""
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ != "OptimizedModule" or not isinstance(inner, LightningModule):
        return model
    if "forward" not in vars(inner):  # compile once, however many times the wrapper is passed in
        inner.forward = model.dynamo_ctx(inner.forward)
    return inner


_STRATEGY_NAMES = ("auto", "single_device", "ddp", "ddp_find_unused_parameters_true",
                   "ddp_find_unused_parameters_false", "ddp_spawn", "fsdp")


def resolve_strategy(strategy: Any, device_type: str, device_indices: list, num_nodes: int,
                      devices_given: bool, plugins: list = (), owner: str = "Trainer") -> Strategy:
    """``Trainer(strategy=...)``: a Strategy object, or a name; 'auto' is DDP when more than one process runs.
    ``owner`` names the caller in messages ("Fabric")."""
    from ember.strategies import DDPStrategy, SingleDeviceStrategy
    from ember.strategies.environment import SLURMEnvironment, TorchElasticEnvironment

    many = len(device_indices) * num_nodes > 1
    if strategy in ("auto", None):
        launched = any(env.detect() and env().world_size() > 1 for env in (TorchElasticEnvironment, SLURMEnvironment))
        chosen: Strategy = DDPStrategy() if many or (launched and not devices_given) else SingleDeviceStrategy()
    elif isinstance(strategy, Strategy):
        chosen = strategy
    elif strategy == "single_device":
        if many:
            raise ValueError(f"{owner}(strategy='single_device') runs on one device, but devices={len(device_indices)}"
                             f" and num_nodes={num_nodes} ask for more. Use strategy='ddp' or 'auto'.")
        chosen = SingleDeviceStrategy()
    elif strategy in ("ddp", "ddp_find_unused_parameters_false"):
        chosen = DDPStrategy()
    elif strategy == "ddp_find_unused_parameters_true":
        chosen = DDPStrategy(find_unused_parameters=True)
    elif strategy == "ddp_spawn":
        chosen = DDPStrategy(start_method="spawn")
    elif strategy == "fsdp":
        from ember.strategies.fsdp import FSDPStrategy

        chosen = FSDPStrategy()
    else:
        raise ValueError(f"{owner}(strategy={strategy!r}) is not a strategy ember knows; use one of "
                         f"{list(_STRATEGY_NAMES)} or a Strategy object such as ember.strategies.DDPStrategy(...).")
    if num_nodes > 1 and not chosen.__class__.__name__.startswith(("DDP", "FSDP")):
        raise ValueError(f"{owner}(num_nodes={num_nodes}) needs strategy='ddp' or 'fsdp'.")
    from ember.strategies.environment import ClusterEnvironment

    for plugin in plugins:  # Trainer(plugins=[SLURMEnvironment(auto_requeue=False)]) as in Lightning
        if not isinstance(plugin, ClusterEnvironment):
            raise ValueError(
                f"{owner}(plugins=[{type(plugin).__name__}...]): ember takes cluster environments as plugins "
                "(SLURMEnvironment, TorchElasticEnvironment, LightningEnvironment, or a ClusterEnvironment subclass); "
                f"got {plugin!r}. Precision is set with {owner}(precision=...), the strategy with "
                f"{owner}(strategy=...); docs/migration.md lists Lightning's plugins and ember's equivalents."
            )
        if hasattr(chosen, "cluster_environment") and chosen.cluster_environment is None:
            chosen.cluster_environment = plugin
    chosen._configure(device_type, device_indices, num_nodes, devices_given)
    return chosen


def check_weights_only(value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"weights_only={value!r} must be None, True or False (False unpickles the whole checkpoint "
                         "file, which runs code named in it: only for files you trust).")


def check_int(name: str, value: Any, minimum: int, meaning: str = "", optional: bool = False,
              owner: str = "Trainer") -> None:
    """``Trainer(name=value)``: an int >= ``minimum`` (or None when ``optional``), else a ValueError giving the range."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = f"an int >= {minimum}{meaning}" + (", or None" if optional else "")
        raise ValueError(f"{owner}({name}={value!r}) must be {allowed}.")


def check_arguments(args: dict) -> None:
    """Every numeric Trainer argument in its range, checked before anything is built: a value out of range fails
    here, naming the argument, the value and what is allowed (never later as a ZeroDivisionError, or silently, as a
    negative clipping value that would reverse every update)."""
    check_int("num_nodes", args["num_nodes"], 1)
    check_int("accumulate_grad_batches", args["accumulate_grad_batches"], 1)
    check_int("max_epochs", args["max_epochs"], -1, " (-1: no limit)", optional=True)
    check_int("min_epochs", args["min_epochs"], 0, optional=True)
    check_int("max_steps", args["max_steps"], -1, " (-1: no limit)")
    check_int("min_steps", args["min_steps"], 0, optional=True)
    check_int("check_val_every_n_epoch", args["check_val_every_n_epoch"], 1,
               " (None: validate by val_check_interval batches across epochs)", optional=True)
    check_int("num_sanity_val_steps", args["num_sanity_val_steps"], -1, " (-1: every validation batch; 0: no "
               "sanity check)", optional=True)
    check_int("reload_dataloaders_every_n_epochs", args["reload_dataloaders_every_n_epochs"], 0,
               " (0: never reload)")
    check_int("log_every_n_steps", args["log_every_n_steps"], 1, optional=True)
    fast_dev_run = args["fast_dev_run"]
    if not isinstance(fast_dev_run, bool):
        check_int("fast_dev_run", fast_dev_run, 0, " (or a bool; N: run N batches of each loop)")
    clip = args["gradient_clip_val"]
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real) or not clip >= 0):
        raise ValueError(f"Trainer(gradient_clip_val={clip!r}) must be a number >= 0 (None or 0: no clipping). A "
                         "negative value would scale every gradient by a negative factor and reverse the updates.")
    algorithm = args["gradient_clip_algorithm"]
    if algorithm is not None and (not isinstance(algorithm, str) or algorithm.lower() not in ("norm", "value")):
        raise ValueError(f"Trainer(gradient_clip_algorithm={algorithm!r}) must be 'norm' or 'value' (or None: "
                         "'norm').")
    interval = args["val_check_interval"]
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (numbers.Integral, float))
                                 or interval <= 0 or (isinstance(interval, float) and interval > 1.0)):
        raise ValueError(f"Trainer(val_check_interval={interval!r}) must be a float in (0.0, 1.0] (a fraction of the "
                         "training epoch) or an int >= 1 (every N training batches). To switch validation off, use "
                         "limit_val_batches=0.")
    if interval is not None and isinstance(interval, float) and args["check_val_every_n_epoch"] is None:
        raise ValueError(f"Trainer(val_check_interval={interval!r}, check_val_every_n_epoch=None): without epochs "
                         "to count in, val_check_interval must be an int number of training batches.")


def check_limit(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)) or not value >= 0 or (
            isinstance(value, float) and value > 1.0):  # `not value >= 0` also refuses NaN
        raise ValueError(f"Trainer({name}={value!r}) must be a float in [0.0, 1.0] (a fraction of the batches) or "
                         "an int >= 0 (a number of batches).")
    return value


def parse_max_time(value: Any) -> Optional[float]:
    if value is None:
        return None
    seconds = None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, dict):
        try:
            seconds = datetime.timedelta(**value).total_seconds()
        except TypeError:  # a key timedelta does not take, or a value that is not a number
            seconds = None
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            d, h, m, s = map(int, parts)
            seconds = datetime.timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()
    if seconds is not None and seconds >= 0:
        return seconds
    if seconds is not None:
        raise ValueError(f"Trainer(max_time={value!r}) is a negative duration; it must be >= 0.")
    raise ValueError(f"Trainer(max_time={value!r}) must be 'DD:HH:MM:SS', a datetime.timedelta or a dict like "
                     "{'hours': 1} (datetime.timedelta's keyword arguments).")


def build_loggers(logger: Any, root: str, disabled: bool) -> list:
    if disabled or logger is False:
        return []
    if logger is None or logger is True:  # as Lightning: TensorBoard when it is installed, else CSV
        from ember.loggers.tensorboard import _tensorboard_available

        if _tensorboard_available():
            from ember.loggers.tensorboard import TensorBoardLogger

            return [TensorBoardLogger(save_dir=root)]
        from ember.loggers.csv_logs import CSVLogger

        return [CSVLogger(save_dir=root)]
    return list(logger) if isinstance(logger, Iterable) and not hasattr(logger, "log_metrics") else [logger]


def build_callbacks(callbacks: Any, checkpointing: bool, progress_bar: bool, summary: bool) -> list:
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.callbacks.model_summary import ModelSummary
    from ember.callbacks.progress import ProgressBar, TQDMProgressBar

    given = [] if callbacks is None else [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    for cb in given:
        if not isinstance(cb, Callback):
            raise TypeError(f"Trainer(callbacks=...) got a {type(cb).__name__}; every callback must subclass "
                            "ember.Callback.")
    if summary and not any(isinstance(cb, ModelSummary) for cb in given):
        given.append(ModelSummary())
    if progress_bar and not any(isinstance(cb, ProgressBar) for cb in given):
        given.append(TQDMProgressBar())
    if not progress_bar:
        given = [cb for cb in given if not isinstance(cb, ProgressBar)]
    # Any Checkpoint (OnExceptionCheckpoint too) replaces the default ModelCheckpoint, as in Lightning
    has_checkpoint = any(isinstance(cb, Checkpoint) for cb in given)
    if checkpointing and not has_checkpoint:
        given.append(ModelCheckpoint())
    if not checkpointing and has_checkpoint:
        raise ValueError("Trainer(enable_checkpointing=False) but a checkpoint callback is in callbacks; remove one "
                         "of the two.")
    return checkpoints_last(given)


def with_model_callbacks(callbacks: list, model: LightningModule) -> list:
    """The Trainer's callbacks with those of ``model.configure_callbacks()``, which replace any of the same type."""
    extra = model.configure_callbacks()
    if not extra:
        return callbacks
    extra = list(extra) if isinstance(extra, (list, tuple)) else [extra]
    types = {type(cb) for cb in extra}
    return checkpoints_last([cb for cb in callbacks if type(cb) not in types] + extra)


def checkpoints_last(callbacks: list) -> list:
    """Checkpoint callbacks run after the other callbacks, so the state they save includes theirs."""
    from ember.callbacks.checkpoint import Checkpoint

    return [cb for cb in callbacks if not isinstance(cb, Checkpoint)] + \
        [cb for cb in callbacks if isinstance(cb, Checkpoint)]


def apply_shortcuts(trainer: Trainer, deterministic: Any, benchmark: Optional[bool]) -> None:
    """What ``fast_dev_run`` and ``overfit_batches`` override, and torch's ``deterministic``/``benchmark`` flags."""
    if trainer.fast_dev_run:
        n = trainer.fast_dev_run
        trainer.limit_train_batches = trainer.limit_val_batches = n
        trainer.limit_test_batches = trainer.limit_predict_batches = n
        trainer.max_epochs, trainer.max_steps, trainer.num_sanity_val_steps = 1, n, 0
        trainer.val_check_interval, trainer.check_val_every_n_epoch = 1.0, 1
        trainer._max_time_s = None
    if trainer.overfit_batches:
        trainer.limit_train_batches = trainer.overfit_batches
        trainer.limit_val_batches = trainer.overfit_batches

    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if benchmark is not None:
        torch.backends.cudnn.benchmark = benchmark


def trial_trainer(trainer: "Trainer", callbacks: list, **settings: Any) -> "Trainer":
    """The tuners' trial run (learning-rate and batch-size search): a quiet Trainer on ``trainer``'s device and
    precision, with its accumulation, clipping and inference mode, which leaves the model on the device."""
    from ember.trainer.trainer import Trainer

    device = trainer.root_device
    devices: Any = [device.index] if device.type == "cuda" and device.index is not None else "auto"
    base = dict(
        accelerator=device.type, devices=devices, precision=trainer.precision, logger=False, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        accumulate_grad_batches=trainer.accumulate_grad_batches, gradient_clip_val=trainer.gradient_clip_val,
        gradient_clip_algorithm=trainer.gradient_clip_algorithm, default_root_dir=trainer.default_root_dir,
        inference_mode=trainer._inference_mode,
        # a diverging learning rate or a huge batch is what a search expects to meet: it must not stop the run
        on_nonfinite_loss="ignore",
    )
    base.update(settings)
    trial = Trainer(**base)
    trial._keep_module_on_device = True  # the search runs inside (or before) a fit that goes on with the model
    return trial
