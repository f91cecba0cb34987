"""Save and load time of a ~100M-parameter checkpoint: ember's paths against plain ``torch.save``/``torch.load``.

The model is a stack of ``nn.Linear(4096, 4096)`` layers (6 of them: 100.7M float32 parameters, 403 MB), trained
for one step by ember's Trainer with plain SGD (no optimizer state) so that ``trainer.save_checkpoint`` has
something to save. Compared, on the same disk (a temporary folder under ``--dir``, default the system's temp
folder; removed at the end), in alternating order:

* save: ember's ``trainer.save_checkpoint(path)`` (the checkpoint dict, written to a temporary file, ``fsync``,
  renamed over ``path``, the folder ``fsync``-ed) against ``torch.save(net.state_dict(), path)`` (no fsync: the
  data may still be in the page cache when it returns) and against ``torch.save`` followed by ``flush`` and
  ``os.fsync`` (the fair comparison for a durable write). Before every save its file is deleted and after it
  ``os.sync()`` runs, both outside the timing: every save writes a new file and none pays for the previous one's
  write-back or freed blocks.
* load: ``ember._checkpoint_io.load_checkpoint(path)`` against ``torch.load(path, weights_only=True)``, and
  ``Model.load_from_checkpoint(path)`` (build the model from the saved hyper-parameters, load the weights) against
  building the same ``nn.Sequential`` and ``load_state_dict(torch.load(path, weights_only=True))``. The files were
  just written, so both read from the page cache.

Figures are medians; ratios are medians of the per-repeat ratios ember / plain torch.

    python benchmarks/checkpoint_io.py                 # 7 repeats, 100.7M parameters
    python benchmarks/checkpoint_io.py --layers 12     # 201M parameters
    python benchmarks/checkpoint_io.py --quick         # 4 layers of 512: a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import ember  # noqa: E402
from ember._checkpoint_io import load_checkpoint  # noqa: E402


def make_net(width: int, layers: int) -> nn.Sequential:
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])


class Model(ember.LightningModule):
    def __init__(self, width: int = 4096, layers: int = 6) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = make_net(width, layers)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn, remove: str = "") -> float:
    if remove and os.path.exists(remove):
        os.unlink(remove)  # every save writes a new file: none pays for freeing the previous one's blocks
        os.sync()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    os.sync()  # the next timed operation does not share the disk with this one's write-back
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=0, help="unused: every benchmark takes it")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system temp folder)")
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke run, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the result rows to PATH (run_all.py reads them)")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.layers, args.repeats = 512, 4, 1

    root = tempfile.mkdtemp(prefix="ember-ckpt-bench-", dir=args.dir)
    try:
        model = Model(args.width, args.layers)
        params = sum(p.numel() for p in model.parameters())
        with h.silenced():
            trainer = ember.Trainer(max_steps=1, accelerator="cpu", default_root_dir=root, **h.BARE)
            trainer.fit(model, DataLoader(TensorDataset(torch.randn(1, args.width)), batch_size=1))
        model.zero_grad(set_to_none=True)
        state = model.net.state_dict()
        ckpt, plain, synced = (os.path.join(root, n) for n in ("ember.ckpt", "plain.pt", "plain-fsync.pt"))

        def torch_save() -> None:
            torch.save(state, plain)

        def torch_save_fsync() -> None:
            with open(synced, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())

        def ember_save() -> None:
            trainer.save_checkpoint(ckpt)

        def torch_load() -> None:
            torch.load(plain, map_location="cpu", weights_only=True)

        def ember_load() -> None:
            load_checkpoint(ckpt)

        def torch_build_and_load() -> None:
            make_net(args.width, args.layers).load_state_dict(torch.load(plain, map_location="cpu", weights_only=True))

        def ember_load_from_checkpoint() -> None:
            Model.load_from_checkpoint(ckpt)

        targets = {torch_save: plain, torch_save_fsync: synced, ember_save: ckpt}
        groups = {
            "save": {"torch.save": torch_save, "torch.save + fsync": torch_save_fsync,
                     "trainer.save_checkpoint": ember_save},
            "load": {"torch.load": torch_load, "load_checkpoint": ember_load},
            "load into a model": {"build + load_state_dict(torch.load)": torch_build_and_load,
                                  "Model.load_from_checkpoint": ember_load_from_checkpoint},
        }
        for fns in groups.values():  # warm up every path (and write every file once)
            for fn in fns.values():
                timed(fn, targets.get(fn, ""))
        times: dict = {g: {n: [] for n in fns} for g, fns in groups.items()}
        for r in range(args.repeats):
            for g, fns in groups.items():
                names = list(fns) if r % 2 == 0 else list(fns)[::-1]
                for n in names:
                    times[g][n].append(timed(fns[n], targets.get(fns[n], "")))
        sizes = {n: os.path.getsize(p) / 1e6 for n, p in (("plain", plain), ("ember", ckpt))}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def ratio(g: str, a: str, b: str) -> tuple:
        rs = [x / y for x, y in zip(times[g][a], times[g][b])]
        return statistics.median(rs), min(rs), max(rs)

    med = {g: {n: statistics.median(v) for n, v in t.items()} for g, t in times.items()}
    print(f"{params / 1e6:.1f}M parameters ({args.layers} x Linear({args.width}, {args.width})), files: plain "
          f"{sizes['plain']:.0f} MB, ember checkpoint {sizes['ember']:.0f} MB; torch {torch.__version__}, "
          f"ember {ember.__version__}; {args.repeats} interleaved repeats, medians")
    print("| operation | plain torch, s (fastest) | ember, s (fastest) | ember / plain (min–max) |")
    print("|---|---|---|---|")
    compare = [
        ("save", "torch.save", "trainer.save_checkpoint", "save, vs torch.save (no fsync)"),
        ("save", "torch.save + fsync", "trainer.save_checkpoint", "save, vs torch.save + fsync"),
        ("load", "torch.load", "load_checkpoint", "load_checkpoint vs torch.load(weights_only=True)"),
        ("load into a model", "build + load_state_dict(torch.load)", "Model.load_from_checkpoint",
         "Model.load_from_checkpoint vs build + load_state_dict"),
    ]
    rows = []
    for g, base, ours, label in compare:
        r, lo, hi = ratio(g, ours, base)
        print(f"| {label} | {med[g][base]:.3f} ({min(times[g][base]):.3f}) | {med[g][ours]:.3f} "
              f"({min(times[g][ours]):.3f}) | **{r:.3f}** ({lo:.2f}–{hi:.2f}) |")
        rows.append({"benchmark": "checkpoint_io", "row": label, "ratio": r, "figure": f"{r:.3f} ({lo:.2f}–{hi:.2f})",
                     "lightning": "", "target": "",
                     "detail": f"{med[g][base]:.3f} s vs {med[g][ours]:.3f} s, {params / 1e6:.0f}M params"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
