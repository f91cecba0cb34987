"""Starting the other processes of a one-machine run from a plain ``python train.py``.

As Lightning does, ember re-runs the same command line for local ranks 1..N-1 with ``LOCAL_RANK``,
``NODE_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, so one script works the same under
``torchrun``, ``srun`` and ``python``. Every process then reaches the same ``trainer.fit`` and joins the
process group. The script therefore runs N times: code before ``fit`` runs on every rank (guard one-off
work with ``if trainer.is_global_zero``).
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from typing import Any

import __main__

_children: list = []


def command_line() -> list:
    """The command that started this process, to start it again."""
    alias = sys.modules.get("ember._lightning_alias")  # started by `ember run train.py`: run it that way again
    if alias is not None and alias.relaunch_command():
        return alias.relaunch_command()
    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):  # python -m package.module
        name = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable, "-m", name, *sys.argv[1:]]
    script = getattr(__main__, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    if not script or script in ("-c", "-") or not os.path.exists(script):
        raise RuntimeError(
            "Trainer(strategy='ddp', devices=N) starts the other processes by running this program again, but it "
            "was not started from a script file (an interactive session, a notebook or `python -c`). Put the code "
            "in a script and run it with `python train.py`, or launch it with `torchrun --nproc_per_node=N "
            "train.py`, or use Trainer(strategy='ddp_spawn').")
    return [sys.executable, os.path.abspath(script), *sys.argv[1:]]


def launch_children(num_devices: int, num_nodes: int, node_rank: int, main_address: str, main_port: int) -> None:
    """Start local ranks 1..num_devices-1 running this program; this process becomes local rank 0."""
    command = command_line()
    os.environ.update({"MASTER_ADDR": main_address, "MASTER_PORT": str(main_port), "NODE_RANK": str(node_rank),
                       "WORLD_SIZE": str(num_devices * num_nodes), "LOCAL_WORLD_SIZE": str(num_devices)})
    for local_rank in range(1, num_devices):
        env = dict(os.environ, LOCAL_RANK=str(local_rank))
        _children.append(subprocess.Popen(command, env=env))
    os.environ["LOCAL_RANK"] = "0"
    if len(_children) == num_devices - 1:
        atexit.register(_wait_for_children)


def kill_children() -> None:
    """This process failed: the ranks it started would wait for it in their next collective; stop them now."""
    for proc in _children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    for proc in _children:
        proc.wait()
    _children.clear()


def _wait_for_children() -> None:
    """At exit, the ranks this process started finish their own copy of the program."""
    for proc in _children:
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
    stopped_by_signal = {128 + int(s) for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", 10))}
    failed = [p for p in _children if p.returncode not in (0, None) and p.returncode not in stopped_by_signal]
    if failed:
        codes = ", ".join(f"local rank {i + 1}: exit code {p.returncode}" for i, p in enumerate(_children)
                          if p in failed)
        print(f"ember: processes started by rank 0 failed ({codes}).", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)  # the job failed: say so in rank 0's exit code too (atexit cannot change it otherwise)
    _children.clear()


# --- ddp_spawn: torch.multiprocessing ---------------------------------------------------------------------------
def spawn(trainer: Any, method: str, args: tuple, model: Any) -> Any:
    """``Trainer(strategy="ddp_spawn")``: run ``trainer.<method>(*args)`` in N new processes (torch.multiprocessing),
    then bring rank 0's results back into this process: the trained weights into the model, the metrics,
    the best checkpoint path, the counters. The trainer, the model and the data are pickled to each process,
    so they must be picklable, and the script needs an ``if __name__ == "__main__":`` guard."""
    import tempfile

    import torch
    import torch.multiprocessing as mp

    from ember.strategies.environment import find_free_port

    strategy = trainer.strategy
    env = {"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
           "MASTER_PORT": os.environ.get("MASTER_PORT", str(find_free_port())),
           "NODE_RANK": "0", "WORLD_SIZE": str(strategy.num_processes), "LOCAL_WORLD_SIZE": str(strategy.num_processes)}
    context = mp.get_context(strategy.start_method)
    queue = context.SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="ember-spawn-") as folder:
        mp.start_processes(_spawned_worker, args=(trainer, method, args, env, queue, folder),
                           nprocs=strategy.num_processes, start_method=strategy.start_method)
        output = queue.get()
        files = torch.load(os.path.join(folder, "output.pt"), weights_only=True)
    _adopt_worker_output(trainer, model if model is not None else trainer.lightning_module, output, files)
    return files["result"]


def _spawned_worker(local_rank: int, trainer: Any, method: str, args: tuple, env: dict, queue: Any,
                    folder: str) -> None:
    import torch

    os.environ.update(env, LOCAL_RANK=str(local_rank))  # the strategy now sees a process it did not start
    result = getattr(trainer, method)(*args)
    if trainer.is_global_zero:  # tensors travel through a file: a queue would share memory the exiting worker frees
        module = trainer.lightning_module
        torch.save({"result": result, "weights": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                    "run": trainer.run_state.export()}, os.path.join(folder, "output.pt"))
        cb = trainer.checkpoint_callback
        queue.put({
            "checkpoint": None if cb is None else {
                "best_model_path": cb.best_model_path, "last_model_path": cb.last_model_path,
                "best_model_score": None if cb.best_model_score is None else float(cb.best_model_score),
                "best_k_models": {k: float(v) for k, v in cb.best_k_models.items()}},
        })
    trainer.strategy.barrier()
    from ember.strategies.ddp import leave_process_group

    leave_process_group()  # garbage first: a DDP wrapper freed after the group makes gloo abort this process


def _adopt_worker_output(trainer: Any, model: Any, output: dict, files: dict) -> None:
    import torch

    if model is not None:
        model.load_state_dict(files["weights"])
        model.trainer = trainer
    trainer.run_state.adopt(files["run"], model)
    cb = trainer.checkpoint_callback
    if cb is not None and output["checkpoint"] is not None:
        saved = output["checkpoint"]
        cb.best_model_path, cb.last_model_path = saved["best_model_path"], saved["last_model_path"]
        cb.best_model_score = None if saved["best_model_score"] is None else torch.tensor(saved["best_model_score"])
        cb.best_k_models = {k: torch.tensor(v) for k, v in saved["best_k_models"].items()}
