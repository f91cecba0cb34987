"""Peak memory of training with ember's Trainer against a hand-written loop: the same model, data and steps.

Every run is a fresh process (this script, with ``--child``): it builds the data (random, 16 x 512 floats a
batch) and an MLP 512-2048-2048-10 (5.3M parameters, Adam), trains ``--steps`` steps, and reports its peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its RSS just before training started
(after the imports, the data, the model and the Trainer). On a machine with CUDA the runs train on the GPU and
also report ``torch.cuda.max_memory_allocated()``. Runs alternate between the columns; figures are medians over
``--repeats``, with min–max. Target: equal peaks (ratio ~1.00).

Two things make the peak RSS of one and the same program move by ±20 MiB from run to run, and both are pinned:

* string hashing (it decides dict layouts): every column of a repeat runs with the same ``PYTHONHASHSEED``;
* glibc's dynamic mmap threshold, which serves freed-and-reallocated tensor buffers from the heap or from fresh
  mappings depending on the order of earlier frees: the ``fixed`` allocator rows set
  ``MALLOC_MMAP_THRESHOLD_=65536`` (every buffer of 64 KiB or more is its own mapping, returned when freed), so
  the peak follows the live memory and repeats agree to within ~1 MiB. The ``glibc`` rows leave the allocator
  as users run it.

Rows: ``bare`` (no progress bar, summary, logger, checkpoints) and ``defaults`` (ember's defaults, which import
and run the default logger and ModelCheckpoint), each under both allocator settings.

    python benchmarks/memory.py                    # 5 repeats of 100 steps; rows bare, defaults; both allocators
    /tmp/plvenv/bin/python benchmarks/memory.py    # adds a PyTorch Lightning column if it is installed
    python benchmarks/memory.py --quick            # a smoke run of a few seconds (bare, fixed)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False)
WIDTHS = (512, 2048, 2048, 10)
BATCH = 16


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(column: str, steps: int, bare: bool) -> dict:
    """One training run in this process; returns its memory figures."""
    import contextlib
    import io
    import warnings

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    framework = None
    if column == "ember":
        import ember as framework
    elif column == "lightning":
        import logging

        import pytorch_lightning as framework
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
    # the first optimizer any code builds imports torch._dynamo (~70 MiB); Lightning imports it on its own import.
    # Importing it here, before "RSS before fit" is read, keeps that import out of what the loop adds, for all.
    import torch._dynamo  # noqa: F401

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(steps * BATCH, WIDTHS[0], generator=g),
                         torch.randint(0, WIDTHS[-1], (steps * BATCH,), generator=g))
    loader = DataLoader(data, batch_size=BATCH)

    def make_net() -> nn.Module:
        torch.manual_seed(0)
        layers: list = []
        for i, (a, b) in enumerate(zip(WIDTHS, WIDTHS[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(WIDTHS) - 2 else [])
        return nn.Sequential(*layers)

    if framework is None:
        net = make_net().to(device)
        start_rss = rss_mb()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        class MLP(framework.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = make_net()

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = nn.functional.cross_entropy(self.net(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)

        model = MLP()
        with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = framework.Trainer(max_epochs=1, accelerator="gpu" if cuda else "cpu", devices=1,
                                        default_root_dir=root, **(BARE if bare else {}))
            start_rss = rss_mb()
            trainer.fit(model, loader)
    out = {"peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss, "torch": torch.__version__, "cuda": cuda}
    if cuda:
        torch.cuda.synchronize()
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(column: str, steps: int, bare: bool, hash_seed: int, allocator: str) -> dict:
    """One run in a fresh process, with PYTHONHASHSEED ``hash_seed`` and the given allocator setting."""
    command = [sys.executable, os.path.abspath(__file__), "--child", column, "--steps", str(steps)]
    if not bare:
        command.append("--defaults")
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if allocator == "fixed":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{column} run failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


LABELS = {"peak_rss_mb": "peak RSS", "cuda_max_allocated_mb": "cuda max allocated",
          "start_rss_mb": "RSS before fit", "during_mb": "peak RSS − RSS before fit"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", default="bare,defaults", help="comma-separated, from ['bare', 'defaults']")
    parser.add_argument("--allocators", default="fixed,glibc", help="comma-separated, from ['fixed', 'glibc']")
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke run, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the result rows to PATH (run_all.py reads them)")
    parser.add_argument("--no-lightning", action="store_true", help="skip the PyTorch Lightning column")
    parser.add_argument("--child", choices=["hand-written", "ember", "lightning"], help=argparse.SUPPRESS)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, bare=not args.defaults)))
        return
    if args.quick:
        args.steps, args.repeats, args.rows, args.allocators = 5, 1, "bare", "fixed"
    for value, allowed in ((args.rows, ("bare", "defaults")), (args.allocators, ("fixed", "glibc"))):
        for v in value.split(","):
            if v not in allowed:
                parser.error(f"unknown {v!r}; choose from {', '.join(allowed)}")
    columns = ["hand-written", "ember"]
    if not args.no_lightning and importlib.util.find_spec("pytorch_lightning") is not None:
        columns.append("lightning")
    results, first = {}, None
    for row in args.rows.split(","):
        for allocator in args.allocators.split(","):
            runs: dict = {c: [] for c in columns}
            for r in range(args.repeats):
                for c in columns if r % 2 == 0 else columns[::-1]:
                    run = run_child(c, args.steps, bare=row == "bare", hash_seed=r, allocator=allocator)
                    run["during_mb"] = run["peak_rss_mb"] - run["start_rss_mb"]  # what the loop adds
                    runs[c].append(run)
            first = first or runs["hand-written"][0]
            results[(row, allocator)] = {c: {k: [run[k] for run in rs] for k in rs[0] if k.endswith("_mb")}
                                         for c, rs in runs.items()}

    cuda = first["cuda"]  # the parent does not import torch: the children say what they ran on
    keys = ["peak_rss_mb"] + (["cuda_max_allocated_mb"] if cuda else [])
    print(f"MLP {'-'.join(map(str, WIDTHS))}, Adam, batch {BATCH}, {args.steps} steps, "
          f"{'CUDA' if cuda else 'CPU'}, torch {first['torch']}; fresh process per run, "
          f"{args.repeats} interleaved repeats, medians (min–max), MiB")
    others = columns[1:]
    print("| row | allocator | measure | " + " | ".join(columns) + " | "
          + " | ".join(f"{c} / hand-written (diff)" for c in others) + " |")
    print("|---" * (3 + len(columns) + len(others)) + "|")
    rows = []
    for (row, allocator), res in results.items():
        for key in keys + ["start_rss_mb", "during_mb"]:
            if key == "cuda_max_allocated_mb" and allocator != args.allocators.split(",")[0]:
                continue  # the CUDA caching allocator does not depend on glibc's setting
            vals = {c: statistics.median(res[c][key]) for c in columns}
            cells = " | ".join(f"{vals[c]:.1f} ({min(res[c][key]):.0f}–{max(res[c][key]):.0f})" for c in columns)
            ratio = {c: vals[c] / vals["hand-written"] if vals["hand-written"] else float("nan") for c in others}
            rcells = " | ".join(f"**{ratio[c]:.3f}** ({vals[c] - vals['hand-written']:+.1f} MiB)" for c in others)
            print(f"| {row} | {allocator} | {LABELS[key]} | {cells} | {rcells} |")
            if key in keys:
                rows.append({"benchmark": "memory", "row": f"{row}, {allocator} allocator: {LABELS[key]}",
                             "ratio": ratio["ember"],
                             "figure": f"{ratio['ember']:.3f} ({vals['ember'] - vals['hand-written']:+.1f} MiB)",
                             "lightning": (f"{ratio['lightning']:.3f} ({vals['lightning'] - vals['hand-written']:+.1f}"
                                           " MiB)") if "lightning" in ratio else "",
                             "target": "~1.00", "detail": f"hand-written {vals['hand-written']:.0f} MiB"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
