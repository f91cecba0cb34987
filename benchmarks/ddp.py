"""Per-step time of 2-process DDP in ember against a hand-written DDP loop, in the same two processes.

Both sides do the same work on each rank: the same MLP wrapped in ``torch.nn.parallel.DistributedDataParallel``
over gloo, the same data split by a ``DistributedSampler`` (shuffled, seed 0, ``set_epoch`` every epoch), SGD,
one CPU thread per rank. ember is given the user's plain ``DataLoader(shuffle=True)`` and builds the sampler
itself, as a user would; the LightningModule calls ``self.log`` every step (no ``sync_dist``), as in
``overhead.py``. Each timed run covers what ``fit`` covers: wrapping the model in DDP, building the sampler and
loader, the optimizer, every epoch. Runs alternate between hand-written and ember (the order swaps every
repeat); a run's time is the slowest rank's. Rank 0 prints the median µs/step of each side and the median of
the per-repeat ratios ember / hand-written. Target: 1.05 or less.

    python benchmarks/ddp.py                                   # starts itself under torchrun, 2 processes
    python benchmarks/ddp.py --quick                           # smoke run: row small, 10 steps, no warm-up (the 2
                                                               # processes started directly, without torchrun)
    torchrun --standalone --nproc_per_node=2 benchmarks/ddp.py # the same, launched by hand
    some/venv/bin/python benchmarks/ddp.py                     # a PyTorch Lightning column where it is installed

Rows: ``small`` (32-64-10, batch 16 per rank: the step is mostly Python and all-reduce latency), ``small-defaults``
(the same with ember's default progress bar, model summary, logger and checkpointing), ``large``
(512-2048-2048-10, 5.3M parameters, batch 8 per rank: the 21 MB gradient all-reduce dominates).
The other rows run the Trainer bare: ``enable_progress_bar=False, logger=False, enable_checkpointing=False,
enable_model_summary=False``. Every run builds a new Trainer in the same process: the process group is created
once (by the first ember fit) and reused by every later Trainer and by the hand-written loop.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, Callable


def _start_two_ranks() -> int:
    """Run this script as ranks 0 and 1, with the variables torchrun would set; the worse exit code.

    For ``--quick``: without a torchrun agent (another interpreter importing torch) a smoke run costs less CPU."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    ranks = [subprocess.Popen([sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                              env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank))) for rank in range(2)]
    while True:  # as torchrun does: when one rank fails, stop the other (it would wait for it for half an hour)
        codes = [rank.poll() for rank in ranks]
        failed = next((code for code in codes if code), 0)
        if failed:
            for rank in ranks:
                if rank.poll() is None:
                    rank.terminate()
                    rank.wait()
            return failed
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.1)


if __name__ == "__main__" and "LOCAL_RANK" not in os.environ and not {"-h", "--help"} & set(sys.argv):
    # started with plain python: start the two ranks (before this process imports torch for nothing)
    if "--quick" in sys.argv:
        sys.exit(_start_two_ranks())
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              os.path.abspath(__file__), *sys.argv[1:]])

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset  # noqa: E402

import ember  # noqa: E402

# name: (layer widths, batch size per rank, default steps per run per rank, bare Trainer)
ROWS = {
    "small": ((32, 64, 10), 16, 2000, True),
    "small-defaults": ((32, 64, 10), 16, 2000, False),
    "large": ((512, 2048, 2048, 10), 8, 400, True),
}
EPOCHS = 2


def make_data(widths: tuple, n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, widths[0], generator=g), torch.randint(0, widths[-1], (n,), generator=g))


def make_net(widths: tuple) -> nn.Module:
    torch.manual_seed(0)
    layers: list = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def module_class(base: type) -> type:
    class MLP(base):  # type: ignore[misc, valid-type]
        def __init__(self, widths: tuple) -> None:
            super().__init__()
            self.net = make_net(widths)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return MLP


def hand_written(widths: tuple, data: TensorDataset, batch: int, epochs: int, _root: str) -> float:
    net = make_net(widths)
    start = time.perf_counter()
    model = DistributedDataParallel(net)
    sampler = DistributedSampler(data, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=batch, sampler=sampler)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def with_trainer(framework: Any, bare: bool) -> Callable:
    MLP = module_class(framework.LightningModule)

    def run(widths: tuple, data: TensorDataset, batch: int, epochs: int, root: str) -> float:
        model = MLP(widths)
        loader = DataLoader(data, batch_size=batch, shuffle=True)  # the Trainer puts in the DistributedSampler
        flags = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False) if bare else {}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = framework.Trainer(max_epochs=epochs, accelerator="cpu", devices=2, strategy="ddp",
                                        default_root_dir=root, **flags)
            start = time.perf_counter()
            trainer.fit(model, loader)
            return time.perf_counter() - start

    return run


def slowest(seconds: float) -> float:
    """The run's time is the slowest rank's (DDP keeps them in step, so they differ by one step at most)."""
    t = torch.tensor([seconds], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def shared_root() -> str:
    """One scratch directory for both ranks (ember writes logs and checkpoints from rank 0 only)."""
    box = [tempfile.mkdtemp(prefix="ember-ddp-bench-") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def measure(row: str, steps: int, repeats: int, columns: dict, warmup: bool = True) -> dict:
    widths, batch, _, bare = ROWS[row]
    world = dist.get_world_size()
    data = make_data(widths, world * batch * steps // EPOCHS)
    steps_per_run = EPOCHS * math.ceil(math.ceil(len(data) / world) / batch)
    root = shared_root()
    times: dict = {name: [] for name in columns}
    for name, fn in columns.items() if warmup else ():  # warm up every path
        dist.barrier()
        fn(widths, data, batch, 1, root)
    names = list(columns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            dist.barrier()
            times[name].append(slowest(columns[name](widths, data, batch, EPOCHS, root)) / steps_per_run)
    dist.barrier()
    if dist.get_rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    base = times["hand-written"]
    return {
        "steps": steps_per_run,
        "us": {name: statistics.median(t) * 1e6 for name, t in times.items()},
        "ratio": {name: statistics.median(a / b for a, b in zip(t, base)) for name, t in times.items()},
        "spread": {name: (min(a / b for a, b in zip(t, base)), max(a / b for a, b in zip(t, base)))
                   for name, t in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="small,small-defaults,large", help=f"comma-separated, from {list(ROWS)}")
    parser.add_argument("--steps", type=int, default=0, help="steps per run per rank (default: per row)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-lightning", action="store_true", help="skip the PyTorch Lightning column")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run, not a measurement: row small, 10 steps, 1 repeat, no warm-up")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps, args.repeats = "small", 10, 1
    rows = args.rows.split(",")
    for row in rows:
        if row not in ROWS:
            parser.error(f"--rows: unknown row {row!r}; choose from {', '.join(ROWS)}")

    torch.set_num_threads(1)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # its info lines, on every rank
        logging.getLogger(name).setLevel(logging.WARNING)
    # an optional third column when run with an interpreter that has PyTorch Lightning (imported only then: it
    # costs each rank seconds of CPU)
    lightning = None if args.no_lightning else _lightning_package()
    use_lightning = lightning is not None
    results = {}
    for row in rows:
        bare = ROWS[row][3]
        columns = {"hand-written": hand_written, "ember": with_trainer(ember, bare)}
        if use_lightning:
            columns["lightning"] = with_trainer(lightning, bare)
        if not dist.is_initialized():  # the first ember fit creates the group; every later run reuses it
            with_trainer(ember, True)(ROWS["small"][0], make_data(ROWS["small"][0], 64), 16, 1, tempfile.gettempdir())
            assert dist.is_initialized(), "ember's Trainer(devices=2, strategy='ddp') did not join a process group"
        results[row] = measure(row, args.steps or ROWS[row][2], args.repeats, columns, warmup=not args.quick)
        if dist.get_rank() == 0:
            report(row, results[row], args.repeats)

    if dist.get_rank() == 0:
        print(f"\n{dist.get_world_size()} processes, gloo, torch {torch.__version__}, ember {ember.__version__}"
              + (f", pytorch_lightning {lightning.__version__}" if use_lightning else "")
              + f", {args.repeats} interleaved repeats; µs/step are medians, ratio = median of per-repeat ratios")
        names = list(next(iter(results.values()))["us"])
        head = " | ".join(f"{n} µs/step" for n in names) + " | " + " | ".join(
            f"{n} / hand-written" for n in names[1:])
        print(f"| row | steps/run | {head} |")
        print("|---" * (2 + len(names) + len(names) - 1) + "|")
        for row, res in results.items():
            us = " | ".join(f"{res['us'][n]:.0f}" for n in names)
            ratios = " | ".join(f"**{res['ratio'][n]:.3f}** ({res['spread'][n][0]:.2f}–{res['spread'][n][1]:.2f})"
                                for n in names[1:])
            print(f"| {row} | {res['steps']} | {us} | {ratios} |")
    dist.barrier()
    from ember.strategies.ddp import leave_process_group

    # the runs' Trainers and DDP wrappers live on in reference cycles: freed after the group is gone (at exit),
    # gloo's threads abort the process now and then ("terminate called without an active exception")
    leave_process_group()


def _lightning_package() -> Any:
    try:
        import pytorch_lightning
    except ImportError:
        return None
    return pytorch_lightning


def report(row: str, res: dict, repeats: int) -> None:
    parts = ", ".join(f"{n} {us:.1f} µs/step" for n, us in res["us"].items())
    ratios = ", ".join(f"{n} {r:.3f}" for n, r in res["ratio"].items() if n != "hand-written")
    print(f"{row}: {res['steps']} steps per run, {repeats} repeats; {parts}; ratio {ratios}", flush=True)


if __name__ == "__main__":
    main()
