"""ModelPruning: prune weights during training with ``torch.nn.utils.prune``, with Lightning's arguments.

At the end of each training epoch (or validation epoch, with ``prune_on_train_epoch_end=False``) the chosen
parameters are pruned by ``amount``; with the lottery ticket hypothesis the weights that remain are reset to
their values from before training. While training, torch keeps each pruned tensor as ``<name>_orig`` and
``<name>_mask``; ``make_pruning_permanent=True`` (the default) writes checkpoints with plain pruned tensors and
removes the masks at the end of ``fit``, so the model afterwards is an ordinary model with zeros in it.
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException

log = logging.getLogger("ember")

_FUNCTIONS = {
    "ln_structured": torch_prune.ln_structured,
    "l1_unstructured": torch_prune.l1_unstructured,
    "random_structured": torch_prune.random_structured,
    "random_unstructured": torch_prune.random_unstructured,
}
_METHODS = {
    "ln_structured": torch_prune.LnStructured,
    "l1_unstructured": torch_prune.L1Unstructured,
    "random_structured": torch_prune.RandomStructured,
    "random_unstructured": torch_prune.RandomUnstructured,
}
_ParamList = Sequence[tuple[nn.Module, str]]


def _is_pruning_method(value: Any) -> bool:
    return inspect.isclass(value) and issubclass(value, torch_prune.BasePruningMethod)


class ModelPruning(Callback):
    """Prune ``parameters_to_prune`` (default: every ``weight`` and ``bias`` of the model's layers) by ``amount``.

    Args:
        pruning_fn: ``"l1_unstructured"``, ``"random_unstructured"``, ``"ln_structured"`` or
            ``"random_structured"``, or a ``torch.nn.utils.prune.BasePruningMethod`` subclass (the class itself).
        parameters_to_prune: ``[(module, "weight"), ...]``; empty: every parameter named in ``parameter_names``.
        parameter_names: which parameters of each layer (``"weight"``, ``"bias"``) when the list is built for you.
        use_global_unstructured: rank all chosen parameters together (``prune.global_unstructured``) rather than
            each tensor on its own; needs an unstructured method.
        amount: a fraction (float in [0, 1]) or a number (int) of parameters, or ``f(epoch) -> amount``.
        apply_pruning: ``True``/``False`` or ``f(epoch) -> bool``.
        make_pruning_permanent: save checkpoints with plain pruned tensors and remove the masks when ``fit`` ends.
        use_lottery_ticket_hypothesis: after pruning, reset the remaining weights to their values from before
            training (``bool`` or ``f(epoch) -> bool``); with ``resample_parameters`` to fresh random values.
        pruning_dim, pruning_norm: the dimension (and norm, for ``ln_structured``) of structured pruning.
        verbose: 1 logs the overall sparsity after each pruning, 2 also each tensor's.
        prune_on_train_epoch_end: prune at the end of the training epoch; False: after each validation epoch.

    >>> from ember.callbacks import ModelPruning
    >>> pruning = ModelPruning("l1_unstructured", amount=0.5)
    >>> # trainer = ember.Trainer(callbacks=[pruning]); trainer.fit(model)  # half of the weights become zero
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(
        self,
        pruning_fn: Union[Callable, str],
        parameters_to_prune: _ParamList = (),
        parameter_names: Optional[list] = None,
        use_global_unstructured: bool = True,
        amount: Union[int, float, Callable[[int], Union[int, float]]] = 0.5,
        apply_pruning: Union[bool, Callable[[int], bool]] = True,
        make_pruning_permanent: bool = True,
        use_lottery_ticket_hypothesis: Union[bool, Callable[[int], bool]] = True,
        resample_parameters: bool = False,
        pruning_dim: Optional[int] = None,
        pruning_norm: Optional[int] = None,
        verbose: int = 0,
        prune_on_train_epoch_end: bool = True,
    ) -> None:
        self._parameter_names = tuple(parameter_names or self.PARAMETER_NAMES)
        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(f"ModelPruning(parameter_names=[..., {name!r}]): only "
                                                f"{list(self.PARAMETER_NAMES)} can be pruned.")
        self._global_kwargs: dict = {}
        if isinstance(pruning_fn, str):
            key = pruning_fn.lower()
            if key not in _FUNCTIONS:
                raise MisconfigurationException(f"ModelPruning(pruning_fn={pruning_fn!r}) is not one of PyTorch's "
                                                f"pruning functions: {list(_FUNCTIONS)}.")
            kwargs: dict = {}
            if key.endswith("_structured"):
                if pruning_dim is None:
                    raise MisconfigurationException(f"ModelPruning(pruning_fn={key!r}) is structured pruning: pass "
                                                    "pruning_dim= (the dimension along which to prune).")
                if key == "ln_structured":
                    if pruning_norm is None:
                        raise MisconfigurationException("ModelPruning(pruning_fn='ln_structured') needs "
                                                        "pruning_norm= (the n of the Ln norm, e.g. 1 or 2).")
                    kwargs["n"] = pruning_norm
                kwargs["dim"] = pruning_dim
            self._method_name = (_METHODS if use_global_unstructured else _FUNCTIONS)[key].__name__
            if use_global_unstructured:
                self._global_kwargs = kwargs
                pruning_fn = _METHODS[key]
            else:
                pruning_fn = functools.partial(_FUNCTIONS[key], **kwargs)
        elif _is_pruning_method(pruning_fn):
            if not use_global_unstructured:
                raise MisconfigurationException("ModelPruning: a BasePruningMethod class as pruning_fn needs "
                                                "use_global_unstructured=True.")
            self._method_name = pruning_fn.__name__
        else:
            raise MisconfigurationException(
                f"ModelPruning(pruning_fn={pruning_fn!r}): pass a name from {list(_FUNCTIONS)} or a "
                "torch.nn.utils.prune.BasePruningMethod subclass (the class, not an instance).")
        if use_global_unstructured and getattr(pruning_fn, "PRUNING_TYPE", None) != "unstructured":
            raise MisconfigurationException(
                f"ModelPruning(use_global_unstructured=True) needs an unstructured method; {self._method_name} is "
                f"{getattr(pruning_fn, 'PRUNING_TYPE', 'not')} unstructured. Pass use_global_unstructured=False.")
        if isinstance(amount, bool) or not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(f"ModelPruning(amount={amount!r}) must be an int, a float or a "
                                            "callable epoch -> amount.")
        if verbose not in (0, 1, 2):
            raise MisconfigurationException(f"ModelPruning(verbose={verbose!r}) must be 0, 1 or 2.")
        self.pruning_fn = pruning_fn
        self.amount = amount
        self._parameters_to_prune: _ParamList = parameters_to_prune
        self._use_global_unstructured = use_global_unstructured
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._verbose = verbose
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._originals: Optional[dict] = None  # id(module) -> (copy from before training, [(index, name)])
        self._ready = False

    # --- what to prune ---------------------------------------------------------------------------------------
    def filter_parameters_to_prune(self, parameters_to_prune: _ParamList = ()) -> _ParamList:
        """Override to choose among the ``(module, name)`` pairs found."""
        return parameters_to_prune

    @staticmethod
    def sanitize_parameters_to_prune(pl_module: nn.Module, parameters_to_prune: _ParamList = (),
                                     parameter_names: Sequence[str] = ()) -> _ParamList:
        """Every ``(layer, name)`` of the model when ``parameters_to_prune`` is empty; else check that the given
        pairs belong to the model."""
        from ember.module import LightningModule

        names = parameter_names or ModelPruning.PARAMETER_NAMES
        containers = (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)
        layers = [m for m in pl_module.modules() if not isinstance(m, containers)]
        if not parameters_to_prune:
            return [(m, p) for p in names for m in layers if isinstance(getattr(m, p, None), nn.Parameter)]
        if not (isinstance(parameters_to_prune, (list, tuple))
                and all(isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], nn.Module)
                        and isinstance(pair[1], str) for pair in parameters_to_prune)):
            raise MisconfigurationException("ModelPruning(parameters_to_prune=...) takes a list of (nn.Module, "
                                            "parameter name) pairs, e.g. [(model.fc1, 'weight')].")
        missing_modules = [m for m, _ in parameters_to_prune if not any(m is layer for layer in layers)]
        missing_names = [n for m, n in parameters_to_prune if not hasattr(m, n)]
        if missing_modules or missing_names:
            raise MisconfigurationException(
                "ModelPruning: some parameters_to_prune are not in the model: modules "
                f"{[type(m).__name__ for m in missing_modules]}, parameter names {missing_names}.")
        return list(parameters_to_prune)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._ready:
            return  # once: a later validate/test must not list the already-pruned tensors again
        found = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune, self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(found)
        if self._use_lottery_ticket_hypothesis:
            self._originals = {}
            for i, (module, name) in enumerate(self._parameters_to_prune):
                entry = self._originals.setdefault(id(module), (copy.deepcopy(module), []))
                entry[1].append((i, name))
        self._ready = True

    # --- pruning ---------------------------------------------------------------------------------------------
    def apply_pruning(self, amount: Union[int, float]) -> None:
        """Prune the chosen parameters by ``amount`` now."""
        before = self._sparsity() if self._verbose else None
        if self._use_global_unstructured:
            self._global_kwargs["amount"] = amount
            accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
            kwargs = {k: v for k, v in self._global_kwargs.items() if k in accepted}
            torch_prune.global_unstructured(self._parameters_to_prune, pruning_method=self.pruning_fn, **kwargs)
        else:
            for module, name in self._parameters_to_prune:
                self.pruning_fn(module, name=name, amount=amount)
        if before is not None:
            self._log_sparsity(before, self._sparsity(), amount)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the weights that survived pruning to their values from before training (or, with
        ``resample_parameters``, to a fresh initialisation); the masks stay."""
        if self._originals is None:
            return
        for original, names in self._originals.values():
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = copy.deepcopy(original)
                original.reset_parameters()
            for i, name in names:
                module = self._parameters_to_prune[i][0]
                target = getattr(module, name + "_orig", None)
                target = getattr(module, name) if target is None else target
                source = getattr(original, name)
                if isinstance(target, torch.Tensor) and isinstance(source, torch.Tensor):
                    target.data = source.data.to(target.device)

    def make_pruning_permanent(self, module: nn.Module) -> None:
        """Remove the masks: each pruned tensor becomes a plain parameter holding its zeros."""
        for sub in module.modules():
            for key, hook in list(sub._forward_pre_hooks.items()):
                if isinstance(hook, torch_prune.BasePruningMethod):
                    hook.remove(sub)
                    del sub._forward_pre_hooks[key]

    def _run_pruning(self, epoch: int) -> None:
        prune = self._apply_pruning(epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    # --- hooks -----------------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._make_pruning_permanent:
            self.make_pruning_permanent(pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        if not self._make_pruning_permanent:
            return
        # the checkpoint holds plain pruned tensors (loadable into an unpruned model); training keeps its masks
        state = dict(checkpoint["state_dict"])
        for key in [k[: -len("_mask")] for k in state if k.endswith("_mask")]:
            orig, mask = state.pop(key + "_orig"), state.pop(key + "_mask")
            state[key] = mask.to(orig.dtype) * orig
        checkpoint["state_dict"] = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    # --- reporting -------------------------------------------------------------------------------------------
    def _sparsity(self) -> list:
        stats = []
        for module, name in self._parameters_to_prune:
            mask = getattr(module, name + "_mask", None)
            stats.append((0, 1) if mask is None else (int((mask == 0).sum()), mask.numel()))
        return stats

    def _log_sparsity(self, before: list, after: list, amount: Union[int, float]) -> None:
        from ember.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            return
        total = sum(n for _, n in after)
        zeros_before, zeros_after = sum(z for z, _ in before), sum(z for z, _ in after)
        log.info(f"Applied `{self._method_name}`. Pruned: {zeros_before}/{total} ({zeros_before / total:.2%}) -> "
                 f"{zeros_after}/{total} ({zeros_after / total:.2%})")
        if self._verbose == 2:
            for (module, name), (z0, n0), (z1, n1) in zip(self._parameters_to_prune, before, after):
                log.info(f"Applied `{self._method_name}` to `{module!r}.{name}` with amount={amount}. Pruned: "
                         f"{z0} ({z0 / n0:.2%}) -> {z1} ({z1 / n1:.2%})")


__all__ = ["ModelPruning"]
