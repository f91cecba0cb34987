"""``Fabric``: Lightning's API for people who keep their own training loop and want devices, precision, distributed
processes and checkpoints handled. It is built on the Trainer's own pieces, so one fix serves both:
``resolve_devices`` and ``Precision`` (``accelerators.py``), the strategies and their launcher (``strategies/``),
``resolve_strategy`` for names like 'ddp', and ``atomic_save``/``load_checkpoint`` (``_checkpoint_io.py``).
Under FSDP the sharding, the state-dict gathering and the sharded checkpoint folders are ``FSDPStrategy``'s
(``strategies/fsdp.py``), the same code the Trainer runs; under ddp_spawn, ``launch(function)`` starts the
processes itself (``fabric/processes.py``: the Trainer's spawn hands back a Trainer's run, Fabric a function's
result). ``fabric.save``/``load`` are ``fabric/checkpoints.py``.
"""
from __future__ import annotations

import contextlib
import inspect
import types
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import torch

from ember.accelerators import Precision, resolve_devices
from ember.fabric import checkpoints, processes
from ember.seed import add_worker_seeding
from ember.fabric.wrappers import (_default_dtype, _FabricDataLoader, _FabricModule, _FabricOptimizer,
                                   _forward_context, _unwrap, _unwrap_compiled)
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

        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        check_int("num_nodes", num_nodes, 1, owner="Fabric")
        device_type, device_indices = resolve_devices(accelerator, devices, owner="Fabric")
        self._strategy: Strategy = resolve_strategy(strategy, device_type, device_indices, num_nodes,
                                                    devices_given=devices not in ("auto", None), plugins=plugins,
                                                    owner="Fabric")
        self._sharded = _is_fsdp(self._strategy)
        if self._sharded:
            self._strategy.default_state_dict_type("sharded")  # Lightning's Fabric default (the Trainer's: 'full')
        # FSDP replaces a module's parameters with sharded ones: id(old parameter) -> (weak ref to it, its successor),
        # so that an optimizer created before sharding can be pointed at the parameters it must update
        self._resharded: dict = {}
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
    def accelerator(self) -> Any:
        """The kind of device, as Lightning's accelerator objects: ``CPUAccelerator()``, ``CUDAAccelerator()`` or
        ``MPSAccelerator()`` (``fabric.accelerator.auto_device_count()``, ``.get_device_stats(fabric.device)``)."""
        from ember._accelerator_api import CPUAccelerator, CUDAAccelerator, MPSAccelerator

        kinds = {"cuda": CUDAAccelerator, "mps": MPSAccelerator}
        return kinds.get(self.device.type, CPUAccelerator)()

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

        With ``strategy="ddp_spawn"`` (or ``start_method="spawn"``/``"fork"``), ``function`` is required: it runs in
        N new processes, and ``launch`` returns what it returned on rank 0 (the Fabric, the function and its
        arguments are pickled to the new processes under 'spawn').
        """
        if function is not None:
            if not callable(function):
                raise TypeError(f"fabric.launch({function!r}): pass the function itself, not its result: "
                                "`fabric.launch(train)`, not `fabric.launch(train())`.")
            if not _takes_an_argument(function):
                raise TypeError(f"fabric.launch({getattr(function, '__name__', function)}): the function must take "
                                "the Fabric object as its first argument: `def train(fabric): ...`.")
        if self._spawns():
            if function is None:
                method = self._strategy.start_method
                raise TypeError(
                    f"fabric.launch() with {type(self._strategy).__name__}(start_method={method!r}) "
                    f"(strategy='ddp_spawn') starts new processes that run a function: pass it, "
                    "`fabric.launch(train)` with `def train(fabric): ...` holding the training code. Or use "
                    "strategy='ddp', where launch() re-runs the script and the code after it runs in every process.")
            return processes.spawn(self, function, args, kwargs)
        if not self._launched:
            self._strategy.setup_environment()  # DDP: start the other local processes if nobody else did, and join
            self._launched = True
            if self.world_size > 1 and not self._spawned:
                processes.kill_children_on_uncaught_error()
        return None if function is None else function(self, *args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Override in a subclass to put the training code here; calling ``fabric.run(...)`` launches first."""

    def _launched_run(self, run: Callable) -> Callable:
        def launched(*args: Any, **kwargs: Any) -> Any:
            if self._spawns():  # the class's run(fabric, ...) in each new process
                return processes.spawn(self, type(self).run, args, kwargs)
            self.launch()
            return run(*args, **kwargs)
        return launched

    def _spawns(self) -> bool:
        """Whether ``launch`` starts new processes (ddp_spawn) rather than joining this one to the group."""
        return bool(getattr(self._strategy, "spawns_processes", False)) and not self._spawned

    _spawned = False  # True in a process started by launch(function) under ddp_spawn

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("run", None)  # the launching wrapper of a subclass's run(): made again when unpickled
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if type(self).run is not Fabric.run:
            self.run = self._launched_run(types.MethodType(type(self).run, self))  # type: ignore[method-assign]

    def _check_launched(self, what: str) -> None:
        if not self._launched and not isinstance(self._strategy, SingleDeviceStrategy):
            if self._spawns():
                raise RuntimeError(
                    f"fabric.{what} was called in the process that starts the others: with "
                    f"strategy='ddp_spawn' the training code runs in the processes that fabric.launch(train) "
                    f"starts. Move it into that function: `def train(fabric): ...` (it gets the Fabric as its "
                    "argument), then `fabric.launch(train)`.")
            raise RuntimeError(
                f"fabric.{what} was called before fabric.launch(): with {self.world_size} processes "
                f"({type(self._strategy).__name__}), launch() starts or joins the other processes and sets up the "
                "process group. Call fabric.launch() right after creating the Fabric.")

    # --- set-up ----------------------------------------------------------------------------------------------
    def setup(self, module: torch.nn.Module, *optimizers: torch.optim.Optimizer, scheduler: Any = None,
              move_to_device: bool = True, _reapply_compile: bool = True) -> Any:
        """The module (and optimizers) ready for training: moved to the device, converted to the precision, wrapped
        by the strategy (DDP) or sharded in place (FSDP: optimizers created before then are pointed at the sharded
        parameters). Returns the module alone, or ``(module, *optimizers)`` (then the scheduler if given)."""
        self._check_optimizers(optimizers, "setup")
        if self._sharded:
            _check_no_state_to_reshard(_unwrap(module), optimizers)
        wrapped = self._setup_module(module, move_to_device, "setup")
        wrapped_optimizers = [self._wrap_optimizer(self._follow_sharding(o, "setup")) for o in optimizers]
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
        wrapped = tuple(self._wrap_optimizer(self._follow_sharding(o, "setup_optimizers")) for o in optimizers)
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
        if self._sharded:  # sharding moves each shard to the device (and gives meta-device tensors memory)
            before = {name: p for name, p in original.named_parameters()}
        elif move_to_device:
            original.to(self.device)
        strategy_wrapper = self._strategy.setup_module(original, wrapped._run)  # DDP: a wrapper calling _run
        if isinstance(strategy_wrapper, torch.nn.Module):
            wrapped._set_wrapper(strategy_wrapper)
        if self._sharded:
            wrapped._set_sharded()
            after = dict(original.named_parameters())
            for name, old in before.items():
                new = after.get(name)
                if new is not None and new is not old:
                    self._resharded[id(old)] = (weakref.ref(old), new)
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

    def _follow_sharding(self, optimizer: torch.optim.Optimizer, what: str) -> torch.optim.Optimizer:
        """Under FSDP: an optimizer created before the model was set up holds the parameters that sharding replaced;
        point it at the sharded ones, in place (as Lightning's FSDP with ``use_orig_params=True`` lets it work)."""
        if not self._sharded:
            return optimizer
        stale = []
        for group in optimizer.param_groups:
            for i, param in enumerate(group["params"]):
                entry = self._resharded.get(id(param))
                if entry is not None and entry[0]() is param:
                    stale.append((group["params"], i, entry[1]))
        with_state = [params[i] for params, i, _ in stale if optimizer.state.get(params[i])]
        if with_state:
            raise ValueError(_reshard_state_message(what, len(with_state)))
        for params, i, new in stale:
            params[i] = new
        meta = [p for group in optimizer.param_groups for p in group["params"] if p.is_meta]
        if meta:
            raise RuntimeError(
                f"fabric.{what}(): the optimizer holds {len(meta)} parameter(s) on the meta device that belong to no "
                "model set up by this Fabric, so they never get memory. Create the optimizer from the model that "
                "fabric.setup_module returned: `model = fabric.setup_module(model)`, then "
                "`optimizer = fabric.setup_optimizers(torch.optim.AdamW(model.parameters()))`.")
        return optimizer

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
        if self._precision.scaler is None:  # nothing to scale: the loss's own backward
            tensor.backward(*args, **kwargs)
            return
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
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type,
                                              error_if_nonfinite=error_if_nonfinite)
        # FSDP: the norm of sharded gradients is a (replicated) DTensor; the caller gets a plain tensor
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def autocast(self) -> Any:
        """The precision's context for code outside the model's forward (autocast under '*-mixed')."""
        return _forward_context(self._precision)

    def no_backward_sync(self, module: Any, enabled: bool = True) -> Any:
        """Under DDP and FSDP, backward inside this block keeps gradients local (gradient accumulation: sync only on
        the step's last batch). Both the forward and ``fabric.backward`` must run inside it."""
        if not isinstance(_unwrap_compiled(module), _FabricModule):
            raise TypeError("fabric.no_backward_sync(model) needs the model returned by fabric.setup: "
                            "`model = fabric.setup(model, ...)`, then `with fabric.no_backward_sync(model): ...`.")
        if enabled and _unwrap_compiled(module)._sharded:
            return _fsdp_no_sync(_unwrap_compiled(module).module)
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
        ``empty_init=True`` also skips their initialisation (for weights about to be loaded).

        Under FSDP (as Lightning): ``empty_init=True`` creates them on the meta device, with no memory at all; each
        unit gets memory and ``reset_parameters()`` values just before it is sharded, in ``setup``. Otherwise the
        model is created on the CPU, and sharding moves each shard to the device."""
        self._check_launched("init_module()")
        if self._sharded:
            with torch.device("meta") if empty_init else contextlib.nullcontext(), \
                    _default_dtype(self._precision.param_dtype):
                yield
            return
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

        return seed_everything(seed, workers=True if workers is None else workers, verbose=verbose)

    # --- checkpoints (fabric/checkpoints.py) -------------------------------------------------------------------
    def save(self, path: Union[str, Path], state: Mapping[str, Any], filter: Optional[Mapping] = None) -> None:
        """Write ``state`` to ``path`` from rank 0, atomically (a crash leaves the previous file whole): modules
        and optimizers as their state dicts, objects with ``state_dict()`` as theirs, everything else as it is.
        ``filter={"model": fn}`` keeps the entries of that state dict for which ``fn(name, value)`` is True.
        Call it on every rank.

        Under FSDP with ``state_dict_type="sharded"`` (Fabric's default there) ``path`` becomes a folder: every rank
        writes its shards of the sharded models and their optimizers (``torch.distributed.checkpoint``), rank 0 the
        rest to ``meta.pt``; the folder is written under a temporary name and renamed when complete. With
        ``state_dict_type="full"`` the weights and optimizer states are gathered on rank 0 into one ordinary file
        that loads in one process with ``torch.load(path, weights_only=True)``."""
        self._check_launched("save()")
        checkpoints.save(self, path, state, filter)

    def load(self, path: Union[str, Path], state: Optional[dict] = None, strict: bool = True, *,
             weights_only: Optional[bool] = None) -> dict:
        """Read a file written by ``fabric.save``. With ``state``, restore each object in it in place (modules,
        optimizers, objects with ``load_state_dict``; plain values are replaced in the dict) and return what the
        file holds beyond ``state``; without, return the whole checkpoint. Read with ``weights_only=True`` unless
        you pass False for a file you trust.

        Under FSDP a full checkpoint file is read on rank 0 and scattered into the sharded model; a sharded folder is
        read shard by shard on every rank into the models and optimizers of ``state`` (which it needs)."""
        self._check_launched("load()")
        return checkpoints.load(self, path, state, strict, weights_only)

    def load_raw(self, path: Union[str, Path], obj: Any, strict: bool = True, *,
                 weights_only: Optional[bool] = None) -> None:
        """Load a plain ``torch.save(model.state_dict())`` (or an optimizer's) file into ``obj``."""
        self._check_launched("load_raw()")
        checkpoints.load_raw(self, path, obj, strict, weights_only)

def _check_no_state_to_reshard(module: torch.nn.Module, optimizers: tuple) -> None:
    """``fabric.setup(model, optimizer)`` under FSDP: an optimizer that has already stepped holds state for the
    parameters sharding is about to replace, and that state cannot follow them: fail before anything is sharded."""
    params = {id(p) for p in module.parameters()}
    for optimizer in optimizers:
        count = sum(1 for p, s in optimizer.state.items() if s and id(p) in params)
        if count:
            raise ValueError(_reshard_state_message("setup", count))


def _reshard_state_message(what: str, count: int) -> str:
    return (f"fabric.{what}(): under FSDP the optimizer already holds state for {count} of the model's parameters "
            "(it has taken steps), and sharding replaces those parameters, so their state cannot follow them. Create "
            "the optimizer after the model is set up, before any step: `model = fabric.setup_module(model)`, then "
            "`optimizer = fabric.setup_optimizers(torch.optim.AdamW(model.parameters()))`. To continue from saved "
            "optimizer state, restore it afterwards: `fabric.load(path, {'model': model, 'optimizer': optimizer})`.")


def _is_fsdp(strategy: Any) -> bool:
    name = strategy if isinstance(strategy, str) else getattr(strategy, "strategy_name", "")
    return isinstance(name, str) and name.lower().startswith("fsdp")


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


@contextlib.contextmanager
def _fsdp_no_sync(module: torch.nn.Module) -> Iterator[None]:
    """FSDP2: gradients computed inside stay unsharded and local (no reduce-scatter) until a backward outside."""
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


class _SkipInit(torch.overrides.TorchFunctionMode):
    """``init_module(empty_init=True)``: torch.nn.init functions leave the tensor as allocated."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)
