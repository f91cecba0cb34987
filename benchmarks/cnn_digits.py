"""Per-step time of a small CNN on scikit-learn's bundled digits: ember's Trainer against a hand-written loop.

The 1,797 8x8 images of ``sklearn.datasets.load_digits`` (no download), scaled to [0, 1]; the CNN of ``ember demo``
(conv 1->16, conv 16->32, max-pool, linear 512->64, dropout 0.1, linear 64->10: about 40k parameters), cross-entropy,
Adam (lr 2e-3), batch 64, shuffled (29 batches an epoch, the last one of 5), one CPU thread. A run of ``--steps``
steps is ``steps / 29`` epochs over the same ``DataLoader``. The LightningModule calls ``self.log("train_loss",
loss)`` every step; the hand-written loop does not. Repeats alternate between the columns (the order reverses
every repeat); the figure is the median of the per-repeat ratios ember / hand-written. Target: 1.05 or less.

    python benchmarks/cnn_digits.py                    # rows: bare (no progress bar, summary, logger, checkpoints)
                                                       # and defaults (ember's defaults)
    python benchmarks/cnn_digits.py --steps 580 --repeats 11 --rows bare
    /tmp/plvenv/bin/python benchmarks/cnn_digits.py    # adds a PyTorch Lightning column if it is installed
    python benchmarks/cnn_digits.py --quick            # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import ember  # noqa: E402

BATCH = 64
ROWS = {"bare": True, "defaults": False}


def make_data() -> TensorDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return TensorDataset(images, torch.tensor(digits.target, dtype=torch.long))


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10),
    )


def module_class(base: type) -> type:
    class DigitsCNN(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=2e-3)

    return DigitsCNN


def hand_written(loader: DataLoader, epochs: int) -> tuple:
    net = make_net()

    def train() -> None:
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(epochs):
            for x, y in loader:
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

    return h.clocked(train)


def with_trainer(framework, bare: bool, loader: DataLoader, epochs: int) -> tuple:
    return h.fit_with_trainer(framework, module_class(framework.LightningModule)(), bare, loader, epochs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.add_arguments(parser, steps=29 * 10, repeats=11)
    parser.add_argument("--rows", default="bare,defaults", help=f"comma-separated, from {list(ROWS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier timings)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 29, 1
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    rows = {r: ROWS[r] for r in args.rows.split(",")}
    torch.set_num_threads(args.threads)
    lightning = h.lightning_package(args.no_lightning)
    loader = DataLoader(make_data(), batch_size=BATCH, shuffle=True)
    per_epoch = len(loader)

    def epochs_for(steps: int) -> int:
        return max(1, math.ceil(steps / per_epoch))

    def columns(bare: bool, steps: int) -> dict:
        epochs = epochs_for(steps)
        cols = {"hand-written": lambda: hand_written(loader, epochs),
                "ember": lambda: with_trainer(ember, bare, loader, epochs)}
        if lightning is not None:
            cols["lightning"] = lambda: with_trainer(lightning, bare, loader, epochs)
        return cols

    print(f"digits CNN (~40k parameters), {len(loader.dataset)} images, batch {BATCH}, {args.threads} thread(s); "
          f"torch {torch.__version__}, ember {ember.__version__}"
          + (f", pytorch_lightning {lightning.__version__}" if lightning else "")
          + f"; {args.repeats} interleaved repeats; µs/step are medians, ratio = median of per-repeat ratios")
    h.run_steps_benchmark("cnn_digits", args, rows, columns, target=1.05,
                          steps_per_run=lambda steps: epochs_for(steps) * per_epoch)


if __name__ == "__main__":
    main()
