"""configure_optimizers in every form Lightning accepts, the optimizer wrapper for manual
optimisation, and learning-rate scheduler stepping."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch.optim import Optimizer

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

_FORMS = ("an optimizer; a list of optimizers; ([optimizers], [schedulers]); a dict "
          "{'optimizer': opt, 'lr_scheduler': scheduler_or_config, 'monitor': 'metric'}; or a list/tuple of such dicts")
_SCHEDULER_KEYS = {"scheduler", "interval", "frequency", "monitor", "name", "strict", "reduce_on_plateau"}
_OPTIMIZER_DICT_KEYS = {"optimizer", "lr_scheduler", "monitor"}


@dataclass
class LRSchedulerConfig:
    """One scheduler and when to step it (Lightning's ``lr_scheduler_configs`` items)."""

    scheduler: Any
    name: Optional[str] = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: Optional[str] = None
    strict: bool = True


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _scheduler_config(value: Any, monitor: Optional[str]) -> LRSchedulerConfig:
    if isinstance(value, dict):
        unknown = set(value) - _SCHEDULER_KEYS
        if unknown:
            raise ValueError(f"configure_optimizers: the lr_scheduler config has unknown keys {sorted(unknown)}; "
                             f"valid keys are {sorted(_SCHEDULER_KEYS)}.")
        if "scheduler" not in value:
            raise ValueError("configure_optimizers: the lr_scheduler config dict needs a 'scheduler' key holding "
                             f"the scheduler object; found keys {sorted(value)}.")
        cfg = LRSchedulerConfig(scheduler=value["scheduler"], name=value.get("name"),
                                interval=value.get("interval", "epoch"), frequency=value.get("frequency", 1),
                                monitor=value.get("monitor", monitor), strict=value.get("strict", True))
    else:
        cfg = LRSchedulerConfig(scheduler=value, monitor=monitor)
    if cfg.interval not in ("epoch", "step"):
        raise ValueError(f"configure_optimizers: lr_scheduler 'interval' must be 'epoch' or 'step'; found "
                         f"{cfg.interval!r}.")
    if not isinstance(cfg.frequency, int) or cfg.frequency < 1:
        raise ValueError(f"configure_optimizers: lr_scheduler 'frequency' must be a positive int; found "
                         f"{cfg.frequency!r}.")
    if not hasattr(cfg.scheduler, "step") or not hasattr(cfg.scheduler, "state_dict"):
        raise TypeError(f"configure_optimizers: {type(cfg.scheduler).__name__} is not a learning-rate scheduler "
                        "(it needs .step() and .state_dict()); pass a torch.optim.lr_scheduler object.")
    cfg.reduce_on_plateau = _is_plateau(cfg.scheduler)
    if cfg.reduce_on_plateau and cfg.monitor is None:
        raise ValueError(
            "configure_optimizers: ReduceLROnPlateau needs a metric to watch. Return "
            "{'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'monitor': 'val_loss'}}."
        )
    return cfg


def parse_configure_optimizers(out: Any) -> tuple:
    """Normalise what ``configure_optimizers`` returned into (optimizers, scheduler configs)."""
    optimizers: list = []
    configs: list = []
    if out is None:
        return optimizers, configs
    if isinstance(out, Optimizer):
        optimizers = [out]
    elif isinstance(out, dict):
        optimizers, configs = _parse_dicts([out])
    elif isinstance(out, (list, tuple)) and len(out) == 2 and isinstance(out[0], (list, tuple)) \
            and all(isinstance(o, Optimizer) for o in out[0]):
        optimizers = list(out[0])
        scheds = out[1] if isinstance(out[1], (list, tuple)) else [out[1]]
        configs = [_scheduler_config(s, None) for s in scheds]
    elif isinstance(out, (list, tuple)) and out and all(isinstance(o, Optimizer) for o in out):
        optimizers = list(out)
    elif isinstance(out, (list, tuple)) and out and all(isinstance(o, dict) for o in out):
        optimizers, configs = _parse_dicts(list(out))
    else:
        raise TypeError(f"configure_optimizers returned {_describe(out)}. Return {_FORMS}.")
    for cfg in configs:
        owner = getattr(cfg.scheduler, "optimizer", None)
        if owner is not None and not any(owner is o for o in optimizers):
            raise ValueError(f"configure_optimizers: the scheduler {type(cfg.scheduler).__name__} drives an "
                             "optimizer that configure_optimizers did not return; return that optimizer too.")
    return optimizers, configs


def _parse_dicts(dicts: list) -> tuple:
    optimizers, configs = [], []
    for d in dicts:
        unknown = set(d) - _OPTIMIZER_DICT_KEYS
        if "optimizer" not in d or unknown:
            raise ValueError(f"configure_optimizers returned a dict with keys {sorted(d)}; it needs 'optimizer' and "
                             f"may have 'lr_scheduler' and 'monitor' (nothing else).")
        if not isinstance(d["optimizer"], Optimizer):
            raise TypeError(f"configure_optimizers: 'optimizer' holds {_describe(d['optimizer'])}, not a "
                            "torch.optim.Optimizer.")
        optimizers.append(d["optimizer"])
        if d.get("lr_scheduler") is not None:
            configs.append(_scheduler_config(d["lr_scheduler"], d.get("monitor")))
    return optimizers, configs


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(type(v).__name__ for v in value[:4])
        return f"a {type(value).__name__} of ({inner})"
    return f"a {type(value).__name__}"


class LightningOptimizer:
    """What ``self.optimizers()`` returns: the optimizer, whose ``step`` also runs hooks, AMP and counting.
    Everything else (``param_groups``, ``zero_grad``, ``state_dict``, ...) is the wrapped optimizer's."""

    def __init__(self, optimizer: Optimizer, trainer: Trainer) -> None:
        self._optimizer = optimizer
        self._trainer = trainer

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    def step(self, closure: Any = None, **kwargs: Any) -> Any:
        """Run ``closure`` (if given), the ``on_before_optimizer_step`` hooks, then the optimizer step."""
        if closure is not None:
            closure()
        return self._trainer._optimizer_step(self._optimizer, **kwargs)

    def __repr__(self) -> str:
        return f"LightningOptimizer({self._optimizer!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_optimizer", "_trainer"):
            raise AttributeError(name)
        return getattr(self._optimizer, name)


def configure_optimizers(trainer: Trainer, module: Any) -> None:
    """Call the module's ``configure_optimizers`` and keep what it returned on the trainer (``optimizers``,
    ``lr_scheduler_configs``, and the wrappers ``self.optimizers()`` returns), refusing what cannot run."""
    module.__dict__["_current_fx"] = "configure_optimizers"
    configure = module.configure_optimizers
    if trainer._profiler_now is not None:
        configure = trainer._profiler_now.timed(configure, f"[LightningModule]{type(module).__name__}."
                                                           "configure_optimizers")
    try:
        out = configure()
    finally:
        module.__dict__["_current_fx"] = None
    optimizers, trainer.lr_scheduler_configs = parse_configure_optimizers(out)
    trainer.optimizers = optimizers
    if module.automatic_optimization and len(optimizers) > 1:
        raise ValueError(
            f"configure_optimizers returned {len(optimizers)} optimizers, but automatic optimization steps "
            "one. Set `self.automatic_optimization = False` in __init__ and step them yourself in training_step: "
            "`opt1, opt2 = self.optimizers()`."
        )
    clip, accumulate = trainer.gradient_clip_val, trainer.accumulate_grad_batches
    if not module.automatic_optimization and (clip or accumulate > 1):
        setting, value = ("gradient_clip_val", clip) if clip else ("accumulate_grad_batches", accumulate)
        raise ValueError(
            f"Trainer({setting}={value}) is not supported with manual optimization ({type(module).__name__} sets "
            f"automatic_optimization = False). Remove `{setting}` and clip with `self.clip_gradients(opt, ...)` "
            "or step every N batches yourself in training_step."
        )
    if not optimizers and module.automatic_optimization:
        warnings.warn("configure_optimizers returned None: training runs forward and backward but no optimizer "
                      "step.", stacklevel=2)
    trainer._wrapped_optimizers = [LightningOptimizer(o, trainer) for o in optimizers]


def step_schedulers(trainer: Trainer, interval: str) -> None:
    """Step the schedulers whose interval is ``interval`` when their frequency says so."""
    if not trainer.lr_scheduler_configs:
        return
    count = trainer.global_step if interval == "step" else trainer.current_epoch + 1
    module = trainer.lightning_module
    for cfg in trainer.lr_scheduler_configs:
        if cfg.interval != interval or count % cfg.frequency:
            continue
        metric = None
        if cfg.reduce_on_plateau:
            metrics = trainer.callback_metrics
            if cfg.monitor not in metrics:
                if cfg.strict:
                    raise RuntimeError(
                        f"ReduceLROnPlateau monitors {cfg.monitor!r}, which was not logged; logged metrics are "
                        f"{sorted(metrics)}. Log it with self.log({cfg.monitor!r}, ...), or set 'strict': False in "
                        "the lr_scheduler config to skip the step when it is missing."
                    )
                continue
            metric = metrics[cfg.monitor]
        module.lr_scheduler_step(cfg.scheduler, metric)
