"""Fabric's processes: ``fabric.launch(function)`` under ddp_spawn (``spawn``: N new processes run the function, rank
0's result comes back), and the guard that stops the ranks a script started when rank 0 dies of an exception.
Joining processes started by torchrun, SLURM or the script itself is the strategy's ``setup_environment``
(``strategies/launcher.py``), as for the Trainer.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch

from ember.strategies import launcher

if TYPE_CHECKING:
    from ember.fabric.fabric import Fabric


def spawn(fabric: "Fabric", function: Callable, args: tuple, kwargs: dict) -> Any:
    """Run ``function(fabric, *args, **kwargs)`` in ``num_processes`` new processes (torch.multiprocessing)
    and return rank 0's result."""
    import tempfile

    import torch.multiprocessing as mp

    from ember.strategies.environment import find_free_port
    from ember.trainer.progress import rng_state

    method = fabric._strategy.start_method
    if method == "spawn":
        _check_main_guard()
    env = {"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
           "MASTER_PORT": os.environ.get("MASTER_PORT") or str(find_free_port()),
           "NODE_RANK": str(fabric.node_rank), "WORLD_SIZE": str(fabric.world_size),
           "LOCAL_WORLD_SIZE": str(fabric._strategy.num_processes)}
    # a new interpreter ('spawn', 'forkserver') starts with fresh generators and torch flags: give it this
    # process's, as Lightning does ('fork' copies them with the rest of the memory)
    snapshot = None if method == "fork" else {
        "rng": rng_state(), "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark}
    with tempfile.TemporaryDirectory(prefix="ember-fabric-") as folder:  # readable by this user only
        mp.start_processes(_spawned_worker, args=(fabric, function, args, kwargs, env, snapshot, folder),
                           nprocs=fabric._strategy.num_processes, start_method=method)
        # written a moment ago by rank 0 of this run, in a folder only this user can write: not a file from
        # elsewhere, so it is read whole (the function may return objects of the user's own classes)
        return torch.load(os.path.join(folder, "result.pt"), map_location="cpu", weights_only=False)


def _spawned_worker(local_rank: int, fabric: "Fabric", function: Callable, args: tuple, kwargs: dict, env: dict,
                    snapshot: Optional[dict], folder: str) -> None:
    """One process started by ``fabric.launch(function)`` under ddp_spawn: join the group, run the function, hand
    rank 0's result back through a file (a queue would share tensor memory that this exiting process frees)."""
    from ember._utils import move_data_to_device

    os.environ.update(env, LOCAL_RANK=str(local_rank))  # the strategy now sees a process it did not start
    if snapshot is not None:
        from ember.trainer.progress import set_rng_state

        set_rng_state(snapshot["rng"])
        flags = (snapshot["deterministic"], snapshot["warn_only"])
        now = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        if flags != now:
            # only when it changes something: the call imports torch._inductor (seconds)
            torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.benchmark = snapshot["cudnn_benchmark"]
        args, kwargs = _unshare_modules((args, kwargs))
    fabric._spawned = True
    fabric.launch()
    result = function(fabric, *args, **kwargs)
    if fabric.global_rank == 0:
        torch.save(move_data_to_device(result, torch.device("cpu")), os.path.join(folder, "result.pt"))
    fabric.barrier("launch")
    from ember.strategies.ddp import leave_process_group

    leave_process_group()  # garbage first: a DDP wrapper freed after the group makes gloo abort this process


def _unshare_modules(data: Any) -> Any:
    """Modules passed to ``launch(function, model)`` under 'spawn' arrive with their tensors in memory shared by
    every process (torch.multiprocessing's pickling): give each process its own copy, so that one rank's optimizer
    step does not write into another's weights."""
    if isinstance(data, torch.nn.Module):
        with torch.no_grad():
            for tensor in [*data.parameters(), *data.buffers()]:
                tensor.data = tensor.data.clone()
    elif isinstance(data, Mapping):
        for value in data.values():
            _unshare_modules(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            _unshare_modules(value)
    return data


def _check_main_guard() -> None:
    """Under 'spawn' each new process imports the script again: without ``if __name__ == "__main__":`` it would
    reach ``launch`` again while starting."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "fabric.launch(train) with strategy='ddp_spawn' starts new Python processes that import this script "
            "again, and this one reached fabric.launch while being imported: the script has no "
            "`if __name__ == \"__main__\":` guard. Put the code that creates the Fabric and calls launch under it:\n\n"
            "    def train(fabric):\n        ...\n\n    if __name__ == \"__main__\":\n"
            "        fabric = Fabric(strategy=\"ddp_spawn\", devices=2)\n        fabric.launch(train)\n\n"
            "Or use strategy='ddp', which runs the script again instead.")


_hook_installed = False


def kill_children_on_uncaught_error() -> None:
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
