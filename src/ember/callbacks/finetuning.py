"""Finetuning: freeze parts of the model before training and unfreeze them on a schedule.

``BaseFinetuning`` holds the mechanics (freeze, unfreeze into a new optimizer param group, restore those
groups on resume); subclasses say what to freeze (``freeze_before_training``) and when to unfreeze
(``finetune_function``). ``BackboneFinetuning`` is the common recipe for ``pl_module.backbone``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Callable, Generator, Optional, Union

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ember.utilities.rank_zero import rank_zero_warn
from ember.callbacks.callback import Callback

log = logging.getLogger(__name__)

Modules = Union[nn.Module, Iterable]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default ``lambda_func``: double the backbone lr every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Freeze modules before training, unfreeze them later; override the two methods below.

    * ``freeze_before_training(pl_module)`` runs in ``setup``, before ``configure_optimizers``, so an
      optimizer built from ``filter(lambda p: p.requires_grad, self.parameters())`` leaves frozen weights out.
    * ``finetune_function(pl_module, epoch, optimizer)`` runs at the start of every training epoch, once per
      optimizer; unfreeze there with ``unfreeze_and_add_param_group``.

    The param groups added during training are saved in checkpoints (by parameter name) and put back on resume,
    together with which parameters were frozen, so a resumed run trains the same weights at the same rates.

    >>> class FreezeFeatures(BaseFinetuning):
    ...     def freeze_before_training(self, pl_module):
    ...         self.freeze(pl_module.features)
    ...     def finetune_function(self, pl_module, epoch, optimizer):
    ...         if epoch == 5:
    ...             self.unfreeze_and_add_param_group(pl_module.features, optimizer, lr=1e-4)
    """

    def __init__(self) -> None:
        # per optimizer index: its param groups, each with parameter names in place of the tensors
        self._internal_optimizer_metadata: dict = {}
        self._restarting = False
        self._frozen: Optional[dict] = None  # from a checkpoint: what was frozen when it was saved
        self._module: Any = None  # the LightningModule being trained, to record what is frozen

    # --- what subclasses override ----------------------------------------------------------------------
    def freeze_before_training(self, pl_module: Any) -> None:
        """Freeze what should not train at first, e.g. ``self.freeze(pl_module.backbone)``."""
        raise NotImplementedError(f"{type(self).__name__} must define freeze_before_training(self, pl_module).")

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Optimizer) -> None:
        """Unfreeze on schedule, e.g. ``self.unfreeze_and_add_param_group(pl_module.backbone, optimizer)``."""
        raise NotImplementedError(f"{type(self).__name__} must define finetune_function(self, pl_module, epoch, "
                                  "optimizer).")

    # --- static helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def flatten_modules(modules: Modules) -> list:
        """The leaf modules of ``modules`` (a module or nested iterables of them), plus any parent module that
        holds parameters directly."""
        if isinstance(modules, nn.ModuleDict):
            modules = modules.values()
        if isinstance(modules, nn.Module):
            candidates = modules.modules()
        elif isinstance(modules, Iterable):
            candidates = [leaf for m in modules for leaf in BaseFinetuning.flatten_modules(m)]
        else:
            raise TypeError(f"Expected an nn.Module or an iterable of modules; received {type(modules).__name__}.")
        return [m for m in candidates if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """The parameters of ``modules`` whose ``requires_grad`` equals ``requires_grad`` (BatchNorm layers'
        left out when ``train_bn`` is False)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):  # not recursive: parents were flattened already
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze the parameters of ``modules``; BatchNorm layers track running statistics again."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: nn.Module) -> None:
        """Freeze one module's own parameters; a BatchNorm layer also stops tracking running statistics."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; BatchNorm layers stay trainable when ``train_bn`` is True."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable) -> list:
        """``params`` without those the optimizer already has (compared by identity), with a warning if any."""
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = list(params)
        kept = [p for p in params if id(p) not in known]
        if len(kept) < len(params):
            rank_zero_warn(
                f"{len(params) - len(kept)} of the parameters to unfreeze are already in the optimizer and were "
                "skipped. Build the optimizer from the trainable parameters only: "
                f"{type(optimizer).__name__}(filter(lambda p: p.requires_grad, self.parameters()), ...)."
            )
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: Optimizer, lr: Optional[float] = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Unfreeze ``modules`` and add their parameters to ``optimizer`` as a new param group, at ``lr``, or
        without it at the first group's lr divided by ``initial_denom_lr``."""
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        params = BaseFinetuning.filter_on_optimizer(optimizer, params)
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    # --- hooks --------------------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._module = pl_module
        if stage == "fit":  # a new fit records its own groups; a resume loads the saved ones after this
            self._internal_optimizer_metadata, self._restarting, self._frozen = {}, False, None
        self.freeze_before_training(pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        for idx, optimizer in enumerate(trainer.optimizers):
            before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, idx, before, optimizer.param_groups)

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self._restore(trainer, pl_module)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._restore(trainer, pl_module)

    def state_dict(self) -> dict:
        state: dict = {"internal_optimizer_metadata": self._internal_optimizer_metadata}
        module = self._module
        if module is not None:
            state["frozen_params"] = [name for name, p in module.named_parameters() if not p.requires_grad]
            state["untracked_batchnorms"] = [name for name, m in module.named_modules()
                                             if isinstance(m, _BatchNorm) and not m.track_running_stats]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._restarting = True
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", {})
        if "frozen_params" in state_dict:
            self._frozen = {"params": set(state_dict["frozen_params"]),
                            "bns": set(state_dict.get("untracked_batchnorms", []))}

    # --- saving and restoring the added param groups ------------------------------------------------------------
    def _store(self, pl_module: Any, idx: int, before: int, groups: list) -> None:
        """Remember the optimizer's param groups by parameter name (all of them the first time, then the
        groups added since)."""
        names = {id(p): n for n, p in pl_module.named_parameters()}
        if idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[idx] = [_named_group(g, names) for g in groups]
        elif before != len(groups):
            self._internal_optimizer_metadata[idx].extend(_named_group(g, names) for g in groups[before:])

    def _restore(self, trainer: Any, pl_module: Any) -> None:
        """After loading a checkpoint: the saved param groups back into the optimizers, and the same parameters
        frozen as when it was saved (``freeze_before_training`` has frozen the initial set again)."""
        self._module = pl_module
        if not self._restarting:
            return
        self._restarting = False
        params = dict(pl_module.named_parameters())
        for idx, optimizer in enumerate(trainer.optimizers):
            saved = self._internal_optimizer_metadata.get(idx)
            if saved:
                optimizer.param_groups = [{**g, "params": [params[n] for n in g["params"]]} for g in saved]
        if self._frozen is not None:
            for name, param in params.items():
                param.requires_grad = name not in self._frozen["params"]
            for name, module in pl_module.named_modules():
                if isinstance(module, _BatchNorm):
                    module.track_running_stats = name not in self._frozen["bns"]
            self._frozen = None


def _named_group(group: dict, names: dict) -> dict:
    return {**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` frozen until ``unfreeze_backbone_at_epoch``, then unfreeze it into a new
    param group whose lr grows each epoch.

    At the unfreeze epoch the backbone lr is ``backbone_initial_lr``, or the first group's lr times
    ``backbone_initial_ratio_lr``; each later epoch it is multiplied by ``lambda_func(epoch + 1)``, and with
    ``should_align`` it never exceeds the first group's lr. ``train_bn`` keeps BatchNorm layers trainable.
    ``verbose`` logs both lrs (rounded to ``rounding`` digits) when they change.

    >>> from ember.callbacks.finetuning import BackboneFinetuning
    >>> finetune = BackboneFinetuning(unfreeze_backbone_at_epoch=5, lambda_func=lambda epoch: 1.5)
    >>> # the module needs `self.backbone = ...` (an nn.Module) and an optimizer over the other parameters
    """

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: Optional[float] = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: Optional[float] = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    @staticmethod
    def _backbone(pl_module: Any) -> nn.Module:
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, nn.Module):
            found = "has no attribute `backbone`" if backbone is None else \
                f"has `backbone` = a {type(backbone).__name__}, not an nn.Module"
            raise AttributeError(
                f"BackboneFinetuning needs the LightningModule to have an nn.Module `backbone` attribute; "
                f"{type(pl_module).__name__} {found}. Set `self.backbone = ...` in __init__ (the part to "
                "freeze), or subclass BaseFinetuning to freeze other modules."
            )
        return backbone

    def freeze_before_training(self, pl_module: Any) -> None:
        self.freeze(self._backbone(pl_module), train_bn=self.train_bn)

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Optimizer) -> None:
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = self.backbone_initial_lr if self.backbone_initial_lr is not None else \
                current_lr * self.backbone_initial_ratio_lr
            self.unfreeze_and_add_param_group(self._backbone(pl_module), optimizer, backbone_lr,
                                              initial_denom_lr=self.initial_denom_lr, train_bn=self.train_bn)
        elif epoch > self.unfreeze_backbone_at_epoch and self.previous_backbone_lr is not None:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
        else:
            return
        self.previous_backbone_lr = backbone_lr
        if self.verbose:
            log.info(f"Current lr: {round(current_lr, self.rounding)}, "
                     f"Backbone lr: {round(backbone_lr, self.rounding)}")
