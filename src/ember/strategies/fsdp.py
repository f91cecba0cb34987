"""Fully Sharded Data Parallel: each rank keeps 1/N of every parameter, gradient and optimizer state, and
gathers a unit's full parameters only while that unit runs. Built on FSDP2 (``torch.distributed.fsdp.fully_shard``);
the processes, the process group, the collectives and the stop vote are ``DDPStrategy``'s.

What ember adds around ``fully_shard``, and nothing more:
- sharding: ``fully_shard`` on each submodule that ``auto_wrap_policy`` picks (one all-gather per unit), then on
  the LightningModule itself (its remaining parameters); what the user already sharded in ``configure_model``
  is left as it is;
- ``training_step``, ``validation_step``, ``test_step`` and ``predict_step`` gather the root's parameters as
  ``forward`` does (``register_fsdp_forward_method``), so a step may call ``self.head(x)`` directly;
- a model created on the meta device gets memory and ``reset_parameters()`` values one unit at a time, just before
  that unit is sharded;
- checkpoints: ``state_dict_type="full"`` (the Trainer's default) gathers an ordinary checkpoint file on rank 0,
  which loads in one process without FSDP; ``"sharded"`` (Fabric's default) writes a folder in which every rank
  writes its own shard (``torch.distributed.checkpoint``), for models too large to gather. ``save_full`` and
  ``save_sharded`` write the Trainer's checkpoints and ``Fabric.save``'s; ``load_sharded`` reads Fabric's folders
  (keyed by the names given to ``fabric.save``) into set-up models and optimizers. The folders' writing and
  reading is ``strategies/fsdp_folders.py``.
"""
from __future__ import annotations

import datetime
import inspect
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
import torch.distributed as dist

from ember.strategies import fsdp_folders as folders
from ember.strategies.ddp import _DEFAULT_TIMEOUT, DDPStrategy
from ember.strategies.environment import ClusterEnvironment
from ember.strategies.fsdp_folders import _replace_folder, _ShardedOptimizerState, is_sharded_checkpoint

try:
    from torch.distributed.fsdp import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy,
                                        fully_shard, register_fsdp_forward_method)

    _FSDP2_AVAILABLE = True
except ImportError:  # torch < 2.6, or a build without distributed
    _FSDP2_AVAILABLE = False

_STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")
# name -> (hybrid mesh, reshard_after_forward); None: fully_shard's default (True, but False for the root, whose
# parameters backward needs first)
_SHARDING = {"FULL_SHARD": (False, None), "SHARD_GRAD_OP": (False, False), "HYBRID_SHARD": (True, None),
             "_HYBRID_SHARD_ZERO2": (True, False)}
# FSDP1 (FullyShardedDataParallel) arguments that Lightning passes on and FSDP2 has no equivalent for
_FSDP1_ONLY = {
    "use_orig_params": "FSDP2 always trains the original parameters; remove the argument",
    "limit_all_gathers": "FSDP2 limits in-flight all-gathers itself; remove the argument",
    "forward_prefetch": "after setup, call `module.set_modules_to_forward_prefetch([...])` on the sharded modules",
    "backward_prefetch": "FSDP2 prefetches the next unit in backward by default; for more, call "
                         "`module.set_modules_to_backward_prefetch([...])`",
    "param_init_fn": "create the layers on the meta device in `configure_model`, call `fully_shard` on them, then "
                     "`to_empty(device=...)` and initialise them there",
    "device_id": "ember places every rank on its device; remove the argument",
    "ignored_states": "pass `ignored_params={...}` (a set of parameters) instead",
    "activation_checkpointing": "renamed: pass `activation_checkpointing_policy={Block}`",
}


def _require_fsdp2() -> None:
    if not _FSDP2_AVAILABLE:
        raise RuntimeError(f"FSDPStrategy uses FSDP2 (`torch.distributed.fsdp.fully_shard`), which torch "
                           f"{torch.__version__} does not provide. Install torch >= 2.6, or use strategy='ddp'.")


class FSDPStrategy(DDPStrategy):
    """``Trainer(strategy="fsdp")``, or ``FSDPStrategy(...)`` with options; ``fully_shard`` from FSDP2 underneath.

    Args:
        auto_wrap_policy: which submodules become their own sharded unit (gathered and freed one at a time):
            a set of module classes (``{TransformerBlock}``), ``torch.distributed.fsdp.wrap.ModuleWrapPolicy``, or a
            callable ``policy(module) -> bool`` (FSDP1-style ``policy(module, recurse, nonwrapped_numel)`` works
            too). The LightningModule itself is always sharded, last. None: one unit, the whole model.
        activation_checkpointing_policy: module classes whose activations are recomputed in backward.
        cpu_offload: True (or ``CPUOffload(offload_params=True)``, or ``CPUOffloadPolicy()``) keeps the shards and
            the optimizer step on the CPU.
        mixed_precision: ``MixedPrecisionPolicy(param_dtype=..., reduce_dtype=...)`` (FSDP1's ``MixedPrecision``
            is converted: its ``buffer_dtype`` casts the buffers once).
        sharding_strategy: "FULL_SHARD" (default: parameters freed after forward, gathered again for backward),
            "SHARD_GRAD_OP" (kept gathered from forward to backward), "HYBRID_SHARD" / "_HYBRID_SHARD_ZERO2"
            (shard within a node, replicate across nodes). ``reshard_after_forward`` sets the same directly.
        state_dict_type: "full": checkpoints are ordinary files gathered on rank 0, readable with
            ``Model.load_from_checkpoint`` and ``torch.load`` in one process. "sharded": each checkpoint is a folder
            in which every rank writes its shard (``torch.distributed.checkpoint``); resume with
            ``trainer.fit(ckpt_path=folder)`` or ``fabric.load(folder, state)``; the folder must be on a file system
            every node sees. Not given: "full" under the Trainer, "sharded" under Fabric (Lightning's defaults).
        device_mesh: a ``DeviceMesh``, or a shape: ``(replicas, shards)`` for hybrid sharding.
        sync_module_states: broadcast rank 0's weights before sharding (when ranks were not seeded alike).
        **kwargs: passed to ``fully_shard`` (``shard_placement_fn``, ``ignored_params``, ...); ``ignored_modules``
            becomes ``ignored_params``.

    >>> import torch, ember
    >>> from ember.strategies.fsdp import FSDPStrategy
    >>> strategy = FSDPStrategy(auto_wrap_policy={torch.nn.TransformerEncoderLayer}, state_dict_type="sharded")
    >>> trainer = ember.Trainer(strategy=strategy, accelerator="cpu", devices=2, enable_progress_bar=False)
    >>> trainer.world_size
    2

    In ``configure_model`` a module may shard itself (sharded initialisation; FSDP leaves those units alone)::

        def configure_model(self):
            if self.blocks is None:  # called at every stage
                self.blocks = torch.nn.Sequential(*[Block() for _ in range(24)])
                for block in self.blocks:
                    fully_shard(block, mesh=self.trainer.strategy.device_mesh)
    """

    strategy_name = "fsdp"
    returns_module_to_cpu = False  # the shards stay where they are; validate/test reuse them
    save_needs_all_ranks = True  # gathering the weights (full) or writing the shards (sharded) needs every rank

    def __init__(self, accelerator: Any = None, parallel_devices: Any = None,
                 cluster_environment: Optional[ClusterEnvironment] = None, checkpoint_io: Any = None,
                 precision_plugin: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[datetime.timedelta] = _DEFAULT_TIMEOUT, cpu_offload: Any = None,
                 mixed_precision: Any = None, auto_wrap_policy: Any = None,
                 activation_checkpointing_policy: Any = None, sharding_strategy: Any = "FULL_SHARD",
                 state_dict_type: Optional[str] = None, device_mesh: Any = None, sync_module_states: bool = False,
                 **kwargs: Any) -> None:
        _require_fsdp2()
        super().__init__(accelerator=accelerator, parallel_devices=parallel_devices,
                         cluster_environment=cluster_environment, checkpoint_io=checkpoint_io,
                         precision_plugin=precision_plugin, process_group_backend=process_group_backend,
                         timeout=timeout)
        if state_dict_type not in (None, "full", "sharded"):
            raise ValueError(f"FSDPStrategy(state_dict_type={state_dict_type!r}) must be 'full' (one checkpoint file "
                             "gathered on rank 0) or 'sharded' (a folder, each rank writing its shard).")
        self.state_dict_type = state_dict_type or "full"
        self._state_dict_type_chosen = state_dict_type is not None
        self.auto_wrap_policy = _wrap_predicate(auto_wrap_policy, "auto_wrap_policy")
        self.activation_checkpointing_policy = _wrap_predicate(activation_checkpointing_policy,
                                                               "activation_checkpointing_policy")
        self.sync_module_states = sync_module_states
        self._hybrid, reshard = _sharding(sharding_strategy)
        self._mesh_arg = device_mesh
        self._mesh: Any = None
        self._buffer_dtype: Optional[torch.dtype] = None
        self._cpu_offload = False
        self._shard_kwargs = self._fully_shard_kwargs(kwargs, cpu_offload, mixed_precision, reshard)
        self._roots: Any = weakref.WeakSet()  # every module this strategy sharded (Fabric may set up several)

    def default_state_dict_type(self, kind: str) -> None:
        """Use ``kind`` unless the user passed ``state_dict_type``: Fabric's default is 'sharded', the Trainer's
        'full' (as in Lightning)."""
        if not self._state_dict_type_chosen:
            self.state_dict_type = kind

    def _fully_shard_kwargs(self, kwargs: dict, cpu_offload: Any, mixed_precision: Any,
                            reshard: Optional[bool]) -> dict:
        """The arguments every ``fully_shard`` call gets (the mesh is added at setup)."""
        accepted = set(inspect.signature(fully_shard).parameters) - {"module", "mesh"}
        for name in kwargs:
            if name in _FSDP1_ONLY:
                if name == "use_orig_params" and kwargs[name]:
                    continue  # what FSDP2 always does
                raise ValueError(f"FSDPStrategy({name}=...) is an FSDP1 argument with no FSDP2 equivalent: "
                                 f"{_FSDP1_ONLY[name]}.")
            if name not in accepted and name != "ignored_modules":
                raise ValueError(f"FSDPStrategy got an unknown argument {name!r}. It accepts Lightning's FSDPStrategy "
                                 "arguments (auto_wrap_policy, cpu_offload, mixed_precision, sharding_strategy, "
                                 "state_dict_type, activation_checkpointing_policy, device_mesh, timeout, "
                                 f"process_group_backend) and those of fully_shard: {sorted(accepted)}.")
        out = {k: v for k, v in kwargs.items() if k not in _FSDP1_ONLY}
        ignored_modules = out.pop("ignored_modules", None)
        if ignored_modules:
            out["ignored_params"] = set(out.get("ignored_params") or ()) | {
                p for m in ignored_modules for p in m.parameters()}
        if reshard is not None:
            out.setdefault("reshard_after_forward", reshard)
        if cpu_offload is not None and cpu_offload is not False:
            if "offload_policy" in out:
                raise ValueError("FSDPStrategy got both cpu_offload and offload_policy; pass one of them.")
            if isinstance(cpu_offload, OffloadPolicy):
                out["offload_policy"] = cpu_offload
            elif cpu_offload is True or getattr(cpu_offload, "offload_params", False):
                self._cpu_offload = True  # the policy is made in _shard: pinned memory only beside a GPU
        if mixed_precision is not None:
            if "mp_policy" in out:
                raise ValueError("FSDPStrategy got both mixed_precision and mp_policy; pass one of them.")
            if isinstance(mixed_precision, MixedPrecisionPolicy):
                out["mp_policy"] = mixed_precision
            elif all(hasattr(mixed_precision, a) for a in ("param_dtype", "reduce_dtype", "buffer_dtype")):  # FSDP1
                out["mp_policy"] = MixedPrecisionPolicy(param_dtype=mixed_precision.param_dtype,
                                                        reduce_dtype=mixed_precision.reduce_dtype)
                self._buffer_dtype = mixed_precision.buffer_dtype
            else:
                raise TypeError(f"FSDPStrategy(mixed_precision={mixed_precision!r}) must be a "
                                "torch.distributed.fsdp.MixedPrecisionPolicy(param_dtype=..., reduce_dtype=...).")
        return out

    # --- set-up ---------------------------------------------------------------------------------------------
    def setup_environment(self) -> None:
        super().setup_environment()
        if self._mesh is None:  # every rank builds it (a hybrid mesh creates process groups)
            self._mesh = self._build_mesh()

    def _build_mesh(self) -> Any:
        from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

        mesh = self._mesh_arg
        if isinstance(mesh, DeviceMesh):
            return mesh
        if mesh is None and self._hybrid:
            mesh = (self.num_nodes, self.world_size // self.num_nodes)
        if mesh is None:
            return init_device_mesh(self.root_device.type, (self.world_size,))
        shape = tuple(mesh)
        if len(shape) != 2 or shape[0] * shape[1] != self.world_size:
            raise ValueError(f"FSDPStrategy(device_mesh={mesh!r}) must be (replicas, shards) with replicas * shards "
                             f"= world_size ({self.world_size}).")
        return init_device_mesh(self.root_device.type, shape, mesh_dim_names=("replicate", "shard"))

    @property
    def device_mesh(self) -> Any:
        """The mesh the model is sharded over (hand it to ``fully_shard(..., mesh=...)`` in ``configure_model``)."""
        return self._mesh

    def setup_module(self, module: torch.nn.Module, training_step: Callable) -> Callable:
        """Shard ``module``; the returned training step gathers the root's parameters like ``forward`` does."""
        self._shard(module)
        if not callable(getattr(module, "training_step", None)):  # a plain module set up by Fabric
            return training_step
        from ember._utils import adapt_step

        return adapt_step(module.training_step)  # the method registered with FSDP, not the one passed in

    def setup_eval_module(self, module: torch.nn.Module) -> None:
        """validate/test/predict: the same sharding as for fit."""
        self._shard(module)

    def _shard(self, module: torch.nn.Module) -> None:
        if self._buffer_dtype is not None:
            for buf in module.buffers():
                if buf.is_floating_point():
                    buf.data = buf.data.to(self._buffer_dtype)
        if not isinstance(module, FSDPModule):
            if self.sync_module_states:
                for tensor in [*module.parameters(), *module.buffers()]:
                    if not _is_dtensor(tensor) and not tensor.is_meta:  # meta: initialised when materialised
                        dist.broadcast(tensor.data, src=0)
            if self.activation_checkpointing_policy is not None:
                from torch.distributed._composable import checkpoint  # keeps parameter names, unlike a wrapper

                for sub in list(module.modules()):
                    # not on units the user sharded: FSDP must come after checkpointing, not before
                    if sub is not module and not isinstance(sub, FSDPModule) and \
                            self.activation_checkpointing_policy(sub):
                        checkpoint(sub)
            kwargs = dict(self._shard_kwargs, mesh=self._mesh)
            if self._cpu_offload:
                kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=self.root_device.type == "cuda")
            device = self.root_device if not self._cpu_offload else torch.device("cpu")
            if self.auto_wrap_policy is not None:
                # bottom-up (reversed pre-order: children before parents); skip what the user sharded already
                for sub in reversed(list(module.modules())):
                    if sub is module or isinstance(sub, FSDPModule) or not self.auto_wrap_policy(sub):
                        continue
                    params = list(sub.parameters())
                    if params and not any(_is_dtensor(p) for p in params):
                        _materialize(sub, device)
                        fully_shard(sub, **kwargs)
            _materialize(module, device)
            fully_shard(module, **kwargs)
        for name in _STEP_METHODS:
            if hasattr(module, name):
                register_forward_method(module, name)
        self._roots.add(module)
        self.model = module

    def teardown(self) -> None:
        if self.stop_vote is not None:
            self.stop_vote.drain()
        # self.model stays: the module stays sharded after fit, and trainer.save_checkpoint() after fit gathers it
        # (and its optimizer's state) through this strategy

    def set_grad_sync(self, enabled: bool) -> None:  # type: ignore[override]
        """False on the batches of an accumulation window that do not step: no reduce-scatter until the step."""
        self.model.set_requires_gradient_sync(enabled)

    # --- state ------------------------------------------------------------------------------------------------
    def lightning_module_state_dict(self, module: torch.nn.Module) -> dict:
        """Full: the whole state dict on rank 0 (on the CPU), ``{}`` elsewhere. Sharded: this rank's DTensors."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        if not is_sharded_module(module):
            return module.state_dict()
        return get_model_state_dict(module, options=self._save_options())

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """Full: torch's usual ``optimizer.state_dict()`` layout (parameters numbered), on rank 0. Sharded: keyed
        by parameter name, holding this rank's shards."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        module = self.module_of(optimizer)
        if module is None:
            return optimizer.state_dict()
        state = get_optimizer_state_dict(module, optimizer, options=self._save_options())
        if self.state_dict_type == "sharded":
            return state
        return _numbered(state) if self.is_global_zero else {}

    def _save_options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        full = self.state_dict_type == "full"
        return StateDictOptions(full_state_dict=full, cpu_offload=full)

    def load_model_state_dict(self, module: torch.nn.Module, state: dict, strict: bool = True) -> None:
        """A full state dict (a checkpoint file) is scattered from rank 0; a sharded one was read in place."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        if not is_sharded_module(module):
            module.load_state_dict(state, strict=strict)
            return
        full = not any(_is_dtensor(v) for v in state.values())
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=full, broadcast_from_rank0=full,
                                                                     strict=strict))

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: Any) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if isinstance(state, _ShardedOptimizerState):
            state = folders.read_sharded_optimizer(self, optimizer, state)
            set_optimizer_state_dict(self.model, optimizer, state)
            return
        module = self.module_of(optimizer)
        if module is None:
            optimizer.load_state_dict(state)
            return
        if any(_is_dtensor(v) for entry in state.get("state", {}).values() if isinstance(entry, dict)
               for v in entry.values()):  # a sharded state, read in place from a folder
            set_optimizer_state_dict(module, optimizer, state)
            return
        state = _named(state, self._parameter_names(optimizer, module))
        set_optimizer_state_dict(module, optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        for group, saved in zip(optimizer.param_groups, state["param_groups"]):  # the scatter made tuples lists
            for key, value in saved.items():
                if isinstance(value, tuple) and isinstance(group.get(key), list):
                    group[key] = value

    def module_of(self, optimizer: torch.optim.Optimizer) -> Optional[torch.nn.Module]:
        """The sharded module whose parameters ``optimizer`` updates (None when it updates no sharded module)."""
        params = {id(p) for group in optimizer.param_groups for p in group["params"]}
        roots = [self.model] if self.model is not None else []
        roots += [m for m in list(self._roots) if m is not self.model]
        for root in roots:
            if is_sharded_module(root) and any(id(p) in params for p in root.parameters()):
                return root
        return None

    def _parameter_names(self, optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> list:
        """The state-dict name of each of ``optimizer``'s parameters, in its order."""
        names = {id(p): _state_dict_name(n) for n, p in module.named_parameters()}
        try:
            return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        except KeyError:
            raise ValueError("The optimizer holds a parameter that is not in the model; FSDP can restore the state "
                             "only of the model's own parameters.") from None

    # --- checkpoint files -------------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint: dict, filepath: Any) -> None:
        """Full: rank 0 writes one file. Sharded: every rank writes its shard into a temporary folder beside
        ``filepath``, rank 0 adds ``meta.pt`` (the rest of the checkpoint) and renames the folder."""
        if not any(_is_dtensor(v) for v in checkpoint.get("state_dict", {}).values()):  # gathered, or never sharded
            self.save_full(checkpoint, filepath)
            return
        tensors = {"state_dict": checkpoint["state_dict"]}
        optimizers = checkpoint.get("optimizer_states")
        for i, state in enumerate(optimizers or ()):
            tensors[f"optimizer_{i}"] = state
        meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}
        meta["ember_sharded"] = {"optimizers": None if optimizers is None else len(optimizers)}
        self.save_sharded(tensors, meta, filepath)

    def save_full(self, checkpoint: dict, filepath: Any) -> None:
        """Rank 0 writes ``checkpoint`` (gathered: no shards in it) to one file, atomically. A sharded checkpoint
        folder of that name is replaced; any other folder is an error."""
        path = Path(filepath)
        if path.is_dir() and not is_sharded_checkpoint(path):  # on every rank: none is left waiting for rank 0
            raise IsADirectoryError(f"Cannot write the checkpoint file {path}: a folder of that name exists and it is "
                                    "not a sharded checkpoint. Choose another path, or remove the folder.")
        if not self.is_global_zero:
            return
        if not path.is_dir():
            super().save_checkpoint(checkpoint, path)
            return
        from ember._checkpoint_io import atomic_save, note_written

        staged = path.with_name(f".{path.name}.new")
        atomic_save(checkpoint, staged)
        _replace_folder(staged, path)
        note_written(path)

    def save_sharded(self, tensors: dict, meta: dict, filepath: Any) -> None:
        """Every rank writes its shards of ``tensors`` (state dicts holding DTensors) with
        ``torch.distributed.checkpoint`` into a temporary folder beside ``filepath``; rank 0 adds ``meta.pt``
        (``meta``: plain data, read with ``torch.load(weights_only=True)``) and renames the folder, so a crash
        leaves the previous checkpoint whole. Call it on every rank."""
        folders.save_sharded(self, tensors, meta, filepath)

    def load_sharded(self, path: Any, objects: dict, strict: bool = True,
                     weights_only: Optional[bool] = None) -> dict:
        """Restore ``objects`` (key -> sharded module or optimizer, the keys they were saved under) from the
        folder ``path`` written by ``save_sharded``, each rank reading its own shards in place; returns the
        folder's ``meta.pt``. ``strict=False``: keys and entries the folder lacks are left as they are."""
        return folders.load_sharded(self, path, objects, strict, weights_only)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Optional[bool] = None) -> dict:
        """A file: every rank maps it (``mmap``); only rank 0's copy is read and scattered. A folder: every rank
        reads its own shard of the model; the optimizers' shards when they are restored. ``weights_only=False``
        (the caller's explicit choice) unpickles a file fully; a folder holds no pickled objects."""
        from ember._checkpoint_io import load_checkpoint

        path = Path(path)
        if not path.is_dir() and weights_only is False:
            return load_checkpoint(path, "cpu", weights_only=False)
        if not path.is_dir():
            try:  # mmap: ranks other than 0 never read the tensors (they receive them from rank 0)
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                checkpoint = None
            return checkpoint if isinstance(checkpoint, dict) else load_checkpoint(path, "cpu")  # its messages
        return folders.read_checkpoint_folder(self, path)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_roots"] = None  # a WeakSet does not pickle; a copy of the strategy has sharded nothing
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._roots = weakref.WeakSet()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(world_size={self.world_size}, global_rank={self.global_rank}, "
                f"device={self.root_device}, state_dict_type={self.state_dict_type!r})")


# --- helpers -----------------------------------------------------------------------------------------------------
def register_forward_method(module: torch.nn.Module, name: str) -> None:
    """``module.<name>(...)`` gathers the root's parameters as ``forward`` does (FSDP2's
    ``register_fsdp_forward_method``), once per method: registering twice would gather twice."""
    registered = module.__dict__.setdefault("_ember_fsdp_methods", set())
    if name in registered:
        return
    method = getattr(type(module), name, None)
    signature = inspect.signature(method) if callable(method) else None
    register_fsdp_forward_method(module, name)
    if signature is not None:
        # the wrapper's signature is the bound method's, minus one more parameter once bound; give it the method's
        # own, so that ember sees whether the step takes batch_idx
        getattr(module, name).__func__.__signature__ = signature
    registered.add(name)


def has_meta_tensors(module: torch.nn.Module) -> bool:
    """Whether ``module`` holds parameters or buffers on the meta device (``fabric.init_module(empty_init=True)``,
    or ``torch.device("meta")``): they get memory and values when the module is sharded."""
    return any(t.is_meta for t in (*module.parameters(), *module.buffers()))


def _materialize(unit: torch.nn.Module, device: torch.device) -> None:
    """Give the meta-device tensors of ``unit`` (not of units sharded already) memory on ``device`` and initial
    values from each submodule's ``reset_parameters()``, just before ``unit`` is sharded: one unit at a time is
    whole in memory, as in Lightning (FSDP1 materialises, resets and shards each unit bottom-up)."""
    with torch.no_grad():
        for sub in unit.modules():
            own = [*sub.parameters(recurse=False), *sub.buffers(recurse=False)]
            if not any(t.is_meta for t in own):
                continue
            sub.to_empty(device=device, recurse=False)
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()


def _is_dtensor(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def is_sharded_module(module: Any) -> bool:
    """Whether ``module`` is, or holds, a module sharded by ``fully_shard``."""
    return isinstance(module, torch.nn.Module) and any(isinstance(m, FSDPModule) for m in module.modules())



def _state_dict_name(name: str) -> str:
    """A parameter's name as state dicts spell it (without torch.compile's and checkpoint wrappers' prefixes)."""
    return name.replace("_orig_mod.", "").replace("_checkpoint_wrapped_module.", "")


def _numbered(state: dict) -> dict:
    """An optimizer state keyed by parameter name -> torch's ``optimizer.state_dict()`` layout (0, 1, 2... in
    param-group order), which a plain optimizer in one process loads."""
    index: dict = {}
    groups = []
    for group in state["param_groups"]:
        groups.append({**group, "params": [index.setdefault(name, len(index)) for name in group["params"]]})
    return {"state": {index[name]: value for name, value in state["state"].items()}, "param_groups": groups}


def _named(state: dict, names: list) -> dict:
    """The inverse of ``_numbered`` for an optimizer whose parameters are named ``names``, in order."""
    numbered = [i for group in state["param_groups"] for i in group["params"]]
    if len(numbered) != len(names) or any(isinstance(i, str) for i in numbered):
        if all(isinstance(i, str) for i in numbered):
            return state  # already keyed by name
        raise ValueError(f"The checkpoint's optimizer state has {len(numbered)} parameters but the optimizer has "
                         f"{len(names)}; resume with the same model and configure_optimizers.")
    rename = dict(zip(numbered, names))
    return {"state": {rename[i]: value for i, value in state["state"].items()},
            "param_groups": [{**g, "params": [rename[i] for i in g["params"]]} for g in state["param_groups"]]}


def _wrap_predicate(policy: Any, name: str) -> Optional[Callable[[torch.nn.Module], bool]]:
    """``auto_wrap_policy`` in any of Lightning's forms -> ``predicate(module) -> bool`` (None: wrap nothing)."""
    if policy is None:
        return None
    classes = getattr(policy, "_module_classes", None)  # torch.distributed.fsdp.wrap.ModuleWrapPolicy
    if isinstance(policy, type) and issubclass(policy, torch.nn.Module):
        classes = {policy}
    elif isinstance(policy, Iterable) and not isinstance(policy, (str, bytes)):
        classes = set(policy)
    if classes is not None:
        bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, torch.nn.Module))]
        if bad:
            raise TypeError(f"FSDPStrategy({name}=...) must hold module classes, such as {{Block}} (the class "
                            f"itself, not its name); it holds {', '.join(repr(c) for c in bad)}.")
        classes = tuple(classes)
        return lambda module: isinstance(module, classes)
    if callable(policy):
        try:
            fsdp1_style = len(inspect.signature(policy).parameters) >= 3  # (module, recurse, nonwrapped_numel)
        except (TypeError, ValueError):
            fsdp1_style = False
        if fsdp1_style:
            return lambda module: bool(policy(module=module, recurse=False,
                                              nonwrapped_numel=sum(p.numel() for p in module.parameters())))
        return lambda module: bool(policy(module))
    raise TypeError(f"FSDPStrategy({name}={policy!r}) must be a set of module classes (e.g. {{Block}}), a "
                    "ModuleWrapPolicy, or a callable `policy(module) -> bool`.")


def _sharding(strategy: Any) -> tuple:
    name = getattr(strategy, "name", strategy)  # torch.distributed.fsdp.ShardingStrategy or its name
    if isinstance(name, str) and name.upper() in _SHARDING:
        return _SHARDING[name.upper()]
    if isinstance(name, str) and name.upper() == "NO_SHARD":
        raise ValueError("FSDPStrategy(sharding_strategy='NO_SHARD') keeps a full replica on every rank: that is "
                         "DDP. Use Trainer(strategy='ddp').")
    raise ValueError(f"FSDPStrategy(sharding_strategy={strategy!r}) must be one of {sorted(_SHARDING)}.")



