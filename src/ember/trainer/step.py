"""One training step: what runs after ``training_step`` returns, decided at each epoch start.

``StepPlan`` is built by the epoch loop after ``on_train_epoch_start`` from what is configured then (precision,
optimizer, clipping, an ``optimizer_step`` override, step-interval schedulers, the hooks anyone overrides), so a
callback that changes any of them takes effect, as in Lightning. When nothing is configured the step is the three
calls of a hand-written loop; anything configured takes the general path. A profiler asks for a timed plan.
The manual-optimization calls (``manual_backward``, ``LightningOptimizer.step``, ``clip_gradients``) are here too:
this file is the one place optimizer steps are counted.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor

from ember._utils import is_overridden
from ember.module import LightningModule
from ember.trainer.hooks import StepHooks, strategy_action
from ember.trainer.optim import step_schedulers

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class StepPlan:
    """How each automatic-optimization step of this epoch runs; ``manual`` runs a manual-optimization step."""

    def __init__(self, trainer: "Trainer", hooks: StepHooks, profiler: Any = None) -> None:
        t = self.trainer = trainer
        module = self.module = t.lightning_module
        self.hooks = hooks
        self.progress = t._progress
        self.precision = t._precision
        self.plain = self.precision.plain  # 32-bit: no autocast, no scaler, so no calls into Precision at all
        self.training_step = t._training_step
        self.optimizer = t.optimizers[0] if t.optimizers else None
        self.accumulate = t.accumulate_grad_batches
        self.clip = bool(t.gradient_clip_val) or is_overridden("configure_gradient_clipping", module, LightningModule)
        self.step_schedulers = any(c.interval == "step" for c in t.lr_scheduler_configs)
        self.custom_optimizer_step = is_overridden("optimizer_step", module, LightningModule) or any(
            isinstance(o, torch.optim.LBFGS) for o in t.optimizers)
        self.check_finite = t._check_finite_every_step
        self.zero_grad = module.optimizer_zero_grad
        self.backward = module.backward if self.plain else (lambda loss: self.precision.backward(loss, module))
        self.optimizer_step: Callable[[], Any] = self._optimizer_step
        if profiler is not None:  # each part timed under Lightning's action names
            self.zero_grad = profiler.timed(self.zero_grad, f"[LightningModule]{type(module).__name__}."
                                                            "optimizer_zero_grad")
            self.backward = profiler.timed(self.backward, f"{strategy_action(t)}.backward")
            self.optimizer_step = profiler.timed(self.optimizer_step, f"[LightningModule]{type(module).__name__}"
                                                                      ".optimizer_step")
        # The direct step: after training_step, exactly optimizer.zero_grad(), loss.backward(), optimizer.step()
        self.direct = (module.automatic_optimization and self.accumulate == 1 and self.progress.accumulated == 0
                       and self.optimizer is not None and self.plain and hooks.none and profiler is None
                       and not is_overridden("optimizer_zero_grad", module, LightningModule)
                       and not is_overridden("backward", module, LightningModule)
                       and not self.custom_optimizer_step and not self.clip and not self.step_schedulers)

    def manual(self, batch: Any, batch_idx: int) -> Any:
        """training_step with ``automatic_optimization = False``: the step does its own backward and step."""
        self.hooks.module_dict["_current_fx"] = "training_step"
        with self.precision.forward_context():
            return self.training_step(batch, batch_idx)

    def automatic(self, batch: Any, batch_idx: int, should_step: bool) -> Any:
        """training_step, zero_grad at the start of an accumulation window, backward, and every ``accumulate``
        batches (and at the epoch's end): unscale, clip, optimizer step, step schedulers.

        Returns the step's output for ``on_train_batch_end``: ``{}`` when training_step returned None (see
        ``_none_step``), None when the batch was skipped for a non-finite loss (no optimizer step counted).
        """
        self.hooks.module_dict["_current_fx"] = "training_step"  # self.log's defaults follow it
        if self.plain:
            output = self.training_step(batch, batch_idx)
        else:
            with self.precision.forward_context():
                output = self.training_step(batch, batch_idx)
        loss = loss_from(output)
        if loss is None:  # a Python check: no sync
            self._none_step(batch, batch_idx, should_step)
            return {}  # what Lightning passes on_train_batch_end for such a batch
        p = self.progress
        try:  # free unless raised: a loss of several elements fails in .item() or backward, and is named below
            if self.check_finite and not math.isfinite(loss.item()):  # no sync on a CPU
                if nonfinite_loss(self.trainer, loss, batch_idx) == "skip":  # no backward; a window ending here
                    if should_step and p.accumulated:                       # steps what it has
                        p.accumulated = 0
                        self._step(batch, batch_idx)
                    return None
            if self.direct:
                optimizer = self.optimizer
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                self._stepped()
                return output
            self._backward_and_step(loss, batch, batch_idx, should_step)
        except RuntimeError as error:
            if loss.numel() != 1:
                raise non_scalar_loss(loss) from error
            raise
        return output

    def _backward_and_step(self, loss: Tensor, batch: Any, batch_idx: int, should_step: bool) -> None:
        """The general form: zero_grad at a window's start, backward, and the step at its end."""
        p, hooks, optimizer = self.progress, self.hooks, self.optimizer
        if p.accumulated == 0 and optimizer is not None:
            if hooks.on_before_zero_grad is not None:
                hooks.on_before_zero_grad(optimizer)
            self.zero_grad(p.epoch, batch_idx, optimizer)
        if self.accumulate > 1:
            loss = loss / self.accumulate  # so that N accumulated batches give the gradient of their mean
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(loss)
        self.backward(loss)
        if hooks.on_after_backward is not None:
            hooks.on_after_backward()
        p.accumulated += 1
        if should_step:
            p.accumulated = 0
            self._step(batch, batch_idx, loss)

    def _none_step(self, batch: Any, batch_idx: int, should_step: bool) -> None:
        """training_step returned None (or a dict whose 'loss' is None). As in Lightning: a warning (once per fit:
        forgetting ``return loss`` is a common mistake), no backward, and the optimizer step still counts
        (``global_step``, step-interval schedulers and logging advance) but changes no weight. A window of
        accumulated gradients that ends here steps them."""
        t, p = self.trainer, self.progress
        if not t._warned_none_step:
            t._warned_none_step = True
            warnings.warn("`training_step` returned `None`. If this was on purpose, ignore this warning... (ember: the "
                          "batch is skipped: no backward, and no weight changes at its optimizer step. To train, "
                          "return the loss tensor or a dict with a 'loss' key.)", UserWarning, stacklevel=5)
        if not should_step:
            return
        if p.accumulated:
            p.accumulated = 0
            self._step(batch, batch_idx)
        elif self.optimizer is not None:  # Lightning zeroes the gradients, then steps: nothing moves; ember counts
            self._stepped()

    def _step(self, batch: Any, batch_idx: int, loss: Optional[Tensor] = None) -> None:
        """Unscale, clip, step the optimizer (through ``optimizer_step`` when the module overrides it, or when the
        optimizer needs a closure, like LBFGS), then step-interval schedulers."""
        optimizer = self.optimizer
        if optimizer is None:
            return
        if not self.plain:
            self.precision.unscale(optimizer)  # clipping must see true gradient sizes
        if self.hooks.on_before_optimizer_step is not None:
            self.hooks.on_before_optimizer_step(optimizer)
        t = self.trainer
        if self.clip:
            self.module.configure_gradient_clipping(optimizer, t.gradient_clip_val, t.gradient_clip_algorithm)
        self._batch, self._batch_idx, self._loss = batch, batch_idx, loss
        self.optimizer_step()
        self._stepped()

    def _optimizer_step(self) -> None:
        optimizer = self.optimizer
        if self.custom_optimizer_step:
            self.module.optimizer_step(self.progress.epoch, self._batch_idx, optimizer, self._closure())
        elif self.plain:
            optimizer.step()
        else:
            self.precision.optimizer_step(optimizer)

    def _stepped(self) -> None:
        self.progress.optimizer_steps += 1
        if self.step_schedulers:
            step_schedulers(self.trainer, "step")

    def _closure(self) -> Callable[[], Optional[Tensor]]:
        """The closure ``optimizer.step(closure)`` expects: its first call returns the loss already backpropagated;
        later calls (LBFGS re-evaluates) run training_step and backward again."""
        batch, batch_idx, loss, calls = self._batch, self._batch_idx, self._loss, [0]

        def closure() -> Optional[Tensor]:
            calls[0] += 1
            if calls[0] == 1:
                return loss
            self.optimizer.zero_grad()
            with self.precision.forward_context():
                again = loss_from(self.training_step(batch, batch_idx))
            if again is not None:
                self.precision.backward(again / self.accumulate if self.accumulate > 1 else again, self.module)
            return again

        return closure


# --- manual optimization: self.manual_backward, opt.step(), self.clip_gradients (Trainer methods) -----------------
def lightning_optimizers(trainer: "Trainer") -> list:
    """What ``self.optimizers()`` returns: the optimizers wrapped so that ``step()`` counts and runs the hooks."""
    return trainer._wrapped_optimizers


def manual_backward(trainer: "Trainer", loss: Tensor, *args: Any, **kwargs: Any) -> None:
    trainer._hooks.call("on_before_backward", loss)
    backward = trainer._precision.backward
    if trainer._profiler_now is not None:
        backward = trainer._profiler_now.timed(backward, f"{strategy_action(trainer)}.backward")
    try:
        backward(loss, trainer.lightning_module, *args, **kwargs)
    except RuntimeError as error:
        if isinstance(loss, Tensor) and loss.numel() != 1 and not args and "gradient" not in kwargs:
            raise non_scalar_loss(loss, "manual_backward got") from error
        raise
    trainer._hooks.call("on_after_backward")


def optimizer_step(trainer: "Trainer", optimizer: torch.optim.Optimizer, **kwargs: Any) -> Any:
    trainer._hooks.call("on_before_optimizer_step", optimizer)
    step = trainer._precision.optimizer_step
    if trainer._profiler_now is not None:
        module = type(trainer.lightning_module).__name__
        step = trainer._profiler_now.timed(step, f"[LightningModule]{module}.optimizer_step")
    out = step(optimizer, **kwargs)
    trainer._progress.optimizer_steps += 1
    return out


def clip_gradients(trainer: "Trainer", optimizer: Any, value: float, algorithm: str) -> None:
    if not value >= 0:  # also NaN; a negative max_norm would reverse the update
        raise ValueError(f"clip_gradients(gradient_clip_val={value!r}) must be a number >= 0 (None or 0: no "
                         "clipping).")
    optimizer = getattr(optimizer, "optimizer", optimizer)
    trainer._precision.unscale(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if algorithm == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)
    elif algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    else:
        raise ValueError(f"gradient_clip_algorithm={algorithm!r} must be 'norm' or 'value'.")


# --- what a training step returned ---------------------------------------------------------------------------
def loss_from(output: Any) -> Optional[Tensor]:
    """The loss in ``training_step``'s output (a tensor, or a dict's 'loss'); None: skip the batch."""
    if isinstance(output, Tensor):
        loss = output
    elif isinstance(output, dict):
        if "loss" not in output:
            raise KeyError(f"training_step returned a dict without a 'loss' key (keys: {sorted(output)}). Put the "
                           "tensor to minimise under 'loss'.")
        loss = output["loss"]
        if loss is None:
            return None
    elif output is None:
        return None
    else:
        raise TypeError(
            f"training_step returned a {type(output).__name__}; with automatic optimization it must return the loss "
            "tensor, a dict with a 'loss' key, or None to skip the batch."
        )
    if not isinstance(loss, Tensor) or not loss.requires_grad:
        what = type(loss).__name__ if not isinstance(loss, Tensor) else "a tensor that does not require grad"
        raise ValueError(
            f"training_step returned a loss that cannot be backpropagated ({what}). Return the loss tensor itself, "
            "not `loss.item()` or `loss.detach()`, and compute it from the model's outputs."
        )
    return loss


def non_scalar_loss(loss: Tensor, where: str = "training_step returned") -> ValueError:
    """The error for a loss with more than one element (autograd can only start from a scalar)."""
    return ValueError(
        f"{where} a loss of shape {tuple(loss.shape)} ({loss.numel()} elements); the loss must be a "
        "scalar (one element). Reduce it, e.g. `loss = loss.mean()` (or `.sum()`), before returning it."
    )


def nonfinite_loss(t: "Trainer", loss: Tensor, batch_idx: int) -> str:
    """The loss is NaN or infinite: raise (the default) or skip this batch (``on_nonfinite_loss="skip"``)."""
    p = t._progress
    if t.on_nonfinite_loss == "skip":
        warnings.warn(f"training_step returned a non-finite loss ({loss.item()}) at epoch {p.epoch}, batch "
                      f"{batch_idx}, global step {p.optimizer_steps}; the batch is skipped (no backward, no "
                      "optimizer step) because Trainer(on_nonfinite_loss='skip').", stacklevel=4)
        return "skip"
    raise FloatingPointError(
        f"training_step returned a non-finite loss ({loss.item()}) at epoch {p.epoch}, batch {batch_idx}, global "
        f"step {p.optimizer_steps}. Trainer(detect_anomaly=True) points at the operation that produced it; "
        "Trainer(on_nonfinite_loss='skip') skips such batches instead of stopping."
    )
