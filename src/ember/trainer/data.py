"""The run's data: where each stage's loaders come from, the loaders and their batch counts, when validation
runs, and how a batch reaches the device. The Trainer holds one ``TrainerData`` as ``trainer.data``; Lightning's
attributes (``trainer.train_dataloader``, ``trainer.num_val_batches``, ...) read from it.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from ember._utils import is_overridden, move_data_to_device
from ember.seed import add_worker_seeding
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.trainer.hooks import strategy_action
from ember.trainer.signals import shield_workers
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

_KIND = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}


class TrainerData:
    """The loaders of the running stage and everything decided from them."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.sources: dict[str, Optional[Callable[[], Any]]] = {}  # stage -> what returns its loaders when called
        self.train_dataloader: Any = None
        self.num_training_batches: Union[int, float] = 0
        self.val_loaders: list = []
        self.num_val_batches: list = []
        self.num_sanity_val_batches: list = []
        self.test_dataloaders: Any = None
        self.num_test_batches: list = []
        self.predict_dataloaders: Any = None
        self.num_predict_batches: list = []
        self.val_check_batch = 0  # validate every this many training batches (0: at epoch ends only)
        self.val_enabled = False  # this fit validates: validation data with batches and a validation_step
        self.eval_logged_steps: dict = {}  # the step index of values logged per evaluation step, per dataloader
        # how a batch reaches the device: None when nothing is to be done (CPU, 32-bit, no transfer hook)
        self.transfer: Optional[Callable[[Any, int], Any]] = None

    @property
    def val_dataloaders(self) -> Any:
        return self.val_loaders[0] if len(self.val_loaders) == 1 else self.val_loaders

    # --- where loaders come from ---------------------------------------------------------------------
    def setup_fit(self, train: Any, val: Any, module: LightningModule) -> None:
        """``fit``'s loaders: the arguments, else the datamodule's, else the module's ``*_dataloader`` methods."""
        source = self._source("train", train, module)
        if source is None:
            raise ValueError(no_data_message("fit", module, self.trainer.datamodule))
        self.sources["fit"] = source
        self.set_train_loader(source())
        self.resolve_eval("validate", val, module)
        self._warn_about_fit_config(module)

    def reload(self, stage: str = "fit") -> None:
        """Ask the sources for the loaders again: after the batch-size finder changed the batch size, and every
        ``reload_dataloaders_every_n_epochs``. For 'fit', the training loader and the validation loaders."""
        module = self.trainer.lightning_module
        if stage == "fit":
            self.set_train_loader(self.sources["fit"]())
            stage = "validate"
        if self.sources.get(stage) is not None:
            self.resolve_eval(stage, None, module, reuse=True)

    def _source(self, kind: str, explicit: Any, module: LightningModule) -> Optional[Callable[[], Any]]:
        if explicit is not None:
            return lambda: explicit
        for owner, base in ((self.trainer.datamodule, LightningDataModule), (module, LightningModule)):
            name = f"{kind}_dataloader"
            if owner is not None and (name in vars(owner) or is_overridden(name, owner, base)):
                return getattr(owner, name)
        return None

    # --- training ----------------------------------------------------------------------------------
    def set_train_loader(self, loader: Any) -> None:
        t = self.trainer
        if isinstance(loader, (list, tuple, dict)):
            raise TypeError(
                f"ember trains on one training DataLoader; train_dataloader returned a {type(loader).__name__}. "
                "Combine data sets with torch.utils.data.ConcatDataset into one DataLoader."
            )
        if t.overfit_batches:
            loader = _without_shuffle(loader)
        if t.use_distributed_sampler and t.world_size > 1:
            loader = t.strategy.process_dataloader(loader, train=True)  # this rank's share
        add_worker_seeding(loader, t.global_rank)
        self.train_dataloader = loader
        self.num_training_batches = num_batches(loader, t.limit_train_batches, "limit_train_batches")
        self.val_check_batch = self._compute_val_check_batch()

    def train_loader_for_epoch(self, epoch: int) -> Any:
        """The training loader of ``epoch``: reloaded when ``reload_dataloaders_every_n_epochs`` says so, its
        workers shielded from signals, its sampler told the epoch."""
        n = self.trainer.reload_dataloaders_every_n_epochs
        if n and epoch > 0 and epoch % n == 0:
            self.set_train_loader(self.sources["fit"]())
            _draw_base_seed(self.train_dataloader)
            if self.sources.get("validate") is not None:
                self.resolve_eval("validate", None, self.trainer.lightning_module, reuse=True)
        loader = self.train_dataloader
        shield_workers(loader)
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        profiler = self.trainer._profiler_now
        return loader if profiler is None else profiler.timed_loader(loader, "[_TrainingEpochLoop].train_dataloader_next")

    # --- validation, test, predict -------------------------------------------------------------------
    def resolve_eval(self, stage: str, explicit: Any, module: LightningModule, reuse: bool = False) -> list:
        """The loaders of 'validate', 'test' or 'predict' (a list, possibly empty) and their batch counts."""
        t = self.trainer
        kind = _KIND[stage]
        source = self.sources.get(stage) if reuse else self._source(kind, explicit, module)
        self.sources[stage] = source
        raw = source() if source is not None else None
        loaders = [] if raw is None else list(raw.values()) if isinstance(raw, dict) else \
            list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if t.use_distributed_sampler and t.world_size > 1:  # each rank its share, no sample counted twice
            loaders = [t.strategy.process_dataloader(dl, train=False) for dl in loaders]
        limit = getattr(t, f"limit_{kind}_batches")
        counts = [num_batches(dl, limit, f"limit_{kind}_batches") for dl in loaders]
        for dl in loaders:
            add_worker_seeding(dl, t.global_rank)
            shield_workers(dl)
        self.eval_logged_steps = {}
        if stage == "validate":
            self.val_loaders, self.num_val_batches = loaders, counts
            self.val_enabled = bool(loaders) and sum(counts) > 0 and \
                is_overridden("validation_step", module, LightningModule)
        else:
            setattr(self, f"{stage}_dataloaders", loaders[0] if len(loaders) == 1 else loaders)
            setattr(self, f"num_{stage}_batches", counts)
        return loaders

    # --- when validation runs during fit ---------------------------------------------------------------
    def _compute_val_check_batch(self) -> int:
        interval = self.trainer.val_check_interval
        if interval is None or (isinstance(interval, float) and interval == 1.0):
            return 0  # validate at epoch ends only
        n = self.num_training_batches
        if isinstance(interval, int):
            if n != math.inf and interval > n and self.trainer.check_val_every_n_epoch is not None:
                raise ValueError(f"Trainer(val_check_interval={interval}) is larger than the {n} training batches "
                                 "of an epoch; use a smaller value, a float fraction of the epoch, or "
                                 "check_val_every_n_epoch=None to count batches across epochs.")
            return interval
        if n == math.inf:
            raise ValueError("Trainer(val_check_interval=<float>) needs a training DataLoader with a length; pass an "
                             "int number of batches instead.")
        return max(1, int(n * interval))

    def validates_in_epoch(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` validates at all (``check_val_every_n_epoch``)."""
        every = self.trainer.check_val_every_n_epoch
        return self.val_enabled and (every is None or (epoch + 1) % every == 0)

    def validates_at_epoch_end(self, epoch: int) -> bool:
        """Validation at the end of ``epoch``: with val_check_interval=1.0, or when its batches divide the epoch."""
        if not self.validates_in_epoch(epoch):
            return False
        vcb, n = self.val_check_batch, self.num_training_batches
        return vcb == 0 or (self.trainer.check_val_every_n_epoch is not None and n != math.inf and n % vcb == 0)

    # --- batches to the device -----------------------------------------------------------------------
    def choose_transfer(self, module: LightningModule) -> None:
        """Decide, once per run, what moves a batch: the module's transfer hooks, the default move and cast,
        or nothing (the CPU in full precision)."""
        custom = any(is_overridden(name, module, LightningModule) for name in (
            "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer"))
        t = self.trainer
        self.transfer = self._transfer_custom if custom else None if t.root_device.type == "cpu" and \
            t.precision_plugin.param_dtype is None else self._transfer_default
        if self.transfer is not None and t._profiler_now is not None:
            self.transfer = t._profiler_now.timed(self.transfer, f"{strategy_action(t)}.batch_to_device")

    def _transfer_default(self, batch: Any, dataloader_idx: int) -> Any:
        device = self.trainer.root_device
        if device.type != "cpu":
            batch = move_data_to_device(batch, device)
        return self.trainer.precision_plugin.convert_input(batch)

    def _transfer_custom(self, batch: Any, dataloader_idx: int) -> Any:
        module = self.trainer.lightning_module
        batch = module.on_before_batch_transfer(batch, dataloader_idx)
        batch = module.transfer_batch_to_device(batch, self.trainer.root_device, dataloader_idx)
        batch = module.on_after_batch_transfer(batch, dataloader_idx)
        return self.trainer.precision_plugin.convert_input(batch)

    def _warn_about_fit_config(self, module: LightningModule) -> None:
        """Lightning's warnings about a fit's data, said once per fit (never per step)."""
        t = self.trainer
        has_val_data = self.sources.get("validate") is not None
        has_val_step = is_overridden("validation_step", module, LightningModule)
        if has_val_data and not has_val_step:
            rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.",
                           stacklevel=5)
        if has_val_step and not has_val_data:
            rank_zero_warn("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.",
                           PossibleUserWarning, stacklevel=5)
        n = self.num_training_batches
        if t.loggers and n < t.log_every_n_steps and not t.fast_dev_run:
            rank_zero_warn(f"The number of training batches ({n}) is smaller than the logging interval "
                           f"Trainer(log_every_n_steps={t.log_every_n_steps}). Set a lower value for "
                           "log_every_n_steps if you want to see logs for the training epoch.",
                           PossibleUserWarning, stacklevel=5)


def num_batches(loader: Any, limit: Union[int, float, None], name: str) -> Union[int, float]:
    """How many batches of ``loader`` a stage runs under ``limit`` (an int count or a float fraction)."""
    try:
        length = len(loader)
    except TypeError:
        length = math.inf
    if length == 0:  # as Lightning, which sums the lengths over ranks first
        rank_zero_warn(f"Total length of `{type(loader).__name__}` across ranks is zero. Please make sure this was "
                       "your intention.", stacklevel=5)
    if limit is None:
        return length
    if isinstance(limit, int):
        return min(length, limit)
    if length == math.inf:
        if limit in (0.0, 1.0):
            return 0 if limit == 0.0 else math.inf
        raise ValueError(f"Trainer({name}={limit}) is a fraction, but the DataLoader has no length; pass an int.")
    n = int(length * limit)
    if n == 0 and limit > 0:
        raise ValueError(f"Trainer({name}={limit}) keeps 0 of the {length} batches; use a larger fraction or an int.")
    return n


def _draw_base_seed(loader: Any) -> None:
    """What making a DataLoader iterator takes from the random generators (its base seed), without making one.
    Lightning makes an iterator for a reloaded training DataLoader when it reloads it, then the epoch's own: ember
    makes only the second, and draws here what the first would have drawn, so the streams stay Lightning's."""
    from torch.utils.data import DataLoader

    if isinstance(loader, DataLoader):
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)


def _without_shuffle(loader: Any) -> Any:
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

    from ember.strategies.sampler import _rebuild

    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        warnings.warn("overfit_batches: the training DataLoader shuffles; ember uses it without shuffling so that "
                      "the same batches are seen every epoch.", stacklevel=4)
        return _rebuild(loader, SequentialSampler(loader.dataset))  # every other setting (workers, pinning) kept
    return loader


def check_data_args(fn: str, train: Any, val: Any, datamodule: Any) -> None:
    if datamodule is not None and (train is not None or val is not None):
        raise ValueError(f"Trainer.{fn}() got both dataloaders and a datamodule; pass one or the other.")
    if datamodule is not None and not isinstance(datamodule, LightningDataModule):
        raise TypeError(f"Trainer.{fn}(datamodule=...) expects a LightningDataModule, got "
                        f"{type(datamodule).__name__}.")


def no_data_message(stage: str, module: LightningModule, datamodule: Any) -> str:
    kind = _KIND[stage]
    arg = "train_dataloaders" if stage == "fit" else "dataloaders"
    where = f"{type(datamodule).__name__}.{kind}_dataloader()" if datamodule is not None else \
        f"a datamodule with {kind}_dataloader(), or define {type(module).__name__}.{kind}_dataloader()"
    return (f"Trainer.{stage}() found no {kind} data: pass `{arg}=` (a DataLoader), {where}. "
            f"For example: trainer.{stage}(model, {arg}=DataLoader(dataset, batch_size=32)).")
