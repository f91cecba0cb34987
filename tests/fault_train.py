"""A small training run that tests and benchmarks start as a real process, then signal, kill and resume.

    python tests/fault_train.py --root DIR --max-epochs 3 [--ckpt last|PATH] [--every-n-train-steps K]
                                [--num-workers W] [--slow-ms M] [--slow-val-ms M] [--out weights.pt]

Everything random is seeded: the data (a fixed generator), the model's initialisation and Dropout, the
shuffling of the training loader, and the NumPy and ``random`` noise added to each batch, so two runs
with the same arguments end with the same weights bit for bit. Checkpoints go to ``DIR/ckpts``
(``ModelCheckpoint(save_last=True)``), or with ``--default-checkpoint`` wherever the Trainer's default
ModelCheckpoint keeps them. Progress goes to stdout, one flushed line per event, for the parent to read:

    STEP <global_step>              a training_step begins (that many optimizer steps are done)
    VAL <global_step> <batch_idx>   a validation_step begins (sanity checking prints nothing)
    DONE <global_step>              fit returned and the weights are saved to --out

The second half of the file is the parent's side: ``start()`` and ``Run``, used by tests/test_faults.py
and benchmarks/faults.py.
"""
from __future__ import annotations

import argparse
import os
import random
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

BATCHES_PER_EPOCH = 20
HERE = Path(__file__).resolve().parent


# --- the child: a training run ---------------------------------------------------------------------
def _model_class():
    import ember

    class FaultModel(ember.LightningModule):
        """MLP 32-hidden-2 with Dropout; each batch also draws from NumPy and ``random``."""

        def __init__(self, hidden: int = 32, slow_ms: float = 0, slow_val_ms: float = 0, ballast_mb: float = 0):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                           torch.nn.Linear(hidden, 2))
            self.slow_s, self.slow_val_s = slow_ms / 1000, slow_val_ms / 1000
            if ballast_mb:  # a large untrained buffer: makes each checkpoint big and slow to write
                self.register_buffer("ballast", torch.zeros(int(ballast_mb * 2**20) // 4))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            print(f"STEP {self.trainer.global_step}", flush=True)
            if self.slow_s:
                time.sleep(self.slow_s)
            x, y = batch
            noise = 1e-3 * (float(np.random.rand()) + random.random())
            loss = F.mse_loss(self(x + noise), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            if not self.trainer.sanity_checking:
                print(f"VAL {self.trainer.global_step} {batch_idx}", flush=True)
                if self.slow_val_s:
                    time.sleep(self.slow_val_s)
            x, y = batch
            self.log("val_loss", F.mse_loss(self(x), y))

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=1e-2)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)]

    return FaultModel


def loaders(num_workers: int = 0) -> tuple[DataLoader, DataLoader]:
    """20 shuffled training batches of 8 per epoch, 4 validation batches."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8 * BATCHES_PER_EPOCH, 32, generator=g), torch.randn(8 * BATCHES_PER_EPOCH, 2, generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, num_workers=num_workers)
    val = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, num_workers=num_workers)
    return train, val


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder for checkpoints (ROOT/ckpts) and logs")
    p.add_argument("--max-epochs", type=int, default=3)
    p.add_argument("--ckpt", default=None, help="'last' or a checkpoint path to resume from")
    p.add_argument("--every-n-train-steps", type=int, default=None)
    p.add_argument("--save-top-k", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--slow-ms", type=float, default=0, help="sleep this long in every training_step")
    p.add_argument("--slow-val-ms", type=float, default=0, help="sleep this long in every validation_step")
    p.add_argument("--val-check-interval", type=float, default=1.0)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--ballast-mb", type=float, default=0, help="add an untrained buffer of this size to the model")
    p.add_argument("--csv", action="store_true", help="log every step with a CSVLogger under ROOT")
    p.add_argument("--default-checkpoint", action="store_true",
                   help="no ModelCheckpoint of our own: the Trainer's default one, under ROOT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="torch.save the final state_dict here")
    return p.parse_args(argv)


def main(argv: Optional[list] = None) -> None:
    import ember
    from ember.callbacks import ModelCheckpoint
    from ember.loggers import CSVLogger

    args = parse_args(argv)
    ember.seed_everything(args.seed)
    model = _model_class()(args.hidden, args.slow_ms, args.slow_val_ms, args.ballast_mb)
    callbacks = [] if args.default_checkpoint else [
        ModelCheckpoint(dirpath=os.path.join(args.root, "ckpts"), save_last=True, save_top_k=args.save_top_k,
                        every_n_train_steps=args.every_n_train_steps)]
    trainer = ember.Trainer(
        max_epochs=args.max_epochs, callbacks=callbacks, default_root_dir=args.root, accelerator="cpu",
        logger=CSVLogger(args.root) if args.csv else False, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, val_check_interval=args.val_check_interval)
    train, val = loaders(args.num_workers)
    trainer.fit(model, train, val, ckpt_path=args.ckpt)
    if args.out:
        weights = {k: v for k, v in model.state_dict().items() if k != "ballast"}
        torch.save(weights, args.out)
    print(f"DONE {trainer.global_step}", flush=True)


# --- the parent: start a run, follow its progress, signal it ----------------------------------------
def start(root, *args: str, **options) -> "Run":
    """Start ``fault_train.py --root root`` with ``options`` as flags (``num_workers=2`` -> ``--num-workers 2``,
    ``csv=True`` -> ``--csv``) in its own session, so that a signal reaches it alone."""
    cmd = [sys.executable, str(HERE / "fault_train.py"), "--root", str(root), *args]
    for key, value in options.items():
        if value is None or value is False:
            continue
        cmd.append("--" + key.replace("_", "-"))
        if value is not True:
            cmd.append(str(value))
    Path(root).mkdir(parents=True, exist_ok=True)
    return Run(cmd, Path(root))


class Run:
    """A running fault_train.py: its stdout lines as they come, its stderr in ROOT/stderr-<n>.txt."""

    def __init__(self, cmd: list, root: Path):
        n = len(list(root.glob("stderr-*.txt")))
        self.stderr_path = root / f"stderr-{n}.txt"
        self._stderr = open(self.stderr_path, "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # runs side by side on few cores
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
                                     start_new_session=True, env=env)
        self.lines: list[str] = []
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:  # a thread: the pipe never fills, and wait_for can time out
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def steps(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("STEP ")]

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> Optional[str]:
        """Read lines until one satisfies ``predicate`` (returned) or the process ends (None)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise TimeoutError(f"no matching line within {timeout}s; last lines: {self.lines[-5:]}\n"
                                   f"{self.stderr()}") from None
            if line is None:
                self._queue.put(None)  # stays at the end for later calls
                return None
            self.lines.append(line)
            if predicate(line):
                return line

    def read_available(self) -> list[str]:
        """The lines that have arrived, without waiting."""
        new = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return new
            if line is None:
                self._queue.put(None)
                return new
            self.lines.append(line)
            new.append(line)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = 120) -> int:
        """Read the rest of stdout and wait for the exit code (negative: killed by that signal)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"still running after {timeout}s; last lines: {self.lines[-5:]}\n"
                               f"{self.stderr()}") from None
        self._reader.join(timeout=10)
        if self._reader.is_alive():  # a leftover DataLoader worker holds stdout open: end it too
            self.kill()
            self._reader.join()
        self.wait_for(lambda line: False)  # collect the remaining lines
        self._stderr.close()
        return self.proc.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # DataLoader workers included
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stderr(self, tail: int = 3000) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return "--- child's stderr (tail) ---\n" + self.stderr_path.read_text()[-tail:]


# --- the parent: fault scenarios shared by tests/test_faults.py and benchmarks/faults.py ------------
def interrupt(root, rng: random.Random, signum: int = signal.SIGTERM, during: str = "train", max_epochs: int = 3,
              **options) -> tuple[Run, int]:
    """Start a run and send ``signum`` at a moment drawn from ``rng``: during a training step in the middle
    of an epoch, or during a validation step. Returns the finished run and the global step it had
    reached when the signal was sent."""
    if during == "train":
        options.setdefault("slow_ms", 20)
        target = rng.randrange(max_epochs) * BATCHES_PER_EPOCH + rng.randrange(1, BATCHES_PER_EPOCH - 1)
        what = f"training step {target}"

        def due(line: str) -> bool:
            return line.startswith("STEP ") and int(line.split()[1]) >= target
    else:
        options.setdefault("slow_val_ms", 40)
        every = int(BATCHES_PER_EPOCH * options.get("val_check_interval", 1.0))
        passes = [epoch * BATCHES_PER_EPOCH + every * k for epoch in range(max_epochs)
                  for k in range(1, BATCHES_PER_EPOCH // every + 1)][:-1]  # not the run's last: leave work to resume
        wanted = f"VAL {rng.choice(passes)} {rng.randrange(4)}"
        what = f"validation step {wanted!r}"

        def due(line: str) -> bool:
            return line == wanted
    run = start(root, max_epochs=max_epochs, **options)
    line = run.wait_for(due)
    if line is None:
        run.finish()
        raise AssertionError(f"the run ended (exit code {run.proc.returncode}) before {what}\n{run.stderr()}")
    run.signal(signum)
    run.finish()
    return run, int(line.split()[1])


def resume(root, **options) -> Run:
    """Run again in ``root`` from ``last.ckpt`` to the end; the final weights go to ROOT/final.pt."""
    run = start(root, ckpt="last", out=Path(root) / "final.pt", **options)
    run.finish()
    return run


def reference(root, **options) -> Run:
    """Start a run that nobody interrupts; its final weights go to ROOT/final.pt."""
    return start(root, out=Path(root) / "final.pt", **options)


def load_weights(path) -> dict:
    return torch.load(path, weights_only=True)


def differing(a: dict, b: dict) -> list[str]:
    """The names of the tensors that are not bit-identical (or present in one dict only)."""
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))


def checkpoint_problems(folder) -> list[str]:
    """What could mislead a user in a checkpoint folder: a ``*.ckpt`` that does not load with
    ``torch.load(weights_only=True)``, or a file that is neither a ``*.ckpt`` nor a hidden ``.*.tmp``."""
    problems = []
    for path in sorted(Path(folder).iterdir()):
        if path.name.endswith(".ckpt"):
            try:
                ckpt = torch.load(path, weights_only=True)
                if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
                    problems.append(f"{path.name} loads but holds no state_dict")
            except Exception as e:  # noqa: BLE001  (any failure to load is the finding)
                problems.append(f"{path.name} does not load: {type(e).__name__}: {str(e)[:200]}")
        elif not (path.name.startswith(".") and path.name.endswith(".tmp")):
            problems.append(f"{path.name} is neither a *.ckpt nor a hidden *.tmp file")
    return problems


def kill_at_random_moments(root, rng: random.Random, kills: int, **options) -> list[dict]:
    """SIGKILL a run ``kills`` times, each time a few training steps after it (re)started from
    ``last.ckpt`` plus a random fraction of a step. After each kill, record what the folder holds:
    ``{"killed", "started_from" (last.ckpt's step when it started, None if there was none), "first_step" (the
    step it trained first), "exit_code", "problems", "last_step" (last.ckpt's step after the kill, or None),
    "temporary_files"}``."""
    folder = Path(root) / "ckpts"
    records = []
    for i in range(kills):
        last = folder / "last.ckpt"
        started_from = records[-1]["last_step"] if records else None
        run = start(root, ckpt="last" if started_from is not None else None, **options)
        steps_to_wait = rng.randint(1, 4)
        seen = 0

        def due(line: str) -> bool:
            nonlocal seen
            seen += line.startswith("STEP ")
            return seen >= steps_to_wait
        alive = run.wait_for(due) is not None
        time.sleep(rng.uniform(0, 0.05))
        run.kill()
        run.finish()
        killed = alive and run.proc.returncode == -signal.SIGKILL
        problems = checkpoint_problems(folder) if folder.exists() else []
        last_step = None
        if last.exists() and not any(p.startswith("last.ckpt ") for p in problems):
            last_step = torch.load(last, weights_only=True)["global_step"]
        records.append({"killed": killed, "started_from": started_from, "first_step": (run.steps or [None])[0],
                        "exit_code": run.proc.returncode,
                        "problems": problems, "last_step": last_step,
                        "temporary_files": sorted(p.name for p in folder.glob(".*.tmp")) if folder.exists() else []})
        if not killed:
            break  # the run finished before the kill: nothing left to interrupt
    return records


if __name__ == "__main__":
    main()
