"""Weight averaging: an averaged copy of the model, kept beside it during training.

* ``WeightAveraging`` / ``EMAWeightAveraging``: update the average after optimizer steps (EMA by default
  in the latter); validation and the final model use the averaged weights.
* ``StochasticWeightAveraging``: from ``swa_epoch_start`` on, swap the LR schedule for ``SWALR``, add the
  weights to an equal-weight average once per epoch, and at the end of training put the average into the
  model and recompute BatchNorm statistics.

Both are thin layers over ``torch.optim.swa_utils`` (``AveragedModel``, ``SWALR``, ``update_bn``). Their
state (the averaged tensors, ``n_averaged``, the SWALR state) goes into checkpoints as plain data and
tensors, so a resumed run continues the same average.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from ember._utils import is_overridden
from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn

_Device = Optional[Union[torch.device, str, int]]


# --- helpers shared by both callbacks ------------------------------------------------------------------
def _averaged_copy(pl_module: nn.Module, device: _Device, **kwargs: Any) -> AveragedModel:
    """``AveragedModel(pl_module)`` without deep-copying the Trainer and the log store the module points to."""
    state = pl_module.__dict__
    detached = {key: state[key] for key in ("_trainer", "_log_store") if key in state}
    state.update(dict.fromkeys(detached))
    try:
        return AveragedModel(pl_module, device=device, **kwargs)
    finally:
        state.update(detached)


def _tensors(module: nn.Module, buffers: bool) -> Iterator[Tensor]:
    return itertools.chain(module.parameters(), module.buffers()) if buffers else module.parameters()


@torch.no_grad()
def _copy_weights(src: nn.Module, dst: nn.Module, buffers: bool = True) -> None:
    for s, d in zip(_tensors(src, buffers), _tensors(dst, buffers)):
        d.copy_(s.to(d.device))


@torch.no_grad()
def _swap_weights(a: nn.Module, b: nn.Module) -> None:
    for x, y in zip(_tensors(a, True), _tensors(b, True)):
        tmp = x.clone()
        x.copy_(y.to(x.device))
        y.copy_(tmp.to(y.device))


def _check_device(device: Any, owner: str) -> Optional[Union[torch.device, int]]:
    if device is None or isinstance(device, (torch.device, int)):
        return device
    if isinstance(device, str):
        return torch.device(device)
    raise TypeError(f"{owner}(device=...) expects a torch.device, a str like 'cpu' or None; received "
                    f"{device!r}.")


# --- WeightAveraging / EMAWeightAveraging ---------------------------------------------------------------
class WeightAveraging(Callback):
    """Keep an ``AveragedModel`` of the module, updated after every optimizer step (``should_update`` decides).

    Validation runs on the averaged weights (they are swapped in for the validation epoch and swapped back
    after it), checkpoints store the averaged weights under ``state_dict`` (the training weights under
    ``current_model_state``, so ``load_from_checkpoint`` gives the averaged model and a resume continues
    both), and when training ends the averaged weights are copied into the module.

    Arguments other than ``device`` and ``use_buffers`` go to ``AveragedModel`` (``avg_fn``,
    ``multi_avg_fn``); without them the average is the equal-weight (SWA) mean. Buffers (BatchNorm
    statistics) are averaged too unless ``use_buffers=False``.

    >>> from torch.optim.swa_utils import get_ema_multi_avg_fn
    >>> class EMAAfter100Steps(WeightAveraging):
    ...     def __init__(self):
    ...         super().__init__(multi_avg_fn=get_ema_multi_avg_fn(0.99))
    ...     def should_update(self, step_idx=None, epoch_idx=None):
    ...         return step_idx is not None and step_idx >= 100
    """

    def __init__(self, device: _Device = None, use_buffers: bool = True, **kwargs: Any) -> None:
        self._device = _check_device(device, type(self).__name__)
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: Optional[AveragedModel] = None
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Whether to update the average after optimizer step ``step_idx`` or epoch ``epoch_idx`` (0-based;
        the other argument is None). The default updates after every optimizer step."""
        return step_idx is not None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        from ember.module import LightningModule

        if is_overridden("configure_model", pl_module, LightningModule):
            rank_zero_warn(f"{type(self).__name__} calls {type(pl_module).__name__}.configure_model() itself so "
                           "that the averaged copy has every layer; sharded layers are not supported and the copy "
                           "may not fit in memory.", stacklevel=3)
            pl_module.configure_model()
        device = self._device if self._device is not None else trainer.root_device
        self._average_model = _averaged_copy(pl_module, device, use_buffers=self._use_buffers, **self._kwargs)
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        # once per optimizer step: with gradient accumulation several batches share one step
        if step > self._latest_update_step and self.should_update(step_idx=step - 1):
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = step

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            _copy_weights(self._average_model.module, pl_module)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            _swap_weights(self._average_model.module, pl_module)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._average_model is not None:
            _swap_weights(self._average_model.module, pl_module)

    def state_dict(self) -> dict:
        return {"latest_update_step": self._latest_update_step, "latest_update_epoch": self._latest_update_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self._latest_update_step = state_dict["latest_update_step"]
        self._latest_update_epoch = state_dict.get("latest_update_epoch", -1)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        """``state_dict`` gets the averaged weights; the training weights move to ``current_model_state`` and
        the averager's own counters (``n_averaged``) to ``averaging_state``."""
        if self._average_model is None:
            return
        averaged = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len("module."):]: v for k, v in averaged.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in averaged.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        if self._average_model is None:
            return
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            averaged = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
            averaged.update(checkpoint["averaging_state"])
            self._average_model.load_state_dict(averaged)
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:  # a checkpoint written without weight averaging: both models start from its weights
            rank_zero_warn(f"The checkpoint was not written with {type(self).__name__}: the averaged model starts "
                           "from its weights.", stacklevel=3)
            self._average_model.module.load_state_dict(checkpoint["state_dict"], strict=False)


class EMAWeightAveraging(WeightAveraging):
    """An exponential moving average of the weights: ``ema = decay * ema + (1 - decay) * weights``.

    Updated after every ``update_every_n_steps``-th optimizer step (0-based index divisible by it) from
    ``update_starting_at_step`` on, and at epoch ends from ``update_starting_at_epoch`` on when that is set.
    The first update copies the weights. Validation and the final model use the averaged weights.

    >>> from ember.callbacks.weight_averaging import EMAWeightAveraging
    >>> ema = EMAWeightAveraging(decay=0.999, update_starting_at_step=100)
    >>> # ember.Trainer(callbacks=[ema]).fit(model)
    """

    def __init__(self, device: _Device = None, use_buffers: bool = True, decay: float = 0.999,
                 update_every_n_steps: int = 1, update_starting_at_step: Optional[int] = None,
                 update_starting_at_epoch: Optional[int] = None, **kwargs: Any) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMAWeightAveraging(decay={decay!r}): decay must be in [0, 1], e.g. 0.999.")
        if "avg_fn" in kwargs or "multi_avg_fn" in kwargs:
            raise TypeError("EMAWeightAveraging sets the averaging function from `decay`; use WeightAveraging("
                            "avg_fn=...) or WeightAveraging(multi_avg_fn=...) for your own.")
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=get_ema_multi_avg_fn(decay), **kwargs)
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        if epoch_idx is not None:
            return self.update_starting_at_epoch is not None and epoch_idx >= self.update_starting_at_epoch
        return False


# --- StochasticWeightAveraging ------------------------------------------------------------------------------
class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018) with Lightning's schedule.

    * ``swa_epoch_start``: the 1-based epoch where SWA begins (an int), or a fraction of ``max_epochs``
      (a float: ``int(max_epochs * fraction)``). From that epoch the LR scheduler is replaced by ``SWALR``,
      annealing each param group's lr to ``swa_lrs`` over ``annealing_epochs`` epochs (``"cos"`` or
      ``"linear"``).
    * At the start of every epoch from then to the last, the weights as they are then (the end of the previous
      epoch) join an equal-weight average (``avg_fn(averaged, current, n_averaged)`` to average differently),
      kept on ``device``. As in Lightning, the last epoch's own updates are not averaged.
    * When ``fit`` reaches ``max_epochs``, the averaged parameters are copied into the model and, if it has
      BatchNorm layers, their statistics are recomputed with ``torch.optim.swa_utils.update_bn`` over the
      training data (the first element of each batch is fed to ``forward``). Checkpoints written during the
      last epoch hold the training weights; save one after ``fit`` to keep the averaged model.

    >>> from ember.callbacks.weight_averaging import StochasticWeightAveraging
    >>> swa = StochasticWeightAveraging(swa_lrs=1e-2, swa_epoch_start=0.75)
    >>> # ember.Trainer(max_epochs=20, callbacks=[swa]).fit(model)
    """

    def __init__(self, swa_lrs: Union[float, list], swa_epoch_start: Union[int, float] = 0.8,
                 annealing_epochs: int = 10, annealing_strategy: str = "cos",
                 avg_fn: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]] = None,
                 device: _Device = torch.device("cpu")) -> None:
        bad_start = isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or (
            isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or (
            isinstance(swa_epoch_start, float) and not 0.0 <= swa_epoch_start <= 1.0)
        if bad_start:
            raise ValueError(f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): pass an int >= 1 "
                             "(the epoch, counted from 1) or a float in [0, 1] (a fraction of max_epochs).")
        lrs = swa_lrs if isinstance(swa_lrs, (list, tuple)) else [swa_lrs]
        if not lrs or not all(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 for lr in lrs):
            raise ValueError(f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): pass a positive float, or a list "
                             "with one positive float per param group of the optimizer.")
        if annealing_strategy not in ("cos", "linear"):
            raise ValueError(f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): use 'cos' "
                             "or 'linear'.")
        if isinstance(annealing_epochs, bool) or not isinstance(annealing_epochs, int) or annealing_epochs < 0:
            raise ValueError(f"StochasticWeightAveraging(annealing_epochs={annealing_epochs!r}): pass an int >= 0.")
        if avg_fn is not None and not callable(avg_fn):
            raise TypeError(f"StochasticWeightAveraging(avg_fn={avg_fn!r}): pass a function "
                            "(averaged_param, current_param, num_averaged) -> new averaged_param, or None.")
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn
        self._device = _check_device(device, "StochasticWeightAveraging")
        self._reset()

    def _reset(self) -> None:
        self._average_model: Optional[AveragedModel] = None
        self._swa_scheduler: Optional[SWALR] = None
        self._replaced_scheduler: Any = None  # the user's scheduler that SWALR stands in for
        self._scheduler_state: Optional[dict] = None  # from a checkpoint, until SWALR exists
        self._latest_update_epoch = -1
        self._start = 0
        self._max_epochs = -1

    @property
    def swa_start(self) -> int:
        """The 0-based epoch at whose start averaging (and SWALR) begins."""
        return self._start

    @property
    def swa_end(self) -> Union[int, float]:
        """The 0-based last epoch whose start is averaged."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @property
    def n_averaged(self) -> Optional[Tensor]:
        """How many weight snapshots the average holds (a tensor), None before ``fit``."""
        return None if self._average_model is None else self._average_model.n_averaged

    @property
    def average_model(self) -> Optional[nn.Module]:
        """The averaged copy of the module, None before ``fit``."""
        return None if self._average_model is None else self._average_model.module

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self._reset()
        device = self._device if self._device is not None else trainer.root_device
        self._average_model = _averaged_copy(pl_module, device, avg_fn=self._avg_fn, use_buffers=False)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"StochasticWeightAveraging works with one optimizer; configure_optimizers returned "
                             f"{len(trainer.optimizers)}. Return a single optimizer, or remove the callback.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise ValueError(f"StochasticWeightAveraging replaces one LR scheduler with SWALR; configure_optimizers "
                             f"returned {len(trainer.lr_scheduler_configs)}. Return at most one scheduler.")
        self._max_epochs = trainer.max_epochs
        start = self._swa_epoch_start
        if isinstance(start, float):
            if trainer.max_epochs == -1:
                raise ValueError(f"StochasticWeightAveraging(swa_epoch_start={start}) is a fraction of max_epochs, "
                                 "but max_epochs=-1 (unlimited). Pass swa_epoch_start as an int epoch instead.")
            start = int(trainer.max_epochs * start)
        self._start = max(start - 1, 0)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if not self._start <= epoch <= self.swa_end:
            return
        if self._swa_scheduler is None:
            self._begin_swa(trainer, epoch)
        if epoch > self._latest_update_epoch:  # a resumed epoch is not added twice
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def _begin_swa(self, trainer: Any, epoch: int) -> None:
        """Put SWALR in place of the user's scheduler (or add it), continuing its state after a resume."""
        from ember.trainer.optim import LRSchedulerConfig

        optimizer = trainer.optimizers[0]
        lrs = list(self._swa_lrs) if isinstance(self._swa_lrs, (list, tuple)) else \
            [self._swa_lrs] * len(optimizer.param_groups)
        if len(lrs) != len(optimizer.param_groups):
            raise ValueError(f"StochasticWeightAveraging(swa_lrs={self._swa_lrs!r}) has {len(lrs)} values but the "
                             f"optimizer has {len(optimizer.param_groups)} param groups; pass one lr per group, "
                             "or a single float for all.")
        scheduler = SWALR(optimizer, swa_lr=[float(lr) for lr in lrs], anneal_epochs=self._annealing_epochs,
                          anneal_strategy=self._annealing_strategy)
        if self._scheduler_state is not None:
            scheduler.load_state_dict(self._scheduler_state)
            self._scheduler_state = None
        elif epoch != self._start:
            rank_zero_warn(f"StochasticWeightAveraging starts at epoch {epoch}, after swa_epoch_start (epoch "
                           f"{self._start}), without SWA state from a checkpoint: the average starts now.",
                           stacklevel=3)
        self._swa_scheduler = scheduler
        config = LRSchedulerConfig(scheduler)
        configs = trainer.lr_scheduler_configs
        if configs:
            if configs[0].interval != "epoch" or configs[0].frequency != 1:
                rank_zero_warn(f"StochasticWeightAveraging replaces {type(configs[0].scheduler).__name__} "
                               f"(interval={configs[0].interval!r}, frequency={configs[0].frequency}) with SWALR, "
                               "which steps once per epoch.", stacklevel=3)
            self._replaced_scheduler = configs[0].scheduler
            configs[0] = config
        else:
            configs.append(config)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        finished = self._max_epochs == -1 or trainer.current_epoch == self._max_epochs
        if self._average_model is None or not finished or int(self._average_model.n_averaged) == 0:
            return  # stopped before the end (early stopping, max_steps): the model keeps its trained weights
        _copy_weights(self._average_model.module, pl_module, buffers=False)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in pl_module.modules()):
            with torch.no_grad():
                update_bn(_model_inputs(trainer), pl_module)

    def state_dict(self) -> dict:
        average = self._average_model
        return {
            "n_averaged": 0 if average is None else int(average.n_averaged),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if average is None else average.state_dict(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None and state_dict.get("average_model_state") is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        """Keep ``lr_schedulers`` what ``configure_optimizers`` returns: the user's scheduler (as it was when
        SWALR replaced it), not SWALR, whose state travels in this callback's state. A resume then loads
        each scheduler's own state, and SWALR is put back when its epoch starts."""
        states = checkpoint.get("lr_schedulers")
        if self._swa_scheduler is None or states is None:
            return
        for i, cfg in enumerate(trainer.lr_scheduler_configs):
            if cfg.scheduler is self._swa_scheduler and i < len(states):
                if self._replaced_scheduler is not None:
                    states[i] = self._replaced_scheduler.state_dict()
                else:
                    del states[i]
                break


def _model_inputs(trainer: Any) -> Iterator[Any]:
    """The training batches' ``forward`` inputs (the first element of a tuple/list batch), on the device."""
    limit = trainer.num_training_batches
    for i, batch in enumerate(trainer.train_dataloader):
        if i >= limit:
            return
        batch = trainer.run_state.to_device(batch)
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if not isinstance(batch, Tensor):
            raise TypeError(f"StochasticWeightAveraging recomputes BatchNorm statistics with torch.optim.swa_utils."
                            f"update_bn, which calls forward(batch[0]) on each training batch; received a "
                            f"{type(batch).__name__}. Make the training batches a tensor or a tuple (inputs, ...).")
        yield batch
