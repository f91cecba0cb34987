"""What each logger adds to a training step: a bare ember Trainer with ``logger=False`` against the same with one logger.

The tiny MLP of ``overhead.py`` (Linear(32, 64), ReLU, Linear(64, 10)), batch 16, SGD, one CPU thread; the
LightningModule calls ``self.log("train_loss", loss)`` every step and the Trainer hands the logged values to the
logger every ``log_every_n_steps=50`` steps (the default): ``{"train_loss", "epoch"}``, one ``log_metrics`` call.
No progress bar, model summary or checkpoints in any column. The columns, all in one process:

- ``none``: ``logger=False``, the baseline;
- ``csv``: ``CSVLogger``;
- ``tensorboard``: ``TensorBoardLogger`` (torch's ``SummaryWriter``);
- ``mlflow``: ``MLFlowLogger`` with its default local store (SQLite, ``{tmp}/mlflow.db``) and the default
  ``synchronous=None`` (MLflow writes each batch before ``log_metrics`` returns);
- ``mlflow async``: the same with ``synchronous=False`` (MLflow's background threads write);
- ``wandb``: ``WandbLogger(offline=True)`` (``WANDB_MODE=offline``; no network), skipped without wandb.

Each logger's run (SQLite store, event file, W&B run) is made before the timed part, which is ``trainer.fit``
(``log_hyperparams``, the logging steps and ``finalize``: flushing, closing, MLflow's background writes) and, for
W&B, the ``wandb.finish()`` that ends its run: each column is timed until its data is written. One store per
logger serves every repeat (a new run each time). Repeats alternate between the columns (the order reverses
every repeat); the figures are the median per-step time of each column, the median of the per-repeat ratios
to ``none``, and the extra µs a step = (ratio - 1) x the baseline's median µs/step. "end ms" is the median time
of the run's end (``finalize``, plus ``wandb.finish()`` for W&B) within that, a cost per run rather than per
step; "without the end" takes it out. CPU is this process's CPU time (``time.process_time``): W&B's service
process (which also goes on writing after ``wandb.finish()`` returns, offline) is not in it, nor are waits
for the disk. Then ``MLFlowLogger.log_metrics`` alone: the median time of one call with the same SQLite store,
``synchronous=None`` and ``False``, and the ``finalize`` that follows.

    python benchmarks/loggers.py                     # 4000 steps a run, 7 repeats (about 2 minutes)
    python benchmarks/loggers.py --loggers csv,mlflow,mlflow-async --repeats 9
    python benchmarks/loggers.py --quick             # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402
from overhead import MLP, make_data  # noqa: E402  (the same model and data)

import ember  # noqa: E402

BATCH = 16
LOGGERS = ["csv", "tensorboard", "mlflow", "mlflow-async", "wandb"]
PACKAGE = {"tensorboard": "tensorboard", "mlflow": "mlflow", "mlflow-async": "mlflow", "wandb": "wandb"}


def make_logger(kind: str, root: str) -> Any:
    """A logger of ``kind`` writing under ``root`` (shared by the repeats), its run already started."""
    from ember import loggers

    if kind == "none":
        return False
    if kind == "csv":
        logger = loggers.CSVLogger(root, name="csv")
    elif kind == "tensorboard":
        logger = loggers.TensorBoardLogger(root, name="tb")
    elif kind in ("mlflow", "mlflow-async"):
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        logger = loggers.MLFlowLogger(kind, save_dir=os.path.join(root, "mlflow"),  # one SQLite store for all
                                      synchronous=False if kind == "mlflow-async" else None)
    elif kind == "wandb":
        logger = loggers.WandbLogger(project="bench", save_dir=os.path.join(root, "wandb"), offline=True)
    else:
        raise ValueError(kind)
    logger.experiment  # the run (store, event file, W&B process) exists before the clock starts
    return logger


def run_once(kind: str, root: str, loader: DataLoader, epochs: int, ends: dict) -> tuple:
    """(wall, CPU) seconds of one fit with a ``kind`` logger, until its data is written; the run's end into ``ends``."""
    with h.silenced():
        logger = make_logger(kind, root)
        trainer = ember.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root,
                                **dict(h.BARE, logger=logger))
        model = MLP()
        end = [0.0]
        if logger:
            finalize = logger.finalize

            def timed_finalize(status: str) -> None:
                start = time.perf_counter()
                finalize(status)
                end[0] += time.perf_counter() - start

            logger.finalize = timed_finalize

        def work() -> None:
            trainer.fit(model, loader)
            if kind == "wandb":
                start = time.perf_counter()
                logger.experiment.finish()
                end[0] += time.perf_counter() - start

        wall, cpu = h.clocked(work)
    ends.setdefault(kind, []).append(end[0])
    return wall, cpu


def available(kind: str) -> bool:
    package = PACKAGE.get(kind)
    return package is None or importlib.util.find_spec(package) is not None


def table(res: dict, ends: dict, steps: int) -> str:
    names = list(res["wall"]["per"])
    base = {clock: res[clock]["per"][names[0]] for clock in ("wall", "cpu")}
    lines = ["| logger | µs/step | extra µs/step | ratio to none (min–max) | end ms | extra µs/step without the end "
             "| CPU extra µs/step | CPU ratio |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        w, c = res["wall"], res["cpu"]
        extra = (w["ratio"][name] - 1) * base["wall"] * 1e6
        cpu_extra = (c["ratio"][name] - 1) * base["cpu"] * 1e6
        end = statistics.median(ends[name]) * 1e3 if name in ends else 0.0
        lines.append(f"| {name} | {w['per'][name] * 1e6:.1f} | {extra:+.1f} | {h.fmt_ratio(w, name)} | {end:.0f} | "
                     f"{extra - end * 1e3 / steps:+.1f} | {cpu_extra:+.1f} | {c['ratio'][name]:.3f} |")
    return "\n".join(lines)


def mlflow_call_times(root: str, calls: int) -> dict:
    """Median wall ms of one ``MLFlowLogger.log_metrics({"train_loss", "epoch"})`` with the SQLite store, each mode,
    and of the ``finalize`` that follows ``calls`` such calls spaced as in the fit."""
    from ember.loggers import MLFlowLogger

    out = {}
    for label, synchronous in (("default", None), ("synchronous=False", False)):
        with h.silenced():
            logger = MLFlowLogger("calls", save_dir=os.path.join(root, "mlflow"), synchronous=synchronous)
            logger.experiment
            times = []
            for step in range(calls):
                start = time.perf_counter()
                logger.log_metrics({"train_loss": 0.5, "epoch": 0}, step)
                times.append(time.perf_counter() - start)
                time.sleep(0.01)  # about 50 steps of the tiny MLP
            start = time.perf_counter()
            logger.finalize("success")
            out[label] = (statistics.median(times) * 1e3, (time.perf_counter() - start) * 1e3)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.add_arguments(parser, steps=4000, repeats=7, lightning=False)
    parser.add_argument("--loggers", default=",".join(LOGGERS), help=f"comma-separated, from {LOGGERS}")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 200, 1
    kinds = args.loggers.split(",")
    unknown = [k for k in kinds if k not in LOGGERS]
    if unknown:
        parser.error(f"--loggers: unknown logger {unknown[0]!r}; choose from {', '.join(LOGGERS)}")
    skipped = [k for k in kinds if not available(k)]
    kinds = ["none"] + [k for k in kinds if k not in skipped]
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(1)
    per_epoch = min(args.steps, 1000)
    epochs = max(1, args.steps // per_epoch)
    steps = per_epoch * epochs
    loader = DataLoader(make_data(per_epoch * BATCH), batch_size=BATCH)

    root = tempfile.mkdtemp(prefix="ember-loggers-")
    try:
        ends: dict = {}
        columns: dict[str, Callable] = {k: (lambda k=k: run_once(k, root, loader, epochs, ends)) for k in kinds}
        print(f"MLP 32-64-10, batch {BATCH}, 1 thread, self.log every step, log_every_n_steps=50; {steps} steps a run; "
              f"torch {torch.__version__}, ember {ember.__version__}; {args.repeats} interleaved repeats"
              + (f"; skipped (not installed): {', '.join(skipped)}" if skipped else ""), flush=True)
        if args.quick:  # warm up the training path only; a full warm-up runs every column once
            columns["none"]()
        res = h.interleaved(columns, args.repeats, per=steps, warmup=not args.quick)
        for k in kinds:  # the warm-up run is not in the figures
            ends[k] = ends[k][-args.repeats:]
        print()
        print(table(res, ends, steps))
        rows = []
        base_us = res["wall"]["per"]["none"] * 1e6
        for name in kinds[1:]:
            w, c = res["wall"], res["cpu"]
            rows.append({"benchmark": "loggers", "row": name, "ratio": w["ratio"][name],
                         "figure": f"{w['ratio'][name]:.3f} ({w['spread'][name][0]:.2f}–{w['spread'][name][1]:.2f}); "
                                   f"CPU {c['ratio'][name]:.3f}",
                         "lightning": "", "target": "",
                         "detail": f"+{(w['ratio'][name] - 1) * base_us:.0f} µs/step over logger=False "
                                   f"({base_us:.0f} µs/step), {steps} steps/run"})
        if {"mlflow", "mlflow-async"} & set(kinds):
            calls = 5 if args.quick else 40
            print()
            print(f"MLFlowLogger.log_metrics, SQLite store, {calls} calls 10 ms apart (median), then finalize:")
            for label, (call_ms, end_ms) in mlflow_call_times(root, calls).items():
                print(f"- {label}: {call_ms:.2f} ms a call ({call_ms * 1e3 / 50:.0f} µs/step at "
                      f"log_every_n_steps=50); finalize {end_ms:.0f} ms")
        h.write_json(args.json, rows)
    finally:
        with contextlib.suppress(Exception):
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
