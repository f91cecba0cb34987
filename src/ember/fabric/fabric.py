"""``Fabric``: Lightning's API for people who keep their own training loop and want devices, precision, distributed
processes and checkpoints handled. It is built on the Trainer's own pieces, so one fix serves both:
``resolve_devices`` and ``Precision`` (``accelerators.py``), the strategies and their launcher (``strategies/``),
``resolve_strategy`` for names like 'ddp', and ``atomic_save``/``load_checkpoint`` (``_checkpoint_io.py``).
"""
from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import torch

from ember.accelerators import Precision, resolve_devices
from ember.seed import add_worker_seeding
from ember.fabric.wrappers import (_default_dtype, _FabricDataLoader, _FabricModule, _FabricOptimizer,
                                   _forward_context, _unwrap, _unwrap_compiled)
from ember.strategies import launcher
from ember.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["Fabric"]


class Fabric:
    """Devices, precision, distributed processes and checkpoints for a training loop you write yourself.

    >>> import torch
    >>> from ember.fabric import Fabric
    >>> fabric = Fabric(accelerator="cpu", precision="32-true")
    >>> fabric.launch()
    >>> model = torch.nn.Linear(4, 1)
    >>> model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    >>> loss = model(torch.randn(8, 4)).pow(2).mean()
    >>> fabric.backward(loss)
    >>> optimizer.step()
    >>> fabric.world_size, fabric.is_global_zero
    (1, True)
    """

    def __init__(self, *, accelerator: Any = "auto", strategy: Any = "auto", devices: Any = "auto",
                 num_nodes: int = 1, precision: Any = None, plugins: Any = None, callbacks: Any = None,
                 loggers: Any = None) -> None:
        from ember.trainer.arguments import check_int, resolve_strategy

        if _is_fsdp(strategy):
            raise NotImplementedError(
                f"Fabric(strategy={strategy!r}): ember's Fabric does not run FSDP yet (sharded set-up and sharded "
                "save/load are still to come). Use Fabric(strategy='ddp'), or ember.Trainer(strategy='fsdp').")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        check_int("num_nodes", num_nodes, 1, owner="Fabric")
        device_type, device_indices = resolve_devices(accelerator, devices, owner="Fabric")
        self._strategy: Strategy = resolve_strategy(strategy, device_type, device_indices, num_nodes,
                                                    devices_given=devices not in ("auto", None), plugins=plugins,
                                                    owner="Fabric")
        if getattr(self._strategy, "start_method", "popen") != "popen":
            raise NotImplementedError(
                f"Fabric(strategy={strategy!r}): ember's Fabric starts processes by running the script again "
                "(strategy='ddp'); spawning them (ddp_spawn, start_method='spawn'/'fork') is still to come. Use "
                "strategy='ddp' and call fabric.launch() near the top of the script.")
        self._precision = Precision("32-true" if precision is None else precision, self._strategy.root_device,
                                    owner="Fabric")
        callbacks = [] if callbacks is None else callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
        self._callbacks: list = list(callbacks)
        self._loggers: list = [] if loggers is None else list(loggers) if isinstance(loggers, (list, tuple)) \
            else [loggers]
        self._launched = False
        self._models_setup = 0
        if type(self).run is not Fabric.run:  # the LightningLite style: subclass, override run(), call fabric.run()
            self.run = self._launched_run(self.run)  # type: ignore[method-assign]

    # --- where this process stands ---------------------------------------------------------------------------
    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def device(self) -> torch.device:
        """The device this process runs on: create tensors on it with ``torch.zeros(..., device=fabric.device)``."""
        return self._strategy.root_device

    @property
    def global_rank(self) -> int:
        return self._strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self._strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self._strategy.node_rank

    @property
    def world_size(self) -> int:
        return self._strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self._strategy.is_global_zero

    @property
    def loggers(self) -> list:
        return self._loggers

    @property
    def logger(self) -> Any:
        """The first logger passed to ``Fabric(loggers=...)``."""
        if not self._loggers:
            raise IndexError("fabric.logger: this Fabric has no logger. Pass one: Fabric(loggers=CSVLogger('logs')) "
                             "(from ember.loggers).")
        return self._loggers[0]

    # --- processes -------------------------------------------------------------------------------------------
    def launch(self, function: Optional[Callable] = None, *args: Any, **kwargs: Any) -> Any:
        """Start or join the other processes and set up the process group; then run ``function(fabric, *args)``
        if given and return what it returns.

        Under torchrun or SLURM the processes exist: this joins them. With ``devices=N`` and a plain
        ``python train.py``, this process becomes rank 0 and starts ranks 1..N-1 by running the same command again,
        so the code above ``launch()`` runs in every process. Calling it again does nothing.
        """
        if function is not None:
            if not callable(function):
                raise TypeError(f"fabric.launch({function!r}): pass the function itself, not its result: "
                                "`fabric.launch(train)`, not `fabric.launch(train())`.")
            if not _takes_an_argument(function):
                raise TypeError(f"fabric.launch({getattr(function, '__name__', function)}): the function must take "
                                "the Fabric object as its first argument: `def train(fabric): ...`.")
        if not self._launched:
            self._strategy.setup_environment()  # DDP: start the other local processes if nobody else did, and join
            self._launched = True
            if self.world_size > 1:
                _kill_children_on_uncaught_error()
        return None if function is None else function(self, *args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Override in a subclass to put the training code here; calling ``fabric.run(...)`` launches first."""

    def _launched_run(self, run: Callable) -> Callable:
        def launched(*args: Any, **kwargs: Any) -> Any:
            self.launch()
            return run(*args, **kwargs)
        return launched

    def _check_launched(self, what: str) -> None:
        if not self._launched and not isinstance(self._strategy, SingleDeviceStrategy):
            raise RuntimeError(
                f"fabric.{what} was called before fabric.launch(): with {self.world_size} processes "
                f"({type(self._strategy).__name__}), launch() starts or joins the other processes and sets up the "
                "process group. Call fabric.launch() right after creating the Fabric.")

    # --- set-up ----------------------------------------------------------------------------------------------
    def setup(self, module: torch.nn.Module, *optimizers: torch.optim.Optimizer, scheduler: Any = None,
              move_to_device: bool = True, _reapply_compile: bool = True) -> Any:
        """The module (and optimizers) ready for training: moved to the device, converted to the precision, wrapped
        by the strategy (DDP). Returns the module alone, or ``(module, *optimizers)`` (then the scheduler if given)."""
        self._check_optimizers(optimizers, "setup")
        wrapped = self._setup_module(module, move_to_device, "setup")
        wrapped_optimizers = [self._wrap_optimizer(o) for o in optimizers]
        if hasattr(wrapped.module, "_fabric_optimizers"):  # a LightningModule: what its self.optimizers() returns
            wrapped.module._fabric_optimizers = wrapped_optimizers
        if not optimizers:
            return wrapped
        return (wrapped, *wrapped_optimizers) + ((scheduler,) if scheduler is not None else ())

    def setup_module(self, module: torch.nn.Module, move_to_device: bool = True,
                     _reapply_compile: bool = True) -> _FabricModule:
        """``setup(module)`` without optimizers: create the optimizer afterwards and pass it to ``setup_optimizers``."""
        return self._setup_module(module, move_to_device, "setup_module")

    def setup_optimizers(self, *optimizers: torch.optim.Optimizer) -> Any:
        """Each optimizer wrapped so that ``step()`` goes through the precision; one, or a tuple of them."""
        if not optimizers:
            raise ValueError("fabric.setup_optimizers() got no optimizer; pass the optimizers to set up: "
                             "`optimizer = fabric.setup_optimizers(torch.optim.AdamW(model.parameters()))`.")
        self._check_optimizers(optimizers, "setup_optimizers")
        wrapped = tuple(self._wrap_optimizer(o) for o in optimizers)
        return wrapped[0] if len(wrapped) == 1 else wrapped

    def setup_dataloaders(self, *dataloaders: Any, use_distributed_sampler: bool = True,
                          move_to_device: bool = True) -> Any:
        """Each loader giving this process its share of the data (a DistributedSampler under DDP that shuffles only
        if the loader shuffles) and its batches on ``fabric.device``. One loader, or a list of them."""
        self._check_launched("setup_dataloaders()")
        if not dataloaders:
            raise ValueError("fabric.setup_dataloaders() got no DataLoader; pass the loaders to set up: "
                             "`train_loader = fabric.setup_dataloaders(train_loader)`.")
        out = []
        for loader in dataloaders:
            if isinstance(loader, _FabricDataLoader):
                raise ValueError("fabric.setup_dataloaders() got a loader that was already set up (each loader is set "
                                 "up once); pass the original DataLoader, or use the one setup_dataloaders returned.")
            if not isinstance(loader, torch.utils.data.DataLoader):
                raise TypeError(f"fabric.setup_dataloaders() takes torch DataLoaders; got {type(loader).__name__}. "
                                "Wrap it: `DataLoader(dataset, batch_size=...)`.")
            if use_distributed_sampler:
                loader = self._strategy.process_dataloader(loader, True)
            add_worker_seeding(loader, self.global_rank)  # after seed_everything(workers=True), as Lightning
            out.append(_FabricDataLoader(loader, self.device if move_to_device else None))
        return out[0] if len(out) == 1 else out

    def _setup_module(self, module: torch.nn.Module, move_to_device: bool, what: str) -> _FabricModule:
        self._check_launched(f"{what}()")
        if isinstance(_unwrap_compiled(module), _FabricModule):
            raise ValueError(f"fabric.{what}() got a model that was already set up: set each model up once, and keep "
                             "using the model that setup returned.")
        original = _unwrap(module)
        wrapped = _FabricModule(original, self._precision, compiled=module if original is not module else None)
        self._precision.convert_module(original)
        if move_to_device:
            original.to(self.device)
        strategy_wrapper = self._strategy.setup_module(original, wrapped._run)  # DDP: a wrapper calling _run
        if isinstance(strategy_wrapper, torch.nn.Module):
            wrapped._set_wrapper(strategy_wrapper)
        self._models_setup += 1
        if hasattr(original, "_fabric"):  # a LightningModule: self.log, self.optimizers(), its hooks go through Fabric
            original.fabric = self
            if original not in self._callbacks:
                self._callbacks.append(original)
        self.call("on_after_setup", fabric=self, module=wrapped)
        return wrapped

    def _check_optimizers(self, optimizers: tuple, what: str) -> None:
        self._check_launched(f"{what}()")
        for optimizer in optimizers:
            if isinstance(optimizer, _FabricOptimizer):
                raise ValueError(f"fabric.{what}() got an optimizer that was already set up: set each optimizer up "
                                 "once, and keep using the optimizer that setup returned.")
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(f"fabric.{what}() takes torch optimizers after the model; got "
                                f"{type(optimizer).__name__}. Pass a scheduler as `scheduler=...`.")

    def _wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> _FabricOptimizer:
        after_step = None
        if any(callable(getattr(cb, "on_after_optimizer_step", None)) for cb in self._callbacks):
            def after_step(opt: torch.optim.Optimizer) -> None:
                self.call("on_after_optimizer_step", strategy=self._strategy, optimizer=opt)
        return _FabricOptimizer(optimizer, self._precision, after_step)

    # --- the training step -------------------------------------------------------------------------------------
    def backward(self, tensor: torch.Tensor, *args: Any, model: Any = None, **kwargs: Any) -> None:
        """``loss.backward()`` through the precision (the loss scaled under '16-mixed')."""
        if self._models_setup == 0:
            raise RuntimeError("fabric.backward(loss) was called before any model was set up, so the precision and "
                               "the strategy would not apply to it. Set the model up first: "
                               "`model, optimizer = fabric.setup(model, optimizer)`, and compute the loss with it.")
        # Precision.backward calls `module.backward(loss, ...)`; torch.Tensor.backward is that for a plain loss
        self._precision.backward(tensor, torch.Tensor, *args, **kwargs)

    def clip_gradients(self, module: Any, optimizer: Any, clip_val: Optional[float] = None,
                       max_norm: Optional[float] = None, norm_type: float = 2.0,
                       error_if_nonfinite: bool = True) -> Optional[torch.Tensor]:
        """Clip the gradients of ``optimizer``'s parameters by value (``clip_val``) or by total norm (``max_norm``,
        which returns the norm before clipping). Under '16-mixed' the gradients are unscaled first."""
        if (clip_val is None) == (max_norm is None):
            raise ValueError(f"fabric.clip_gradients(clip_val={clip_val}, max_norm={max_norm}): pass exactly one of "
                             "them: clip_val clips each gradient value, max_norm the total norm.")
        optimizer = _unwrap(optimizer)
        self._precision.unscale(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if clip_val is not None:
            torch.nn.utils.clip_grad_value_(params, clip_val)
            return None
        return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type,
                                              error_if_nonfinite=error_if_nonfinite)

    def autocast(self) -> Any:
        """The precision's context for code outside the model's forward (autocast under '*-mixed')."""
        return _forward_context(self._precision)

    def no_backward_sync(self, module: Any, enabled: bool = True) -> Any:
        """Under DDP, backward inside this block keeps gradients local (gradient accumulation: sync only on the
        step's last batch). Both the forward and ``fabric.backward`` must run inside it."""
        if not isinstance(_unwrap_compiled(module), _FabricModule):
            raise TypeError("fabric.no_backward_sync(model) needs the model returned by fabric.setup: "
                            "`model = fabric.setup(model, ...)`, then `with fabric.no_backward_sync(model): ...`.")
        wrapper = _unwrap_compiled(module)._wrapper
        if not enabled or wrapper is None or not hasattr(wrapper, "no_sync"):
            return contextlib.nullcontext()
        return wrapper.no_sync()

    def to_device(self, obj: Any) -> Any:
        """A module moved to ``fabric.device`` (in place), or a tensor or collection of tensors moved there."""
        if isinstance(obj, torch.nn.Module):
            return obj.to(self.device)
        from ember._utils import move_data_to_device

        return move_data_to_device(obj, self.device)

    @contextlib.contextmanager
    def init_module(self, empty_init: Optional[bool] = None) -> Iterator[None]:
        """Create the model's parameters on the device and in the precision's dtype ('*-true') directly;
        ``empty_init=True`` also skips their initialisation (for weights about to be loaded)."""
        self._check_launched("init_module()")
        with self.init_tensor(), (_SkipInit() if empty_init else contextlib.nullcontext()):
            yield

    @contextlib.contextmanager
    def init_tensor(self) -> Iterator[None]:
        """Tensors created in this block are on the device, in the precision's dtype ('*-true')."""
        with torch.device(self.device), _default_dtype(self._precision.param_dtype):
            yield

    def sharded_model(self) -> Any:
        """Lightning's older name of ``init_module()``."""
        return self.init_module()

    # --- collectives -----------------------------------------------------------------------------------------
    def barrier(self, name: Optional[str] = None) -> None:
        self._check_launched("barrier()")
        self._strategy.barrier(name)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        self._check_launched("broadcast()")
        return self._strategy.broadcast(obj, src=src)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Every rank's tensors, stacked on a new first dimension of size world_size (none added in one process)."""
        self._check_launched("all_gather()")
        return _apply_to_numbers(self._as_tensors(data), lambda t: self._strategy.all_gather(t, group, sync_grads))

    def all_reduce(self, data: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """Tensors reduced over the ranks ('mean', 'sum', 'max', 'min')."""
        self._check_launched("all_reduce()")
        return _apply_to_numbers(self._as_tensors(data), lambda t: self._strategy.reduce(t, group, reduce_op))

    def _as_tensors(self, data: Any) -> Any:
        device = self.device
        return _apply_to_numbers(data, lambda t: t.to(device) if isinstance(t, torch.Tensor) else
                                 torch.tensor(t, device=device))

    @contextlib.contextmanager
    def rank_zero_first(self, local: bool = False) -> Iterator[None]:
        """Rank 0 (of the node with ``local=True``) runs the block first; the others run it once it is done."""
        rank = self.local_rank if local else self.global_rank
        if rank > 0:
            self.barrier("rank_zero_first")
        yield
        if rank == 0:
            self.barrier("rank_zero_first")

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the first process of each machine only."""
        if self.local_rank == 0:
            print(*args, **kwargs)

    # --- callbacks and loggers ---------------------------------------------------------------------------------
    def call(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        """Call ``hook_name`` on every callback that has it, with the keyword arguments its signature takes."""
        for callback in self._callbacks:
            method = getattr(callback, hook_name, None)
            if method is None:
                continue
            if not callable(method):  # as Lightning: skipped, with a warning
                from ember.utilities.rank_zero import rank_zero_warn

                rank_zero_warn(f"fabric.call({hook_name!r}) skips {type(callback).__name__}.{hook_name}: it is a "
                               f"{type(method).__name__}, not a method. Rename the attribute or make it a method.")
                continue
            method(*args, **_kwargs_for(method, kwargs))

    def log(self, name: str, value: Any, step: Optional[int] = None) -> None:
        """Send one value to every logger (a tensor is read as a number here: this waits for the device)."""
        self.log_dict({name: value}, step=step)

    def log_dict(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Send several values to every logger, at ``step`` (None: each logger counts its own rows)."""
        if not self._loggers:
            return
        values = {k: (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for k, v in metrics.items()}
        for logger in self._loggers:
            logger.log_metrics(values, step)

    @staticmethod
    def seed_everything(seed: Optional[int] = None, workers: Optional[bool] = None, verbose: bool = True) -> int:
        """``ember.seed_everything``; ``workers`` defaults to True here, as in Lightning's Fabric."""
        from ember.seed import seed_everything

        return seed_everything(seed, workers=True if workers is None else workers)

    # --- checkpoints -----------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path], state: Mapping[str, Any], filter: Optional[Mapping] = None) -> None:
        """Write ``state`` to ``path`` from rank 0, atomically (a crash leaves the previous file whole): modules
        and optimizers as their state dicts, objects with ``state_dict()`` as theirs, everything else as it is.
        ``filter={"model": fn}`` keeps the entries of that state dict for which ``fn(name, value)`` is True.
        Call it on every rank."""
        self._check_launched("save()")
        filter = dict(filter or {})
        unknown = set(filter) - set(state)
        if unknown:
            raise ValueError(f"fabric.save(filter=...) names {sorted(unknown)}, which the state does not have "
                             f"(its keys: {sorted(state)}).")
        checkpoint = {}
        for key, obj in state.items():
            value = self._state_of(obj)
            if key in filter:
                if not callable(filter[key]):
                    raise TypeError(f"fabric.save(filter={{{key!r}: ...}}) must map to a function (name, value) -> "
                                    f"bool; got {type(filter[key]).__name__}.")
                value = {k: v for k, v in value.items() if filter[key](k, v)}
            checkpoint[key] = value
        self._strategy.save_checkpoint(checkpoint, path)
        self.barrier("save")

    def _state_of(self, obj: Any) -> Any:
        obj = _unwrap(obj)
        if isinstance(obj, torch.nn.Module):
            return self._strategy.lightning_module_state_dict(obj)
        if isinstance(obj, torch.optim.Optimizer):
            return self._strategy.optimizer_state(obj)
        if _is_stateful(obj):
            return obj.state_dict()
        return obj

    def load(self, path: Union[str, Path], state: Optional[dict] = None, strict: bool = True, *,
             weights_only: Optional[bool] = None) -> dict:
        """Read a file written by ``fabric.save``. With ``state``, restore each object in it in place (modules,
        optimizers, objects with ``load_state_dict``; plain values are replaced in the dict) and return what the
        file holds beyond ``state``; without, return the whole checkpoint. Read with ``weights_only=True`` unless
        you pass False for a file you trust."""
        self._check_launched("load()")
        checkpoint = self._read(path, weights_only)
        if not state:
            self.barrier("load")
            return checkpoint
        missing = [k for k in state if k not in checkpoint]
        if strict and missing:
            raise KeyError(f"fabric.load({str(path)!r}): the state asks for {missing}, which the checkpoint does not "
                           f"have (its keys: {sorted(checkpoint)}). Remove them from the state, or pass "
                           "strict=False to restore only what the file holds.")
        for key in [k for k in state if k in checkpoint]:
            self._restore(state, key, checkpoint.pop(key), strict)
        self.barrier("load")
        return checkpoint

    def load_raw(self, path: Union[str, Path], obj: Any, strict: bool = True, *,
                 weights_only: Optional[bool] = None) -> None:
        """Load a plain ``torch.save(model.state_dict())`` (or an optimizer's) file into ``obj``."""
        self._check_launched("load_raw()")
        target = _unwrap(obj)
        if not isinstance(target, (torch.nn.Module, torch.optim.Optimizer)):
            raise TypeError(f"fabric.load_raw(path, obj) loads into a module or an optimizer; got "
                            f"{type(target).__name__}. For a checkpoint written by fabric.save use fabric.load.")
        self._restore({"raw": target}, "raw", self._read(path, weights_only), strict)

    def _read(self, path: Union[str, Path], weights_only: Optional[bool]) -> dict:
        from ember._checkpoint_io import other_checkpoints

        if not Path(path).exists():
            raise FileNotFoundError(f"fabric.load: no checkpoint at {path!s} (absolute: {Path(path).absolute()})"
                                    f"{other_checkpoints(Path(path))}. Pass the path given to fabric.save(path, "
                                    "state), or save one first.")
        return self._strategy.load_checkpoint(path, weights_only=weights_only)

    def _restore(self, state: dict, key: str, saved: Any, strict: bool) -> None:
        obj = _unwrap(state[key])
        if isinstance(obj, torch.nn.Module):
            self._strategy.load_model_state_dict(obj, saved, strict=strict)
        elif isinstance(obj, torch.optim.Optimizer):
            self._strategy.load_optimizer_state_dict(obj, saved)
        elif _is_stateful(obj):
            obj.load_state_dict(saved)
        else:
            state[key] = saved


def _is_fsdp(strategy: Any) -> bool:
    name = strategy if isinstance(strategy, str) else getattr(strategy, "strategy_name", "")
    return isinstance(name, str) and name.lower().startswith("fsdp")


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None)) \
        and not isinstance(obj, type)


def _takes_an_argument(function: Callable) -> bool:
    try:
        return bool(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return True  # a builtin or C function: let the call say what is wrong


def _kwargs_for(method: Callable, kwargs: dict) -> dict:
    """The keyword arguments ``method`` accepts (all of them when it takes ``**kwargs``)."""
    if not kwargs:
        return kwargs
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in parameters}


def _apply_to_numbers(data: Any, fn: Callable) -> Any:
    """``fn`` on every tensor, int, float and bool inside lists, tuples and dicts."""
    if isinstance(data, (torch.Tensor, int, float, bool)):
        return fn(data)
    if isinstance(data, Mapping):
        return type(data)({k: _apply_to_numbers(v, fn) for k, v in data.items()})
    if isinstance(data, (list, tuple)):
        items = [_apply_to_numbers(v, fn) for v in data]
        return type(data)(*items) if hasattr(data, "_fields") else type(data)(items)
    return data


_hook_installed = False


def _kill_children_on_uncaught_error() -> None:
    """If rank 0's program dies of an exception, the ranks it started would wait for it in their next collective
    until the timeout: stop them first (as the Trainer does when a run fails)."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(kind: type, error: BaseException, traceback: Any) -> None:
        launcher.kill_children()
        previous(kind, error, traceback)

    sys.excepthook = hook


class _SkipInit(torch.overrides.TorchFunctionMode):
    """``init_module(empty_init=True)``: torch.nn.init functions leave the tensor as allocated."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)
