"""DistributedDataParallel: one process per device, each with a full replica; gradients are averaged by
torch's DDP during backward. Started by torchrun, srun, or ember itself (``launcher.py``).

What ember adds around ``torch.nn.parallel.DistributedDataParallel``, and nothing more:
- joining the process group from the environment (``environment.py``), once per process;
- the training step runs through the DDP wrapper (that is what lets DDP hook the backward);
  evaluation steps call the module directly, so no rank waits on another during evaluation;
- ``set_grad_sync(False)`` on accumulation batches (DDP's ``no_sync``): they do not all-reduce;
- a stop vote: every rank leaves the epoch at the same batch (a signal, max_time or should_stop on any
  rank) without a blocking collective per step (``StopVote``).
"""
from __future__ import annotations

import atexit
import gc
import datetime
import os
import time
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from ember.strategies import launcher
from ember.strategies.environment import (ClusterEnvironment, LightningEnvironment, check_environment,
                                          detect_environment)
from ember.strategies.sampler import distribute_loader
from ember.strategies.strategy import Strategy

_DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # torch's default; a dead rank ends the others within it


class _StepWrapper(torch.nn.Module):
    """What DDP wraps: its forward is the LightningModule's training_step (state_dict keys are not used)."""

    def __init__(self, module: torch.nn.Module, training_step: Callable) -> None:
        super().__init__()
        self.module = module
        self._step = training_step

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._step(*args, **kwargs)


class DDPStrategy(Strategy):
    """``Trainer(strategy="ddp")`` with options: ``DDPStrategy(find_unused_parameters=True, timeout=...)``.

    Extra keyword arguments go to ``torch.nn.parallel.DistributedDataParallel`` (``static_graph``,
    ``gradient_as_bucket_view``, ``bucket_cap_mb``, ``broadcast_buffers``...).

    >>> import ember
    >>> from ember.strategies import DDPStrategy
    >>> trainer = ember.Trainer(strategy=DDPStrategy(find_unused_parameters=True), accelerator="cpu", devices=2,
    ...                         enable_progress_bar=False)
    >>> trainer.world_size
    2
    """

    strategy_name = "ddp"

    def __init__(self, accelerator: Any = None, parallel_devices: Any = None,
                 cluster_environment: Optional[ClusterEnvironment] = None, checkpoint_io: Any = None,
                 precision_plugin: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[datetime.timedelta] = _DEFAULT_TIMEOUT, start_method: str = "popen",
                 **ddp_kwargs: Any) -> None:
        super().__init__()
        if start_method not in ("popen", "spawn", "fork", "forkserver"):
            raise ValueError(f"DDPStrategy(start_method={start_method!r}) must be 'popen' (ember re-runs the script), "
                             "'spawn', 'fork' or 'forkserver' (torch.multiprocessing).")
        self.cluster_environment = cluster_environment
        self.process_group_backend = process_group_backend
        self.timeout = timeout or _DEFAULT_TIMEOUT
        self.start_method = start_method
        self.sync_batchnorm = False
        self._ddp_kwargs = ddp_kwargs
        self._num_devices = 1
        self._num_nodes = 1
        self._devices_given = True
        self._accelerator = "cpu"
        self._device_indices: list = [0]

    # --- where this process stands ---------------------------------------------------------------------------
    def _configure(self, accelerator: str, device_indices: list, num_nodes: int, devices_given: bool) -> None:
        if self.cluster_environment is None:
            self.cluster_environment = detect_environment(len(device_indices), num_nodes)
        env = self.cluster_environment
        if not devices_given and not isinstance(env, LightningEnvironment):  # devices="auto" under torchrun/srun
            per_node = max(env.world_size() // max(num_nodes, 1), 1)
            device_indices = list(range(per_node)) if accelerator == "cuda" else [0] * per_node
        self._accelerator = accelerator
        self._device_indices = device_indices
        self._num_devices = len(device_indices)
        self._num_nodes = num_nodes
        self._devices_given = devices_given
        env.num_devices, env.num_nodes = self._num_devices, num_nodes

    @property
    def world_size(self) -> int:  # type: ignore[override]
        return self._num_devices * self._num_nodes if isinstance(self.cluster_environment, LightningEnvironment) \
            else self.cluster_environment.world_size()

    @property
    def global_rank(self) -> int:  # type: ignore[override]
        return self.cluster_environment.global_rank()

    @property
    def local_rank(self) -> int:  # type: ignore[override]
        return self.cluster_environment.local_rank()

    @property
    def node_rank(self) -> int:  # type: ignore[override]
        return self.cluster_environment.node_rank()

    @property
    def num_nodes(self) -> int:  # type: ignore[override]
        return self._num_nodes

    @property
    def num_processes(self) -> int:  # type: ignore[override]
        return self._num_devices

    @property
    def spawns_processes(self) -> bool:  # type: ignore[override]
        return self.start_method != "popen" and "LOCAL_RANK" not in os.environ

    @property
    def root_device(self) -> torch.device:
        if self._accelerator == "cuda":
            return torch.device("cuda", self._device_indices[self.local_rank % len(self._device_indices)])
        return torch.device(self._accelerator)

    # --- set-up ---------------------------------------------------------------------------------------------
    def setup_environment(self) -> None:
        """Start the other local processes if nobody else does, then join the process group (once)."""
        if dist.is_available() and dist.is_initialized():
            self._check_joined_group()
            return
        env = self.cluster_environment
        check_environment(env, self._num_devices if self._devices_given else None, self._num_nodes)
        if not env.creates_processes_externally:
            if self.start_method != "popen":
                raise RuntimeError(f"DDPStrategy(start_method={self.start_method!r}) starts its processes in "
                                   "Trainer.fit; this process was not started by it.")
            launcher.launch_children(self._num_devices, self._num_nodes, env.node_rank(), env.main_address,
                                     env.main_port)
        os.environ.setdefault("MASTER_ADDR", env.main_address)
        os.environ.setdefault("MASTER_PORT", str(env.main_port))
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)
        backend = self.process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")
        self.process_group_backend = backend
        dist.init_process_group(backend, rank=self.global_rank, world_size=self.world_size, timeout=self.timeout)
        atexit.register(leave_process_group)
        self.stop_vote = _new_stop_vote(backend)
        from ember.utilities.rank_zero import rank_zero_only

        rank_zero_only.rank = self.global_rank

    def _check_joined_group(self) -> None:
        if dist.get_world_size() != self.world_size:
            raise RuntimeError(f"A process group of {dist.get_world_size()} processes already exists, but this Trainer "
                               f"asks for {self.world_size}; use the same devices/num_nodes in every Trainer.")
        if self.stop_vote is None:
            self.process_group_backend = dist.get_backend()
            self.stop_vote = _new_stop_vote(self.process_group_backend)

    def setup_module(self, module: torch.nn.Module, training_step: Callable) -> Callable:
        if self.sync_batchnorm:
            if self.root_device.type != "cuda":
                raise ValueError("Trainer(sync_batchnorm=True) needs GPUs: torch's SyncBatchNorm only runs on CUDA "
                                 f"devices, and this run uses {self.root_device.type}. Remove sync_batchnorm=True.")
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # swaps BatchNorm children in place
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        self.model = torch.nn.parallel.DistributedDataParallel(_StepWrapper(module, training_step),
                                                               device_ids=device_ids, **self._ddp_kwargs)
        return self.model

    def process_dataloader(self, loader: Any, train: bool) -> Any:
        return distribute_loader(loader, self.world_size, self.global_rank, train)

    def set_grad_sync(self, enabled: bool) -> None:  # type: ignore[override]
        """False on the batches of an accumulation window that do not step: they keep gradients local."""
        self.model.require_backward_grad_sync = enabled

    def teardown(self) -> None:
        if self.stop_vote is not None:
            self.stop_vote.drain()
        self.model = None

    # --- collectives ------------------------------------------------------------------------------------------
    def barrier(self, name: Optional[str] = None) -> None:
        if dist.is_initialized():
            dist.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        if not isinstance(tensor, torch.Tensor) or not dist.is_initialized():
            return tensor
        op = str(reduce_op).lower() if not isinstance(reduce_op, dist.ReduceOp) else reduce_op
        out = tensor.detach().clone()
        if op in ("mean", "avg", "sum", dist.ReduceOp.SUM):
            dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
            if op in ("mean", "avg"):
                out = out / dist.get_world_size(group)
            return out
        if op in ("max", "min"):
            dist.all_reduce(out, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN, group=group)
            return out
        if isinstance(op, dist.ReduceOp):
            dist.all_reduce(out, op=op, group=group)
            return out
        raise ValueError(f"reduce(reduce_op={reduce_op!r}) must be 'mean', 'sum', 'max' or 'min'.")

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        if not dist.is_initialized():
            return tensor
        if sync_grads:
            from torch.distributed.nn.functional import all_gather

            return torch.stack(all_gather(tensor.contiguous(), group=group or dist.group.WORLD))
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.stack(parts)

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        if not dist.is_initialized():
            return decision
        votes = torch.tensor(int(bool(decision)), device=self.root_device)
        dist.all_reduce(votes, op=dist.ReduceOp.SUM)
        return bool(votes == self.world_size) if all else bool(votes > 0)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(world_size={self.world_size}, global_rank={self.global_rank}, "
                f"device={self.root_device})")


def _new_stop_vote(backend: str) -> "StopVote":
    """The vote runs on the CPU (gloo), beside NCCL's GPU traffic, so reading it never syncs the GPU."""
    return StopVote(dist.new_group(backend="gloo") if backend != "gloo" else None)


def leave_process_group() -> None:
    """At exit, leave the process group cleanly (torch warns, and gloo may abort, when a process exits inside it).

    First collect the garbage: a Trainer is kept alive only by reference cycles (its hooks hold it), and a DDP
    wrapper or pending work left in such a cycle holds the process group. Freed during interpreter finalization
    instead, gloo's threads abort the process ("terminate called without an active exception", exit -6) now and
    then, after all the work is done."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


class StopVote:
    """Ranks agree to stop at the same batch without waiting on each other at every step.

    Every ``every`` batches, each rank sends its wish to stop (a signal received, max_time reached,
    should_stop) with its recent step time in a small asynchronous all-reduce (MAX), and reads the answer at
    the next batch, when it has long arrived: all ranks see the same answer at the same batch and stop
    together. ``every`` follows the slowest rank's step time (the same answer on every rank, so every rank
    picks the same value) so that exchanges happen about every ``interval_s`` seconds: a stop request takes
    effect within about that time plus one batch, and the exchanges cost well under 1% of the step time even
    where one collective costs a millisecond (gloo on a busy CPU). The vote runs on the CPU (gloo), so
    reading it never waits for the GPU.
    """

    def __init__(self, group: Any, interval_s: float = 0.2, max_every: int = 1000) -> None:
        self.group = group
        self.interval_us = interval_s * 1e6
        self.max_every = max_every
        self.every = 1
        self._countdown = 1
        self._pending: Any = None
        self._buffer: Optional[torch.Tensor] = None
        self._since: Optional[float] = None  # when the last exchange was sent, and the batches since
        self._batches = 0

    def step(self, wish: Callable[[Any], list], trainer: Any) -> Optional[list]:
        """Called after every batch; returns the ranks' answer ([signal, time up, stop]) when one arrives, else
        None. ``wish(trainer)`` is only evaluated on the batches that send."""
        answer = None
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
            *answer, step_us = self._buffer.tolist()
            if step_us > 0:
                self.every = max(1, min(self.max_every, int(self.interval_us / step_us)))
        self._batches += 1
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = self.every
            now = time.perf_counter()
            step_us = int((now - self._since) * 1e6 / self._batches) if self._since is not None else 0
            self._since, self._batches = now, 0
            self._buffer = torch.tensor([*wish(trainer), step_us], dtype=torch.int64)
            self._pending = dist.all_reduce(self._buffer, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        return answer

    def now(self, wish: list) -> list:
        """A blocking vote (at epoch boundaries): the element-wise maximum of every rank's wish."""
        self.drain()
        buffer = torch.tensor(wish, dtype=torch.int64)
        dist.all_reduce(buffer, op=dist.ReduceOp.MAX, group=self.group)
        return buffer.tolist()

    def drain(self) -> None:
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
        self._since = None  # epoch boundaries (validation, checkpoints) do not count as step time
