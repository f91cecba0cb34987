"""What the Trainer asks of a way to run a model: where it lives, how its ranks talk, how its state is saved.

``SingleDeviceStrategy`` is one process on one device: every collective is the identity, so code written for
many ranks (``trainer.strategy.barrier()``, ``self.all_gather(x)``) runs unchanged on one.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch


class Strategy:
    """The base of every strategy. A subclass that talks to other ranks overrides the collectives."""

    strategy_name = "base"
    world_size = 1
    global_rank = 0
    local_rank = 0
    node_rank = 0
    num_nodes = 1
    num_processes = 1
    # True when saving a checkpoint needs every rank (a sharded model gathers its weights)
    save_needs_all_ranks = False
    spawns_processes = False  # ddp_spawn: each Trainer entry point runs in new processes
    # after a run on a GPU the module and optimizer state go back to the CPU, as in Lightning (not a sharded model)
    returns_module_to_cpu = True

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self._root_device = device
        self.model: Optional[torch.nn.Module] = None  # what the training step runs through (a DDP wrapper)
        # how the ranks agree to leave a loop (ddp.py's StopVote); None in one process, where no vote is needed
        self.stop_vote: Any = None

    @property
    def root_device(self) -> torch.device:
        return self._root_device if self._root_device is not None else torch.device("cpu")

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # --- set-up ---------------------------------------------------------------------------------------
    def _configure(self, accelerator: str, device_indices: list, num_nodes: int, devices_given: bool) -> None:
        """Called by the Trainer with what ``accelerator``, ``devices`` and ``num_nodes`` resolved to."""
        index = device_indices[0] if device_indices else 0
        self._root_device = torch.device(accelerator, index) if accelerator == "cuda" else torch.device(accelerator)

    def setup_environment(self) -> None:
        """Start or join the other processes (nothing to do for one)."""

    def setup_module(self, module: torch.nn.Module, training_step: Callable) -> Callable:
        """Prepare ``module`` for training; returns what the loop calls as ``training_step(batch, batch_idx)``."""
        self.model = module
        return training_step

    def setup_eval_module(self, module: torch.nn.Module) -> None:
        """Prepare ``module`` for validate/test/predict (FSDP shards it); most strategies have nothing to do."""

    def process_dataloader(self, loader: Any, train: bool) -> Any:
        return loader

    # gradient synchronisation between ranks during accumulation: None when there is nothing to synchronise
    set_grad_sync: Optional[Callable[[bool], None]] = None

    def teardown(self) -> None:
        pass

    # --- collectives ---------------------------------------------------------------------------------------
    def barrier(self, name: Optional[str] = None) -> None:
        """Wait until every rank reaches this line."""

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (any picklable object)."""
        return obj

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """``tensor`` reduced over the ranks ('mean' or 'sum')."""
        return tensor

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        """Every rank's ``tensor``, stacked on a new first dimension of size ``world_size``."""
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every rank (``all=True``) or any rank (``all=False``) decided True."""
        return decision

    # --- state -------------------------------------------------------------------------------------------------
    def lightning_module_state_dict(self, module: torch.nn.Module) -> dict:
        return module.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        return optimizer.state_dict()

    def load_model_state_dict(self, module: torch.nn.Module, state: dict, strict: bool = True) -> None:
        module.load_state_dict(state, strict=strict)

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Optional[bool] = None) -> dict:
        """Read a checkpoint (``torch.load(weights_only=True)`` unless the caller passes ``weights_only=False``;
        a sharded strategy reads its folder)."""
        from ember._checkpoint_io import load_checkpoint

        return load_checkpoint(path, map_location, weights_only=weights_only)

    def save_checkpoint(self, checkpoint: dict, filepath: Any) -> None:
        """Write ``checkpoint`` (on rank 0 only, atomically)."""
        if self.is_global_zero:
            from ember._checkpoint_io import atomic_save

            atomic_save(checkpoint, filepath)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.root_device})"


class SingleDeviceStrategy(Strategy):
    """One process, one device."""

    strategy_name = "single_device"

    def __init__(self, device: Any = None) -> None:
        super().__init__(torch.device(device) if device is not None else None)
