"""Preemption: SIGTERM, SIGUSR1 (SLURM's warning before a time limit) and SIGINT during ``fit``.

The handler only records the signal. The fit loop looks at it after each training batch (the
optimizer step in flight finishes) and after each epoch, writes ``last.ckpt`` where
ModelCheckpoint keeps its checkpoints, flushes the loggers and leaves ``fit``:

- SIGTERM / SIGUSR1: ``SystemExit(128 + signal number)``, so the process ends with 143 / 138,
  the code schedulers read as "terminated by a signal"; code after ``fit`` does not run on a
  half-trained model. Resume with ``trainer.fit(model, ..., ckpt_path="last")``.
- SIGINT (Ctrl-C): the same checkpoint, then ``KeyboardInterrupt`` as Python users expect. A second
  Ctrl-C interrupts at once; the checkpoint write is atomic, so nothing is left half-written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, Iterator, Optional

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

_CAUGHT = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name))


class SignalCatcher:
    def __init__(self) -> None:
        self.received: Optional[int] = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch the signals while the block runs (main thread only: Python delivers signals there)."""
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in _CAUGHT}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def received_sigterm(self) -> bool:
        """Lightning's ``trainer.received_sigterm``."""
        return self.received == signal.SIGTERM

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.received is None:  # later signals while stopping change nothing
            self.received = signum


def stop_for_signal(trainer: Trainer) -> None:
    """Write last.ckpt, flush the loggers, and leave fit the way the signal asks."""
    signum = trainer._signals.received
    name = signal.Signals(signum).name
    path = _last_checkpoint_path(trainer)
    trainer.save_checkpoint(path)
    for cb in trainer.checkpoint_callbacks:
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(cb.dirpath or ""):
            cb.last_model_path = path
    for lg in trainer.loggers:
        lg.save()
    p = trainer._progress
    if trainer.is_global_zero:
        print(f"ember: received {name}; saved {path} (epoch {p.epoch}, batch {p.batch_idx}, global step "
              f"{p.optimizer_steps}). Resume with trainer.fit(..., ckpt_path='last').", flush=True)
    trainer.state.status = "interrupted"
    if signum == getattr(signal, "SIGUSR1", None) and trainer.is_global_zero:
        _requeue_slurm_job(trainer)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _requeue_slurm_job(trainer: Trainer) -> None:
    """Under SLURM, SIGUSR1 is the warning before the time limit (``#SBATCH --signal=SIGUSR1@90``): put the job back
    in the queue, as Lightning does, so that it restarts and resumes from last.ckpt. Off with
    ``plugins=[SLURMEnvironment(auto_requeue=False)]``."""
    from ember.strategies.environment import SLURMEnvironment

    env = getattr(trainer.strategy, "cluster_environment", None)
    if not isinstance(env, SLURMEnvironment):
        env = next((p for p in trainer._plugins if isinstance(p, SLURMEnvironment)), None)
    if env is None and SLURMEnvironment.detect():
        env = SLURMEnvironment()
    if env is None or not env.auto_requeue:
        return
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    import subprocess

    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"ember: could not requeue SLURM job {job} ({e}); resubmit it to resume from last.ckpt.", flush=True)
        return
    if done.returncode == 0:
        print(f"ember: requeued SLURM job {job}; it resumes from last.ckpt when it restarts.", flush=True)
    else:
        print(f"ember: `scontrol requeue {job}` failed ({done.stderr.strip()}); resubmit the job to resume.",
              flush=True)


def _last_checkpoint_path(trainer: Trainer) -> str:
    cb = trainer.checkpoint_callback
    folder = getattr(cb, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
    return os.path.join(folder, "last.ckpt")


class _WorkerIgnoresSignals:
    """A DataLoader ``worker_init_fn`` wrapper: workers ignore the preemption signals, which schedulers send to
    the whole process group, so that they keep serving batches until the main process has saved and stops them."""

    def __init__(self, user_fn: Any) -> None:
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> None:
        for sig in _CAUGHT:
            signal.signal(sig, signal.SIG_IGN)
        if self.user_fn is not None:
            self.user_fn(worker_id)


def shield_workers(loader: Any) -> None:
    """Make ``loader``'s worker processes (if any) leave preemption signals to the main process."""
    if getattr(loader, "num_workers", 0) and not isinstance(loader.worker_init_fn, _WorkerIgnoresSignals):
        loader.worker_init_fn = _WorkerIgnoresSignals(loader.worker_init_fn)
