"""Per-step time of an LSTM trained by ember's Trainer against a hand-written PyTorch loop, in one process.

The model and data of PyTorch Lightning's own speed-parity test (``ParityModuleRNN`` with ``AverageDataset``
in Lightning's ``tests/parity_pytorch``, where Lightning's target is the hand-written time + 5%):
``nn.LSTM(10, 20, batch_first=True)`` and ``nn.Linear(20, 5)`` on every time step, MSE loss, Adam (lr 0.02);
300 random sequences of 100 steps x 10 features, the target is the first five features plus the last five
rolled by one, batch 30 (10 batches an epoch), so a run of ``--steps`` steps is ``steps / 10`` epochs. One CPU
thread. The LightningModule returns ``{"loss": loss}`` and calls ``self.log("train_loss", loss)`` every step;
the hand-written loop does neither. Repeats alternate between the columns (the order reverses every repeat);
the figure is the median of the per-repeat ratios ember / hand-written. Target: 1.05 or less.

    python benchmarks/lstm.py                      # rows: bare (no progress bar, summary, logger, checkpoints)
                                                   # and defaults (ember's defaults)
    python benchmarks/lstm.py --steps 400 --repeats 11 --rows bare
    /tmp/plvenv/bin/python benchmarks/lstm.py      # adds a PyTorch Lightning column if it is installed
    python benchmarks/lstm.py --quick              # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import ember  # noqa: E402

BATCH, SAMPLES, SEQ = 30, 300, 100
ROWS = {"bare": True, "defaults": False}


def make_data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, SEQ, 10, generator=g)
    top, bottom = x.chunk(2, -1)
    return TensorDataset(x, top + bottom.roll(shifts=1, dims=-1))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(10, 20, batch_first=True)
        self.linear_out = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(x)
        return self.linear_out(seq)


def module_class(base: type) -> type:
    class ParityRNN(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return {"loss": loss}

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    return ParityRNN


def hand_written(loader: DataLoader, epochs: int) -> tuple:
    net = Net()

    def train() -> None:
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(epochs):
            for x, y in loader:
                loss = F.mse_loss(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

    return h.clocked(train)


def with_trainer(framework, bare: bool, loader: DataLoader, epochs: int) -> tuple:
    return h.fit_with_trainer(framework, module_class(framework.LightningModule)(), bare, loader, epochs)


def epochs_for(steps: int) -> int:
    return max(1, round(steps / (SAMPLES // BATCH)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.add_arguments(parser, steps=200, repeats=11)
    parser.add_argument("--rows", default="bare,defaults", help=f"comma-separated, from {list(ROWS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier timings)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 10, 1
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    rows = {r: ROWS[r] for r in args.rows.split(",")}
    torch.set_num_threads(args.threads)
    lightning = h.lightning_package(args.no_lightning)
    loader = DataLoader(make_data(), batch_size=BATCH)

    def columns(bare: bool, steps: int) -> dict:
        epochs = epochs_for(steps)
        cols = {"hand-written": lambda: hand_written(loader, epochs),
                "ember": lambda: with_trainer(ember, bare, loader, epochs)}
        if lightning is not None:
            cols["lightning"] = lambda: with_trainer(lightning, bare, loader, epochs)
        return cols

    print(f"LSTM(10, 20) + Linear(20, 5), batch {BATCH}, sequence {SEQ}, {args.threads} thread(s); "
          f"torch {torch.__version__}, ember {ember.__version__}"
          + (f", pytorch_lightning {lightning.__version__}" if lightning else "")
          + f"; {args.repeats} interleaved repeats; µs/step are medians, ratio = median of per-repeat ratios")
    h.run_steps_benchmark("lstm", args, rows, columns, target=1.05,
                          steps_per_run=lambda steps: epochs_for(steps) * (SAMPLES // BATCH))


if __name__ == "__main__":
    main()
