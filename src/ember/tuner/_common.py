"""What the learning-rate finder and the batch-size finder share.

Both searches run short real trainings on a *separate* Trainer built for the purpose (no logger, no
checkpoints, no progress bar, no sanity check), so the user's Trainer is never reconfigured. Around
those runs they keep the user's state safe:

* ``_Snapshot`` saves the model's weights, gradients and train/eval modes and the optimizers' and
  schedulers' states when a trial starts, and puts them back afterwards;
* ``_isolated`` restores the global random generators and the model's/datamodule's ``trainer``;
* ``_lifecycle_once`` runs the user's ``prepare_data``/``setup``/``teardown`` at most once around all
  trials (not at all inside a running fit, which has already called them), and keeps the model's
  ``configure_callbacks`` out of the trials.
"""
from __future__ import annotations

import contextlib
import copy
import gc
from typing import Any, Iterator

import torch

from ember.callbacks.callback import Callback
from ember.trainer.progress import rng_state, set_rng_state


# --- where Lightning looks for a hyper-parameter ---------------------------------------------------
def _attr_holders(model: Any, name: str, datamodule: Any = None) -> list:
    """The objects (or hparams dicts) that hold ``name``, in Lightning's order: ``model``, ``model.hparams``,
    ``datamodule``, ``datamodule.hparams``. The datamodule is the one given, else the model's trainer's."""
    if datamodule is None:
        trainer = getattr(model, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None)
    holders: list = []
    for owner in (model, datamodule):
        if owner is None:
            continue
        if hasattr(owner, name):
            holders.append(owner)
        hparams = getattr(owner, "hparams", None)
        if isinstance(hparams, dict) and name in hparams:
            holders.append(hparams)
    return holders


def _places(name: str) -> str:
    return f"`model.{name}`, `model.hparams.{name}`, `datamodule.{name}` or `datamodule.hparams.{name}`"


def _get_attr(model: Any, name: str, datamodule: Any = None) -> Any:
    """The value Lightning reads: the last holder's (a datamodule's value wins over the model's)."""
    holders = _attr_holders(model, name, datamodule)
    if not holders:
        raise AttributeError(f"No `{name}` found in {_places(name)}.")
    holder = holders[-1]
    return holder[name] if isinstance(holder, dict) else getattr(holder, name)


def _set_attr(model: Any, name: str, value: Any, datamodule: Any = None) -> None:
    """Set ``name`` on every holder, so that whichever one the user's code reads sees ``value``."""
    holders = _attr_holders(model, name, datamodule)
    if not holders:
        raise AttributeError(f"No `{name}` found in {_places(name)}.")
    for holder in holders:
        if isinstance(holder, dict):
            holder[name] = value
        else:
            setattr(holder, name, value)


# --- keeping the user's state safe -----------------------------------------------------------------
class _Snapshot:
    """The model's tensors and modes and some optimizers'/schedulers' states, taken once and put back."""

    def __init__(self) -> None:
        self.taken = False
        self._weights: dict = {}
        self._grads: list = []
        self._modes: dict = {}
        self._optimizers: list = []
        self._schedulers: list = []

    def take(self, model: Any, optimizers: list = (), schedulers: list = ()) -> None:
        if not self.taken:
            self.taken = True
            # clone: state_dict() returns the live tensors, which the trial's optimizer steps change in place
            self._weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
            self._modes = {m: m.training for m in model.modules()}
        self.add_optimizers(optimizers, schedulers)

    def add_optimizers(self, optimizers: Any = (), schedulers: Any = ()) -> None:
        """Save these optimizers'/schedulers' states too (an object already saved keeps its first state)."""
        seen = {id(o) for o, _ in self._optimizers} | {id(s) for s, _ in self._schedulers}
        self._optimizers += [(o, copy.deepcopy(o.state_dict())) for o in optimizers if id(o) not in seen]
        self._schedulers += [(s, copy.deepcopy(s.state_dict())) for s in schedulers if id(s) not in seen]

    def restore(self, model: Any) -> None:
        if self.taken:
            with torch.no_grad():
                model.load_state_dict(self._weights)  # in place: the optimizers keep pointing at the same tensors
            for param, grad in self._grads:
                param.grad = grad
            for module, mode in self._modes.items():
                module.training = mode
        for opt, state in self._optimizers:
            opt.load_state_dict(state)
        for sched, state in self._schedulers:
            sched.load_state_dict(state)


class _SnapshotAtStart(Callback):
    """Takes the snapshot when a trial run starts: after ``configure_model`` and ``configure_optimizers``,
    so that layers built there and an optimizer the module keeps between runs are restored too."""

    def __init__(self, snapshot: _Snapshot) -> None:
        self.snapshot = snapshot

    def _take(self, trainer: Any, pl_module: Any) -> None:
        self.snapshot.take(pl_module, trainer.optimizers, [c.scheduler for c in trainer.lr_scheduler_configs])

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._take(trainer, pl_module)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._take(trainer, pl_module)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._take(trainer, pl_module)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._take(trainer, pl_module)


@contextlib.contextmanager
def _isolated(model: Any, datamodule: Any) -> Iterator[None]:
    """Random generators, ``model.trainer`` and ``datamodule.trainer`` as they were before the search."""
    rng = rng_state()
    model_trainer = getattr(model, "_trainer", None)
    log_store = model.__dict__.get("_log_store")
    dm_trainer = getattr(datamodule, "trainer", None) if datamodule is not None else None
    try:
        yield
    finally:
        set_rng_state(rng)
        model.trainer = model_trainer
        model.__dict__["_log_store"] = log_store
        if datamodule is not None:
            datamodule.trainer = dm_trainer


_MODEL_HOOKS = ("prepare_data", "setup", "teardown", "configure_callbacks")
_DATAMODULE_HOOKS = ("prepare_data", "setup", "teardown")


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


@contextlib.contextmanager
def _lifecycle_once(model: Any, datamodule: Any, stage: str, already_set_up: bool) -> Iterator[None]:
    """Each trial is a whole Trainer run, which would call the user's ``prepare_data``/``setup``/``teardown``
    every time (and ``teardown`` in the middle of a running fit). Instead they run once around the search,
    or not at all when ``already_set_up`` (the search runs inside the user's fit); during the trials they are
    shadowed by no-ops on the instances. ``configure_callbacks`` is shadowed too: the model's callbacks
    (checkpoints, early stopping) belong to the user's run, not to the trials."""
    if not already_set_up:
        if datamodule is not None:
            datamodule.prepare_data()
        model.prepare_data()
        if datamodule is not None:
            datamodule.setup(stage)
        model.setup(stage)
    shadowed = [(model, name) for name in _MODEL_HOOKS]
    if datamodule is not None:
        shadowed += [(datamodule, name) for name in _DATAMODULE_HOOKS]
    for obj, name in shadowed:
        obj.__dict__[name] = _noop  # an instance attribute wins over the class's method
    try:
        yield
    finally:
        for obj, name in shadowed:
            obj.__dict__.pop(name, None)
        if not already_set_up:
            model.teardown(stage)
            if datamodule is not None:
                datamodule.teardown(stage)


def _free_memory(device: torch.device) -> None:
    """After an out-of-memory error: drop the failed trial's tensors and give the accelerator's cached blocks back.

    Reference counting frees most of them as the exception goes; a full ``gc.collect`` (about 0.2 s with torch
    loaded) also frees those held in reference cycles, and is worth it where memory is scarce: on accelerators.
    """
    if device.type == "cpu":
        gc.collect(1)
        return
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
