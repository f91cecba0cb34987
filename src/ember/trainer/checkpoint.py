"""Checkpoints and the Trainer: the dict (Lightning's keys) a save writes, the weights into a module, and a resume's
checks and restore. The files themselves are written and read in ``ember/_checkpoint_io.py``."""
from __future__ import annotations

import glob
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ember.__about__ import __version__
from ember._checkpoint_io import other_checkpoints

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

# Lightning reads this key to decide how to migrate a checkpoint; naming a release whose format we
# follow lets `pytorch_lightning` load ember's `state_dict` and hyper-parameters without migration.
LIGHTNING_FORMAT_VERSION = "2.5.0"


def load_weights(module: Any, checkpoint: dict, path: Any, strict: Optional[bool] = None, strategy: Any = None) -> None:
    """``on_load_checkpoint``, then the checkpoint's ``state_dict`` into ``module`` (through ``strategy``, which
    scatters it for a sharded model). ``strict=None``: the module's ``strict_loading`` (True unless it set it),
    as Lightning's ``fit/validate/test/predict(ckpt_path=...)``."""
    if strict is None:
        strict = getattr(module, "strict_loading", True)
    if "state_dict" not in checkpoint:
        raise KeyError(
            f"{path} has no 'state_dict' entry (found keys: {sorted(checkpoint)}); it is not a checkpoint written "
            "by ember or PyTorch Lightning."
        )
    module.on_load_checkpoint(checkpoint)
    try:
        if strategy is not None:
            strategy.load_model_state_dict(module, checkpoint["state_dict"], strict=strict)
        else:
            module.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as e:
        if "Error(s) in loading state_dict" not in str(e):
            raise
        fix = ("If the difference is intended, set `self.strict_loading = False` in the model's __init__ (or pass "
               "`strict=False` to load_from_checkpoint) to load the matching entries." if strict else
               "strict loading is off, so these are tensors whose shapes differ: they cannot load.")
        raise RuntimeError(f"The weights in {path} do not fit {type(module).__name__}: it was saved from a different "
                           f"model or configuration. {e}\n{fix}") from e


def _plain_hparams(hparams: Any) -> dict:
    """Hyperparameters as data ``torch.load(weights_only=True)`` reads: plain values as they are, a class, function
    or partial as a description of plain data, an ``nn.Module`` left out (see ``ember/_hparams.py``)."""
    from ember._hparams import hparams_for_checkpoint

    return hparams_for_checkpoint(hparams)


def dump_checkpoint(trainer: Trainer, weights_only: bool = False) -> dict:
    """The checkpoint dict: Lightning's keys plus ember's loop progress (with RNG states)."""
    module = trainer.lightning_module
    checkpoint: dict = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "ember_version": __version__,
        "state_dict": trainer.strategy.lightning_module_state_dict(module),
        "loops": {"ember": trainer._progress.state_dict()},
    }
    results = trainer._metrics.train
    if results is not None and not trainer._progress.epoch_done and not weights_only:
        checkpoint["loops"]["ember_train_metrics"] = results.state_dict()  # mid-epoch: the epoch means so far
    if trainer._progress.accumulated and not weights_only:  # saved mid accumulation window: keep the partial sum
        checkpoint["loops"]["ember_accumulated_grads"] = [p.grad for p in module.parameters()]
    if not weights_only:
        checkpoint["callbacks"] = {}
        for cb in trainer.callbacks:
            state = cb.state_dict()
            if state:
                checkpoint["callbacks"][cb.state_key] = state
        checkpoint["optimizer_states"] = [trainer.strategy.optimizer_state(opt) for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [cfg.scheduler.state_dict() for cfg in trainer.lr_scheduler_configs]
        # plain strings: a resume with another optimizer class is refused with both names
        checkpoint["loops"]["ember_optimizer_classes"] = [_class_name(opt) for opt in trainer.optimizers]
        precision_state = trainer._precision.state_dict()
        if precision_state:
            checkpoint["MixedPrecision"] = precision_state
    if module.hparams:
        checkpoint["hparams_name"] = getattr(module, "_hparams_name", None) or "kwargs"
        checkpoint["hyper_parameters"] = _plain_hparams(module.hparams)
    datamodule = trainer.datamodule
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hparams_name"] = getattr(datamodule, "_hparams_name", None) or "kwargs"
            checkpoint["datamodule_hyper_parameters"] = _plain_hparams(datamodule.hparams)
        if not weights_only:
            state = datamodule.state_dict()
            if state:
                checkpoint[type(datamodule).__qualname__] = state
    if not weights_only:
        for cb in trainer.callbacks:
            cb.on_save_checkpoint(trainer, module, checkpoint)
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def restore_training_state(trainer: Trainer, checkpoint: dict, path: Any) -> None:
    """Load a checkpoint into the running fit: weights, callbacks, optimizers, schedulers, data, progress.

    What this run cannot continue from is refused first, before anything is loaded: counters out of range for
    this run's data and limits, another number of optimizers, another optimizer class.
    Callbacks come before optimizers, as in Lightning: one that changed the optimizer (a finetuning callback
    adding a param group) rebuilds that in ``on_load_checkpoint`` so the optimizer's state fits; the optimizers'
    param-group layout is compared after that, right before their state loads.
    """
    for key in ("optimizer_states", "loops"):
        if key not in checkpoint:
            raise KeyError(
                f"Cannot resume training from {path}: it has no '{key}' entry (it was saved with "
                "save_weights_only=True, or by another tool). Load only the weights with "
                "`Model.load_from_checkpoint(path)` and start a new fit."
            )
    loops = checkpoint["loops"]
    progress = loops.get("ember") if isinstance(loops, dict) else None
    if progress is None:
        raise KeyError(f"Cannot resume training from {path}: its 'loops' entry was not written by ember (a "
                       "PyTorch Lightning checkpoint?). Load the weights with `Model.load_from_checkpoint(path)` "
                       "and start a new fit.")
    _check_progress(trainer, progress, path)
    saved_opts = checkpoint["optimizer_states"]
    _check_optimizer_classes(path, loops.get("ember_optimizer_classes"), saved_opts, trainer.optimizers)
    module = trainer.lightning_module
    load_weights(module, checkpoint, path, strategy=trainer.strategy)  # strict: the module's strict_loading
    callback_states = checkpoint.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.state_key in callback_states:
            cb.load_state_dict(callback_states[cb.state_key])
        cb.on_load_checkpoint(trainer, module, checkpoint)
    for i, (opt, state) in enumerate(zip(trainer.optimizers, saved_opts)):
        _check_param_groups(path, i, opt, state)
        trainer.strategy.load_optimizer_state_dict(opt, state)
    for cfg, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        cfg.scheduler.load_state_dict(state)
    trainer._precision.load_state_dict(checkpoint.get("MixedPrecision", {}))
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    trainer._progress.load_state_dict(progress)
    if trainer._progress.batch_idx:
        trainer._resumed_train_metrics = loops.get("ember_train_metrics")
    grads = loops.get("ember_accumulated_grads")
    if grads is not None:
        for param, grad in zip(module.parameters(), grads):
            param.grad = None if grad is None else grad.to(param.device)


_RESUME_ELSEWHERE = ("Resume from an earlier checkpoint{others}, or start a new fit with the weights alone: "
                     "`Model.load_from_checkpoint(path)`.")


def _check_progress(trainer: Trainer, progress: Any, path: Any) -> None:
    """The saved counters against this run: its data (an epoch's batches), max_steps and max_epochs."""
    from ember.trainer.progress import Progress

    batches = trainer.num_training_batches
    reload = trainer.reload_dataloaders_every_n_epochs
    if isinstance(progress, dict) and isinstance(progress.get("epoch"), int):
        epoch = progress["epoch"] + bool(progress.get("epoch_done"))
        if reload and epoch > 0 and epoch % reload == 0:
            batches = math.inf  # the resumed epoch loads its data afresh: its length is not known yet
    unlimited = bool(trainer.fast_dev_run)  # a quick check on any checkpoint
    try:
        Progress.check_state(progress, batches_per_epoch=batches, max_epochs=-1 if unlimited else trainer.max_epochs,
                             max_steps=-1 if unlimited else trainer.max_steps)
    except (TypeError, ValueError) as e:
        raise type(e)(f"Cannot resume training from {path}: {e}. The file is damaged or was saved for other data "
                      "or limits. " + _RESUME_ELSEWHERE.format(others=other_checkpoints(Path(path)))) from None


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_optimizer_classes(path: Any, saved_names: Any, saved_states: Any, configured: list) -> None:
    """As many optimizers as saved, each of the class saved: Adam's state loaded into SGD failed later with a bare
    ``KeyError: 'betas'``."""
    names = [_class_name(o) for o in configured]
    if not isinstance(saved_states, (list, tuple)) or len(saved_states) != len(configured):
        found = len(saved_states) if isinstance(saved_states, (list, tuple)) else type(saved_states).__name__
        raise ValueError(f"Cannot resume training from {path}: it holds {found} optimizer states"
                         f"{f' ({_listed(saved_names)})' if saved_names else ''} but configure_optimizers returned "
                         f"{len(configured)} optimizers ({_listed(names) or 'none'}). Resume with the same "
                         "configure_optimizers.")
    if saved_names is None:  # written before ember stored the classes: compare the optimizers' hyperparameters
        for i, (opt, state) in enumerate(zip(configured, saved_states)):
            _check_group_keys(path, i, opt, state)
        return
    for i, (saved, name) in enumerate(zip(saved_names, names)):
        if saved != name:
            raise ValueError(f"Cannot resume training from {path}: its optimizer {i} is a {saved}, but "
                             f"configure_optimizers returned a {name} there; an optimizer's state only loads into "
                             "the class that wrote it. Resume with the optimizer the run was saved with, or start a "
                             "new fit from the weights alone (`Model.load_from_checkpoint(path)`).")


def _listed(names: Any) -> str:
    return ", ".join(str(n) for n in names) if isinstance(names, (list, tuple)) else ""


def _check_group_keys(path: Any, index: int, opt: Any, state: Any) -> None:
    """For a checkpoint without class names: hyperparameters both missing and extra mean another class (a newer
    torch only adds keys, and its optimizers fill those in when loading)."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not groups or not isinstance(groups[0], dict) or not opt.param_groups:
        return
    saved = set(groups[0]) - {"params"}
    ours = set(opt.param_groups[0]) - {"params"}
    if saved - ours and ours - saved:
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} has the hyperparameters "
                         f"{sorted(saved)}, but {type(opt).__name__} has {sorted(ours)}: it was saved by another "
                         "optimizer class. Resume with the optimizer the run was saved with, or start a new fit from "
                         "the weights alone (`Model.load_from_checkpoint(path)`).")


def _check_param_groups(path: Any, index: int, opt: Any, state: Any) -> None:
    """The saved optimizer's layout (param groups, parameters per group, state entries) against this one's."""
    if not isinstance(state, dict) or "param_groups" not in state:
        return  # a sharded optimizer's state: its strategy checks it
    groups, ours = state["param_groups"], opt.param_groups
    saved_sizes = [len(g.get("params", ())) if isinstance(g, dict) else None for g in groups] \
        if isinstance(groups, (list, tuple)) else None
    sizes = [len(g["params"]) for g in ours]
    if saved_sizes != sizes:
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} ({type(opt).__name__}) has "
                         f"param groups of {saved_sizes} parameters, but the configured one has {sizes}. The model or "
                         "configure_optimizers changed since the checkpoint; resume with the same ones, or start a "
                         "new fit from the weights alone (`Model.load_from_checkpoint(path)`).")
    entries = state.get("state")
    ids = {p for g in groups for p in g["params"]}
    stray = [k for k in entries if k not in ids] if isinstance(entries, dict) else None
    if stray is None or stray:
        found = f"entries for parameters {stray} that none of its param groups holds" if stray else \
            f"a 'state' entry that is a {type(entries).__name__}, not a dict"
        raise ValueError(f"Cannot resume training from {path}: its optimizer {index} state has {found}; the file "
                         "is damaged. " + _RESUME_ELSEWHERE.format(others=other_checkpoints(Path(path))))


# --- which checkpoint a run reads: Trainer.fit/validate/test/predict(ckpt_path=...) -------------------------------
def resolve_ckpt_path(trainer: Trainer, ckpt_path: Optional[str]) -> Optional[str]:
    """``ckpt_path`` as a path: 'best' (the ModelCheckpoint's best), 'last' (the newest last*.ckpt this trainer
    can find; None with a warning when there is none), or a file (a folder for a sharded checkpoint)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "best":
        cb = trainer.checkpoint_callback
        if cb is None or not getattr(cb, "best_model_path", ""):
            raise ValueError('ckpt_path="best" needs a ModelCheckpoint that has saved a checkpoint in this '
                             "Trainer; pass a file path instead.")
        return cb.best_model_path
    sharded = trainer.strategy.save_needs_all_ranks  # a sharded checkpoint (FSDP) is a folder
    if ckpt_path == "last":
        found = _find_last_checkpoint(trainer, sharded)
        if found is None:
            warnings.warn('ckpt_path="last" found no last checkpoint; training starts from scratch.', stacklevel=3)
        return found
    if not os.path.isfile(ckpt_path) and not (os.path.isdir(ckpt_path) and sharded):
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is not a file. Pass a checkpoint path, 'last' or 'best'.")
    return ckpt_path


def _find_last_checkpoint(trainer: Trainer, sharded: bool) -> Optional[str]:
    candidates = []
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "last_model_path", ""):
            candidates.append(cb.last_model_path)
        if getattr(cb, "dirpath", None):
            candidates += glob.glob(os.path.join(cb.dirpath, "last*.ckpt"))
    logger = trainer.logger
    if logger is not None and getattr(logger, "save_dir", None):  # earlier versions of the same logger
        candidates += glob.glob(os.path.join(logger.save_dir, str(logger.name), "*", "checkpoints", "last*.ckpt"))
    candidates += glob.glob(os.path.join(trainer.default_root_dir, "checkpoints", "last*.ckpt"))
    candidates = [c for c in candidates if os.path.isfile(c) or (os.path.isdir(c) and sharded)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def read(trainer: Trainer, path: Any, weights_only: Optional[bool]) -> dict:
    """The checkpoint at ``path``, read by the strategy (a sharded one reads its folder); fully unpickled only
    when the caller asked for ``weights_only=False``."""
    return trainer.strategy.load_checkpoint(path, trainer.root_device, weights_only=weights_only)


def load_weights_from(trainer: Trainer, ckpt_path: Optional[str], weights_only: Optional[bool] = None) -> None:
    """validate/test/predict with ``ckpt_path``: load that checkpoint's weights into the model."""
    path = resolve_ckpt_path(trainer, ckpt_path)
    if path is None:
        return
    load_weights(trainer.lightning_module, read(trainer, path, weights_only), path, strategy=trainer.strategy)
    trainer.ckpt_path = str(path)
