"""The story of a batch: the fit loop, one training epoch, one training step, and the
evaluation/prediction loop. Read top to bottom; features live in callbacks and small helpers.
"""
from __future__ import annotations

import inspect
import itertools
import math
import warnings

from typing import TYPE_CHECKING, Any, Iterator, Optional

import torch
from torch import Tensor

from ember._utils import adapt_step
from ember.trainer.hooks import StepHooks, strategy_action
from ember.trainer.metrics import Results, logging_into
from ember.trainer.optim import step_schedulers
from ember.trainer.step import StepPlan, nonfinite_loss
from ember.trainer.progress import rng_state, set_rng_state
from ember.trainer.run_state import logs_at
from ember.trainer.signals import stop_for_signal
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


# --- fit -------------------------------------------------------------------------------------------
def run_fit(trainer: Trainer) -> None:
    """on_train_start, epochs until a stopping rule says done, on_train_end."""
    hooks = trainer._hooks
    progress = trainer._progress
    if trainer.num_training_batches == 0:  # limit_train_batches=0: as Lightning, no training and no training hooks
        return
    first = None
    if not trainer._resumed:
        # As Lightning: the first epoch's iterator is made before on_train_start (a DataLoader's iterator draws its
        # base seed from the global generator, so what is drawn after fit matches Lightning's). A resumed run makes
        # it after on_train_epoch_start, as every later epoch does, so that it continues an uninterrupted run exactly.
        loader = trainer.data.train_loader_for_epoch(progress.epoch)
        first = (loader, _epoch_iterator(loader, progress))
    done = _fit_done(trainer)
    if done and trainer._signals.received is None:
        return  # as Lightning: nothing left to train (max_epochs/max_steps reached) runs no training hooks
    hooks.call("on_train_start")
    if progress.batch_idx == 0:
        progress.restore_rng()  # a resumed run continues the random streams exactly where the checkpoint left them
    while True:
        if trainer._signals.received is not None:
            stop_for_signal(trainer)  # SIGTERM/SIGUSR1/SIGINT: last.ckpt, then leave fit
        if done:
            break
        # self.log in any hook of the epoch records into its Results (the module's train/eval modes are the user's:
        # ember does not call .train())
        results = trainer._metrics.train = Results("train", distributed=trainer.world_size > 1)
        with logging_into(trainer.lightning_module, results):
            run_train_epoch(trainer, results, first)
        first = None
        done = _fit_done(trainer)
    hooks.call("on_train_end")


def _fit_done(trainer: Trainer) -> bool:
    p = trainer._progress
    if trainer.world_size > 1:  # every rank must make the same choice: they vote (a signal on any rank counts)
        signal, time_up, stop = trainer.strategy.stop_vote.now(_stop_wish(trainer))
        if signal and trainer._signals.received is None:
            trainer._signals.received = signal
        if time_up or stop:
            return True
    if trainer.max_steps != -1 and p.optimizer_steps >= trainer.max_steps:
        return True
    if trainer.max_epochs != -1 and p.epoch >= trainer.max_epochs:
        return True
    return trainer._time_is_up() or _stop_granted(trainer)


def _stop_wish(trainer: Trainer) -> list:
    """This rank's reasons to stop: [signal number or 0, max_time reached, should_stop granted]."""
    return [trainer._signals.received or 0, int(trainer._time_is_up()), int(_stop_granted(trainer))]


def _ranks_agree_to_stop(trainer: Trainer) -> bool:
    """Under DDP, leave the epoch when the ranks' latest vote says so (see StopVote)."""
    answer = trainer.strategy.stop_vote.step(_stop_wish, trainer)
    if answer is None:
        return False
    if answer[0] and trainer._signals.received is None:
        trainer._signals.received = answer[0]  # another rank was signalled: stop and save here too
    return any(answer)


def _stop_granted(trainer: Trainer) -> bool:
    """``should_stop`` takes effect once ``min_epochs`` and ``min_steps`` are reached, as in Lightning."""
    if not trainer.should_stop:
        return False
    p = trainer._progress
    return p.epoch >= (trainer.min_epochs or 0) and p.optimizer_steps >= (trainer.min_steps or 0)


def run_train_epoch(trainer: Trainer, results: Results, first: Optional[tuple] = None) -> None:
    """One training epoch, its values logged into ``results``; ``first``: (loader, iterator) when run_fit made the
    iterator already."""
    t = trainer
    p = t._progress
    module = t.lightning_module
    hooks = t._hooks
    loader = t.data.train_loader_for_epoch(p.epoch) if first is None else first[0]
    hooks.call("on_train_epoch_start")
    # the step is decided from what is configured now (callbacks may have changed it since the last epoch)
    plan = StepPlan(t, StepHooks(hooks), t._profiler_now)

    limit = t.num_training_batches
    accumulate = t.accumulate_grad_batches
    automatic = module.automatic_optimization
    log_every = t.log_every_n_steps
    data = t.data
    val_every = data.val_check_batch if data.validates_in_epoch(p.epoch) else 0
    val_across_epochs = t.check_val_every_n_epoch is None  # then val_check_interval counts all batches seen
    epoch_end_validation = data.validates_at_epoch_end(p.epoch)
    if p.batch_idx == 0:
        p.accumulated = 0  # a window never spans two epochs
    transfer = data.transfer
    batch_start = hooks.caller("on_train_batch_start")  # None when nothing overrides it: then no call per batch
    batch_end = hooks.caller("on_train_batch_end")
    wants_outputs = batch_end is not None and hooks.wants_outputs("on_train_batch_end")  # else no dict per batch
    timed = t._max_time_s is not None
    signals = t._signals
    distributed = t.world_size > 1
    set_grad_sync = t.strategy.set_grad_sync if distributed and accumulate > 1 else None
    is_last = False
    ended = None  # why the loop left the epoch early: 'skip', 'max_steps', 'stop' or 'signal'
    batch = _NO_BATCH

    batches = _epoch_iterator(loader, p) if first is None else first[1]
    batch_idx = p.batch_idx
    if t._resumed_train_metrics is not None:  # resumed mid-epoch: the epoch's metric sums so far
        results.load_state_dict(t._resumed_train_metrics)
        t._resumed_train_metrics = None
    for is_last, batch in _with_is_last(batches, batch_idx, limit):
        if transfer is not None:
            batch = transfer(batch, 0)
        results.set_batch(batch)
        if batch_start is not None and batch_start(batch, batch_idx) == -1:
            ended = "skip"  # the module asked to skip the rest of the epoch
            break
        if automatic:
            should_step = p.accumulated + 1 >= accumulate or is_last
            if set_grad_sync is not None:
                set_grad_sync(should_step)  # DDP: batches that do not step keep their gradients local
            outputs = plan.automatic(batch, batch_idx, should_step)
            stepped = should_step and outputs is not None  # a batch skipped for a non-finite loss does not step
            if outputs is not None and wants_outputs:
                outputs = _batch_end_outputs(outputs)
        else:
            outputs = plan.manual(batch, batch_idx)
            stepped = True
        p.batch_idx = batch_idx + 1
        p.batches_seen += 1
        log_step = p.batches_stepped  # loggers see the index of the batch that stepped, as in Lightning
        if stepped:
            p.batches_stepped += 1
        if batch_end is not None:
            batch_end(outputs, batch, batch_idx)
        if stepped and logs_at(log_step + 1, log_every):
            t._log_metrics(results.step_values(logger_only=True), log_step)
            if t._check_finite_when_logging and outputs is not None:  # a GPU syncs here, not on every step
                loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
                if isinstance(loss, Tensor) and not math.isfinite(loss.item()):
                    nonfinite_loss(t, loss, batch_idx)
        batch_idx += 1
        if val_every and (p.batches_seen if val_across_epochs else batch_idx) % val_every == 0 \
                and not (is_last and epoch_end_validation):
            run_evaluation(t, "validate", data.val_loaders, data.num_val_batches)  # mid-epoch validation
        if t.max_steps != -1 and p.optimizer_steps >= t.max_steps:
            ended = "max_steps"
            break
        if distributed:
            if _ranks_agree_to_stop(t):
                ended = "signal" if signals.received is not None else "stop"
                break
        elif signals.received is not None:
            ended = "signal"
            break
        elif (t.should_stop and _stop_granted(t)) or (timed and t._time_is_up()):
            ended = "stop"
            break
    if signals.received is not None and not is_last:
        return  # preempted mid-epoch: the checkpoint keeps this position, the epoch is not finished
    if batch is _NO_BATCH and ended is None and p.batch_idx == 0 and not t._warned_empty_epoch:
        t._warned_empty_epoch = True  # a loader without a length that yielded nothing (len() == 0 is said earlier)
        rank_zero_warn(f"The training DataLoader yielded no batch in epoch {p.epoch} (its dataset: "
                       f"{type(getattr(loader, 'dataset', loader)).__name__}): nothing was trained. Check that the "
                       "dataset yields samples (an IterableDataset's __iter__), or set max_epochs/max_steps.",
                       stacklevel=2)
    if ended is None or ended == "signal":
        validate = epoch_end_validation
    elif ended == "skip":
        validate = False  # as Lightning: an epoch left with -1 from on_train_batch_start is not validated
    else:
        # As Lightning: validation runs after a batch that is a validation point (the epoch's last batch included),
        # or after one where a stop was granted (should_stop, max_time), once; reaching max_steps elsewhere in the
        # epoch ends it without validating.
        validated_here = bool(val_every) and (p.batches_seen if val_across_epochs else batch_idx) % val_every == 0 \
            and not (is_last and epoch_end_validation)
        stopping = ended == "stop" or (t.should_stop and _stop_granted(t))
        if validated_here:
            validate = False
        elif stopping:
            validate = data.validates_in_epoch(p.epoch)
        else:
            validate = is_last and epoch_end_validation
    finish_train_epoch(t, results, validate)


_NO_BATCH = object()


def finish_train_epoch(trainer: Trainer, results: Results, validate: bool) -> None:
    """Validation, on_train_epoch_end, epoch metrics, epoch schedulers, then checkpoint/early stopping.

    ModelCheckpoint and EarlyStopping run last, so a checkpoint written here holds the finished
    epoch: resuming from it starts the next epoch and reproduces an uninterrupted run exactly.
    """
    t = trainer
    p = t._progress
    module = t.lightning_module
    hooks = t._hooks
    p.epoch_done = True
    t._epoch_end_validated = False
    if validate:
        t._epoch_end_validated = True
        run_evaluation(t, "validate", t.data.val_loaders, t.data.num_val_batches, epoch_end=True)
    results.sync_epoch()  # sync_dist values over all ranks, before callbacks read them
    results.epoch_end_reached = True
    hooks.call_callbacks("on_train_epoch_end", monitoring=False)
    hooks.call_module("on_train_epoch_end")
    t._metrics.store(results.step_metrics())  # the last step's values stay readable after the epoch
    logged = results.epoch_end()
    t._metrics.store(logged)
    t._metrics.train = None  # the epoch is reduced: its values are no longer live
    t._log_metrics(logged[1], max(p.batches_stepped - 1, 0))
    if module.automatic_optimization:
        step_schedulers(t, "epoch")
    hooks.call_callbacks("on_train_epoch_end", monitoring=True)
    p.epoch += 1
    p.batch_idx = 0
    p.epoch_done = False


_LOADER_NAMES = {"validate": "val", "sanity": "val", "test": "test", "predict": "predict"}


def _check_dataloader_idx(module: Any, stage: str, prefix: str, multi: bool) -> None:
    """As Lightning: the step and the module's batch hooks take ``dataloader_idx`` when there are several loaders, and
    give it a default when there is one (checked once per loop run, before any batch)."""
    from ember.module import LightningModule
    from ember._utils import is_overridden

    kind = _LOADER_NAMES[stage]
    for hook in (f"{prefix}_step", f"on_{prefix}_batch_start", f"on_{prefix}_batch_end"):
        if hook != f"{prefix}_step" and not is_overridden(hook, module, LightningModule):
            continue
        try:
            params = inspect.signature(getattr(module, hook)).parameters
        except (TypeError, ValueError):
            continue
        has_idx = "dataloader_idx" in params or any(p.kind is p.VAR_POSITIONAL for p in params.values())
        if multi and not has_idx:
            raise RuntimeError(f"You provided multiple `{kind}_dataloader`, but no `dataloader_idx` argument in "
                               f"`{type(module).__name__}.{hook}()`. Try adding `dataloader_idx=0` to its signature.")
        if not multi and "dataloader_idx" in params and params["dataloader_idx"].default is inspect.Parameter.empty:
            raise RuntimeError(f"You provided only a single `{kind}_dataloader`, but have included `dataloader_idx` "
                               f"in `{type(module).__name__}.{hook}()`. Either remove the argument or give it a "
                               "default value i.e. `dataloader_idx=0`.")


def _warn_shared_names(t: Trainer, train: Results, validation: Results) -> None:
    """Once per fit: a name logged in both training and validation holds one value in callback_metrics and the
    loggers, whichever came last (a monitor of that name then reads either)."""
    shared = sorted(set(train.entries) & set(validation.entries))
    if not shared:
        return
    t._warned_shared_names = True
    where = {key: (train.entries[key].fx, validation.entries[key].fx) for key in shared}
    listed = ", ".join(f"{key!r} ({a} and {b})" for key, (a, b) in where.items())
    rank_zero_warn(f"self.log() was called with the same name in training and in validation: {listed}. They share one "
                   "entry in trainer.callback_metrics and the loggers, so each value replaces the other (a "
                   "ModelCheckpoint or EarlyStopping monitoring it reads whichever came last). Use distinct names, "
                   "such as 'train_loss' and 'val_loss'.", stacklevel=2)


def _batch_end_outputs(output: Any) -> Any:
    """What on_train_batch_end receives: Lightning's dict, its loss detached so callbacks keep no graph."""
    if isinstance(output, dict):
        return {**output, "loss": output["loss"].detach()} if "loss" in output else output
    return {"loss": output.detach()}


def _with_is_last(batches: Iterator, start: int, limit: float) -> Iterator:
    """Pairs ``(is_last, batch)``. With a known length: a zip of flags and batches, which stops before fetching a
    batch beyond the limit (zip asks the flags first) and runs no Python code per batch; otherwise the batches
    are read one ahead."""
    if limit != math.inf:
        remaining = int(limit) - start
        flags = itertools.chain(itertools.repeat(False, remaining - 1), (True,)) if remaining > 0 else ()
        return zip(flags, batches)
    return _one_ahead(batches)


def _one_ahead(batches: Iterator) -> Iterator:
    try:
        current = next(batches)
    except StopIteration:
        return
    for upcoming in batches:
        yield False, current
        current = upcoming
    yield True, current


_EXHAUSTED = object()


def _epoch_iterator(loader: Any, p: Any) -> Iterator:
    """The epoch's batches. After a mid-epoch resume: the same order as the interrupted epoch, from the
    batch after the last one trained, with the random streams as they were when the checkpoint was saved."""
    if p.batch_idx == 0 or p.epoch_start_rng is None:
        p.epoch_start_rng = rng_state()  # what the sampler and the workers draw their seeds from
        return iter(loader)
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, torch.utils.data.IterableDataset) or dataset is None:
        warnings.warn(
            f"Resuming mid-epoch on a loader without a sampler ({type(dataset or loader).__name__}): ember skips the "
            f"first {p.batch_idx} batches of a fresh iterator, which continues exactly only if the data yields the "
            "same sequence every time. Make it deterministic, or save checkpoints at epoch ends.", stacklevel=4)
    set_rng_state(p.epoch_start_rng)
    iterator = iter(loader)
    for skipped in range(p.batch_idx):  # fetched and dropped: the sampler's order is replayed exactly
        if next(iterator, _EXHAUSTED) is _EXHAUSTED:  # a checkpoint past this data's end: never spin on an empty one
            raise ValueError(
                f"The checkpoint resumes at batch_idx={p.batch_idx} of its epoch, but this training data ended after "
                f"{skipped} batches: the checkpoint belongs to other data, or is damaged. Resume from a checkpoint "
                "saved at an epoch end, or with the data it was trained on.")
    p.restore_rng()
    return iterator


def run_sanity_check(trainer: Trainer) -> None:
    """A few validation batches before training (``num_sanity_val_steps``), to fail early on a broken
    validation_step. As Lightning: the global random generators (torch, CUDA, NumPy, random) are as they were
    before it, so a run trains exactly as with num_sanity_val_steps=0 (its DataLoader iterators draw seeds from
    them); its values are seen during it, then dropped."""
    t = trainer
    n = t.num_sanity_val_steps
    if not t.data.val_enabled or n == 0:
        return
    state = rng_state()
    limits = [b if n == -1 else min(b, n) for b in t.num_val_batches]
    t.data.num_sanity_val_batches = limits
    t.sanity_checking = True
    t.state.stage = "sanity_check"
    try:
        for cb in t.callbacks:
            cb.on_sanity_check_start(t, t.lightning_module)
        run_evaluation(t, "sanity", t.data.val_loaders, limits)
        for cb in t.callbacks:
            cb.on_sanity_check_end(t, t.lightning_module)
    finally:
        t.sanity_checking = False
        set_rng_state(state)
    t._metrics.reset()


# --- validate / test / predict ------------------------------------------------------------------------
_PREFIX = {"validate": "validation", "test": "test", "predict": "predict", "sanity": "validation"}


def run_evaluation(trainer: Trainer, stage: str, loaders: list, limits: list, epoch_end: bool = False) -> list:
    """Run validation_step/test_step/predict_step over ``loaders`` in eval mode without gradients.

    Returns one dict of epoch metrics per dataloader (validate/test), or the per-batch outputs (predict).
    """
    t = trainer
    module = t.lightning_module
    hooks = t._hooks
    prefix = _PREFIX[stage]
    sanity = stage == "sanity"
    total = sum(limits)
    if total == 0 and stage != "predict":
        return []  # as Lightning: no batch to run (limit_*_batches=0), no hooks
    multi = len(loaders) > 1
    results = Results("validate" if sanity else stage, num_dataloaders=len(loaders), distributed=t.world_size > 1)
    # values logged with on_step=True go to the loggers after each batch (at the batch index, as in Lightning);
    # not while sanity checking
    log_steps = bool(t._loggers) and not sanity and stage != "predict"
    predictions: list = [[] for _ in loaders]
    _check_dataloader_idx(module, stage, prefix, multi)
    step = adapt_step(getattr(module, f"{prefix}_step"))
    if t._profiler_now is not None:
        step = t._profiler_now.timed(step, f"{strategy_action(t)}.{prefix}_step")
    # inside fit, as in Lightning, no_grad: tensors made while validating may be used by training later
    no_grad = torch.inference_mode() if t._inference_mode and t.state.fn != "fit" else torch.no_grad()
    t._evaluating = stage
    if stage != "predict":
        t._metrics.eval = results  # callback_metrics and friends show its values while it runs
    batch_start, batch_end = hooks.caller(f"on_{prefix}_batch_start"), hooks.caller(f"on_{prefix}_batch_end")
    module_dict, step_name = module.__dict__, f"{prefix}_step"  # written per batch: self.log's defaults follow it
    # As Lightning, the first dataloader's iterator is made before the hooks, each next one when the previous is
    # done, none after the last batch; no batch past a limit is fetched. (Each DataLoader iterator draws a base
    # seed from the global generator: the same iterators at the same points keep the random streams Lightning's.)
    # Predict makes its first iterator after on_predict_start: BasePredictionWriter swaps in a batch sampler there.
    iterator = iter(loaders[0]) if loaders and stage != "predict" else None
    fetched = 0
    transfer = t.data.transfer
    # as Lightning: each submodule's mode is kept, then on_*_model_eval (by default module.eval()); at the end
    # on_*_model_train (by default the kept modes come back; predict has no such hook: they just come back)
    module.__dict__["_modes_before_eval"] = {m: m.training for m in module.modules()}
    train_hook = f"on_{prefix}_model_train" if stage != "predict" else None
    try:
        with no_grad, logging_into(module, results):  # self.log in predict_step raises: nowhere to report it
            _model_mode_hook(hooks, module, f"on_{prefix}_model_eval")
            hooks.call(f"on_{prefix}_start")
            hooks.call(f"on_{prefix}_epoch_start")
            for dl_idx, loader in enumerate(loaders):
                if dl_idx and fetched >= total:
                    break
                if dl_idx or iterator is None:
                    iterator = iter(loader)
                extra = (dl_idx,) if multi else ()
                limit = limits[dl_idx]
                for batch_idx, batch in zip(range(limit) if limit != math.inf else itertools.count(), iterator):
                    fetched += 1
                    if transfer is not None:
                        batch = transfer(batch, dl_idx)
                    results.set_batch(batch, dl_idx)
                    if batch_start is not None:
                        batch_start(batch, batch_idx, *extra)
                    module_dict["_current_fx"] = step_name
                    with t._precision.forward_context():
                        output = step(batch, batch_idx, *extra)
                    if stage == "predict" and t._return_predictions:
                        predictions[dl_idx].append(output)
                    if batch_end is not None:
                        batch_end(output, batch, batch_idx, *extra)
                    if log_steps:
                        logged_steps = t.data.eval_logged_steps
                        at = logged_steps[dl_idx] = logged_steps.get(dl_idx, -1) + 1  # counts over a fit's runs
                        t._log_metrics(results.step_values(logger_only=True), at, add_epoch=False)
                if multi and dl_idx < len(loaders) - 1 and stage != "predict":
                    # as Lightning: a dataloader's values are kept once it is done (read while the next one runs)
                    t._metrics.store(results.step_metrics())
                    t._metrics.store(results.epoch_metrics(reset=False, dataloader_idx=dl_idx))
            results.epoch_end_reached = True  # on_*_epoch_end reads the epoch values
            hooks.call(f"on_{prefix}_epoch_end")
            per_loader: list = []
            if stage != "predict":
                t._metrics.store(results.step_metrics())
                views = results.epoch_end()
                if stage == "validate" and t._metrics.train is not None and not t._warned_shared_names:
                    _warn_shared_names(t, t._metrics.train, results)
                t._metrics.store(views)
                t._metrics.eval = None
                if not sanity:
                    p = t._progress
                    during_fit = stage == "validate" and t.state.fn == "fit"
                    t._log_metrics(views[1], max(p.batches_stepped - 1, 0) if during_fit else p.batches_stepped)
                    per_loader = results.dataloader_values(views[1], len(loaders))
            hooks.call(f"on_{prefix}_end")
            if train_hook is not None:
                _model_mode_hook(hooks, module, train_hook)
                module.__dict__.pop("_modes_before_eval", None)  # the hook decided the modes: nothing to restore
    finally:
        t._evaluating = None
        t._metrics.eval = None
        module._restore_modes_before_eval()  # predict, or a failed run; a no-op once the train hook restored them
    if stage == "predict":
        return predictions[0] if not multi else predictions
    return per_loader


def _model_mode_hook(hooks: Any, module: Any, name: str) -> None:
    """``on_*_model_eval``/``on_*_model_train``: the module's override through the hook runner, else the default
    (called directly: unlike the other hooks, the default does the work)."""
    from ember.module import LightningModule
    from ember._utils import is_overridden

    if is_overridden(name, module, LightningModule):
        hooks.call_module(name)
    else:
        getattr(module, name)()
