"""What ``fabric.setup`` and ``fabric.setup_dataloaders`` return: the user's module, optimizers and loaders, each
wrapped so that the precision, the strategy and the device apply while the loop stays the user's own.

- ``_FabricModule``: ``model(x)`` casts floating inputs to the precision's dtype, runs under its autocast (or
  default dtype for '*-true'), goes through the strategy's wrapper (DDP) when there is one (FSDP has none: the
  sharded module gathers its own parameters), and gives floating outputs back in the default dtype. Every other
  attribute is the user's module's; ``state_dict()`` has the user's keys (no wrapper prefix).
- ``_FabricOptimizer``: ``step()`` goes through the precision (the GradScaler under '16-mixed'); it passes
  ``isinstance(opt, torch.optim.AdamW)`` like the optimizer it wraps.
- ``_FabricDataLoader``: each ``iter()`` sets the sampler's epoch, and batches arrive on the device.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Optional

import torch
from torch.nn.modules import module as _nn  # its global hooks (register_module_forward_hook...)

from ember._utils import apply_to_tensors, move_data_to_device

__all__ = ["is_wrapped"]

# methods of a LightningModule that run through the strategy's wrapper (DDP) like forward does
_STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")


def _cast_floats(data: Any, dtype: torch.dtype) -> Any:
    return apply_to_tensors(data, lambda t: t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t)


@contextlib.contextmanager
def _default_dtype(dtype: Optional[torch.dtype]) -> Iterator[None]:
    """New floating tensors are ``dtype`` inside the block ('16-true', 'bf16-true', '64-true'); None: unchanged."""
    if dtype is None:
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _forward_context(precision: Any) -> Any:
    """Autocast for '*-mixed', the default dtype for '*-true', nothing for '32-true'."""
    if precision.param_dtype is not None:
        return _default_dtype(precision.param_dtype)
    return precision.forward_context()


class _FabricModule(torch.nn.Module):
    """The module ``fabric.setup`` returns. ``.module`` is the user's module itself."""

    def __init__(self, module: torch.nn.Module, precision: Any, compiled: Optional[torch.nn.Module] = None) -> None:
        super().__init__()
        self._original_module = module
        self.__dict__.update(
            _inner=module,  # the same module, read without nn.Module's attribute lookup on every call
            _precision=precision,
            _compiled=compiled,  # torch.compile(module) as the user passed it: what runs the module's forward
            _wrapper=None,  # the strategy's wrapper (DDP) once set up; registered as a submodule too
            _sharded=False,  # FSDP: the module itself gathers its parameters; step methods are registered with it
            _method="__call__",  # what the wrapper's forward runs on the module (a step method, see __getattr__)
            _forward_methods=set(_STEP_METHODS),
            # floating inputs are cast to this dtype and outputs back to the default one, as Lightning's Fabric does
            _input_dtype=precision.autocast_dtype or precision.param_dtype,
            # '32-true' without a strategy wrapper: forward is the module's own call, with nothing around it
            _direct=(compiled if compiled is not None else module) if precision.plain else None,
            _ready=True,
        )

    @property
    def module(self) -> torch.nn.Module:
        """The user's module, as passed to ``fabric.setup``."""
        return self._inner

    @property
    def device(self) -> torch.device:
        first = next(self._inner.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's first floating-point parameter (the precision's, after set-up)."""
        for param in self._inner.parameters():
            if param.is_floating_point():
                return param.dtype
        return torch.get_default_dtype()

    def _set_wrapper(self, wrapper: torch.nn.Module) -> None:
        torch.nn.Module.__setattr__(self, "_forward_module", wrapper)  # registered: train()/eval() reach it
        self.__dict__.update(_wrapper=wrapper, _direct=None)

    def _set_sharded(self) -> None:
        """FSDP sharded the module in place: no wrapper, but step methods go through the precision as forward does
        (FSDP gathers the parameters for the methods registered with it)."""
        self.__dict__["_sharded"] = True

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """The module's forward (compiled if the user compiled it), or the step method being called through the
        strategy's wrapper: what that wrapper runs as its own forward."""
        method = self._method
        if method == "__call__":
            return (self._compiled if self._compiled is not None else self._inner)(*args, **kwargs)
        return getattr(self._inner, method)(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # '32-true' without a strategy wrapper: the user's module is called at once, skipping nn.Module's own call
        # of this wrapper (two Python frames a step), unless hooks or tracing need that call
        direct = self.__dict__["_direct"]
        if direct is None or self._forward_hooks or self._forward_pre_hooks or self._backward_hooks \
                or self._backward_pre_hooks or _nn._global_forward_hooks or _nn._global_forward_pre_hooks \
                or _nn._global_backward_hooks or _nn._global_backward_pre_hooks or torch._C._get_tracing_state():
            return torch.nn.Module.__call__(self, *args, **kwargs)
        return direct(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        direct = self._direct
        if direct is not None:
            return direct(*args, **kwargs)
        return self._call("__call__", args, kwargs)

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        dtype = self._input_dtype
        if dtype is not None:
            args, kwargs = _cast_floats((args, kwargs), dtype)
        precision = self._precision
        if precision.plain:  # '32-true': no context to enter (DDP's forward comes here every step)
            output = self._through_wrapper(method, args, kwargs)
        else:
            with _forward_context(precision):
                output = self._through_wrapper(method, args, kwargs)
        return output if dtype is None else _cast_floats(output, torch.get_default_dtype())

    def _through_wrapper(self, method: str, args: tuple, kwargs: dict) -> Any:
        wrapper = self._wrapper
        if wrapper is None and method == "__call__":
            return self._run(*args, **kwargs)
        self.__dict__["_method"] = method
        try:
            return wrapper(*args, **kwargs) if wrapper is not None else self._run(*args, **kwargs)
        finally:
            self.__dict__["_method"] = "__call__"

    def mark_forward_method(self, method: Any) -> None:
        """Run ``model.<method>(...)`` through the strategy's wrapper (DDP) and the precision, as ``forward`` is:
        for a method other than forward that computes the loss."""
        name = method if isinstance(method, str) else getattr(method, "__name__", None)
        if name == "forward":
            raise ValueError("mark_forward_method('forward'): forward already runs through the strategy; mark only "
                             "other methods.")
        if not callable(getattr(self._inner, name or "", None)):
            raise AttributeError(f"mark_forward_method({method!r}): {type(self._inner).__name__} has no "
                                 f"method {name!r}. Pass the name of one of its methods.")
        if self._sharded:  # FSDP gathers the root's parameters around the method, as around forward
            from ember.strategies.fsdp import register_forward_method

            register_forward_method(self._inner, name)
        self._forward_methods.add(name)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, **kwargs: Any) -> Any:
        return self._inner.load_state_dict(state_dict, strict=strict, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # the wrapper's own submodules
        except AttributeError:
            pass
        inner = self.__dict__.get("_inner")
        if inner is None:  # not built yet (unpickling)
            raise AttributeError(name)
        if (self.__dict__["_wrapper"] is not None or self.__dict__["_sharded"]) \
                and name in self.__dict__["_forward_methods"] and hasattr(inner, name):
            call = self._call  # through DDP, so that its gradient hooks see the step; and through the precision
            return lambda *args, **kwargs: call(name, args, kwargs)
        return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_ready"):
            super().__setattr__(name, value)
            return
        own = name in self.__dict__ or name in self._modules or hasattr(type(self), name)
        original = self.__dict__["_inner"]
        if own:
            super().__setattr__(name, value)
        if not own or hasattr(original, name):  # `model.flag = True` sets the user's module, as Lightning
            setattr(original, name, value)


class _FabricOptimizer:
    """The optimizer ``fabric.setup`` returns: ``step()`` goes through the precision; the rest is the optimizer's."""

    _classes: dict = {}  # optimizer class -> its Fabric subclass (isinstance checks keep working)

    def __init__(self, optimizer: torch.optim.Optimizer, precision: Any, after_step: Optional[Callable] = None) -> None:
        self.__dict__.update(_optimizer=optimizer, _precision=precision, _after_step=after_step)
        kind = type(optimizer)
        if kind not in _FabricOptimizer._classes:
            _FabricOptimizer._classes[kind] = type(f"Fabric{kind.__name__}", (_FabricOptimizer, kind), {})
        self.__class__ = _FabricOptimizer._classes[kind]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def step(self, closure: Optional[Callable] = None) -> Any:
        if closure is None and self._after_step is None and self._precision.scaler is None:
            return self._optimizer.step()  # nothing to add around the optimizer's own step
        kwargs = {} if closure is None else {"closure": closure}
        output = self._precision.optimizer_step(self._optimizer, **kwargs)
        if self._after_step is not None:  # the callbacks' on_after_optimizer_step, as in Lightning's Fabric
            self._after_step(self._optimizer)
        return output

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._optimizer.load_state_dict(state_dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_optimizer"], name)

    def __repr__(self) -> str:
        return f"Fabric({self._optimizer!r})"


class _FabricDataLoader:
    """The loader ``fabric.setup_dataloaders`` returns. Each ``iter()`` sets the sampler's epoch (so a shuffling
    DistributedSampler draws a new order every epoch), and batches are moved to ``device`` (None: left as they are).
    Every other attribute is the DataLoader's."""

    def __init__(self, loader: Any, device: Optional[torch.device]) -> None:
        # a DataLoader's batches are on the CPU already: moving them there would only cost time
        move_to = device if device is not None and device.type != "cpu" else None
        self.__dict__.update(_dataloader=loader, _device=device, _move_to=move_to, _epoch=0)

    @property
    def device(self) -> Optional[torch.device]:
        return self._device

    def __len__(self) -> int:
        return len(self._dataloader)

    def __iter__(self) -> Iterator:
        loader = self._dataloader
        for name in ("sampler", "batch_sampler"):
            set_epoch = getattr(getattr(loader, name, None), "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self._epoch)
        self.__dict__["_epoch"] += 1
        device = self._move_to
        if device is None:
            yield from loader
        else:
            for batch in loader:
                yield move_data_to_device(batch, device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_dataloader"], name)


def _unwrap(obj: Any) -> Any:
    """The user's object behind a Fabric wrapper (the object itself otherwise)."""
    if isinstance(obj, _FabricModule):
        return obj._inner
    if isinstance(obj, _FabricOptimizer):
        return obj._optimizer
    if isinstance(obj, _FabricDataLoader):
        return obj._dataloader
    inner = getattr(obj, "_orig_mod", None)  # torch.compile(module)
    return inner if isinstance(inner, torch.nn.Module) and isinstance(obj, torch.nn.Module) else obj


def is_wrapped(obj: object) -> bool:
    """Whether ``obj`` was returned by ``fabric.setup``/``setup_module``/``setup_optimizers``/``setup_dataloaders``."""
    return isinstance(_unwrap_compiled(obj), (_FabricModule, _FabricOptimizer, _FabricDataLoader))


def _unwrap_compiled(obj: Any) -> Any:
    inner = getattr(obj, "_orig_mod", None)
    return inner if type(obj).__name__ == "OptimizedModule" and inner is not None else obj


def _unwrap_objects(collection: Any) -> Any:
    """Every Fabric wrapper in ``collection`` (a wrapper, or a dict/list/tuple holding some) replaced by the user's
    object behind it; Lightning's name, which programs built on Fabric import."""
    if isinstance(collection, Mapping):
        return type(collection)({k: _unwrap_objects(v) for k, v in collection.items()})  # type: ignore[call-arg]
    if isinstance(collection, (list, tuple)) and not hasattr(collection, "_fields"):
        return type(collection)(_unwrap_objects(v) for v in collection)
    return _unwrap(collection)
