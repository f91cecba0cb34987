"""Per-step overhead of ember's Trainer against a hand-written PyTorch loop, in one process.

The same tiny MLP (32-64-10), batch 16, one CPU thread, SGD; the LightningModule calls
``self.log`` every step. Both runs see the same batches; repeats alternate between the two and
the script prints the median ratio of wall times (ember / hand-written). Target: 1.05 or less.

    python benchmarks/overhead.py            # defaults: progress bar, model summary, CSV logger, checkpoints
    python benchmarks/overhead.py --bare     # Trainer with the default callbacks and logger turned off
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember


def make_data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 32, generator=g), torch.randint(0, 10, (n,), generator=g))


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


class MLP(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def hand_written(loader: DataLoader, epochs: int) -> float:
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def with_trainer(loader: DataLoader, epochs: int, bare: bool) -> float:
    model = MLP()
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        flags = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False) if bare else {}
        trainer = ember.Trainer(max_epochs=epochs, accelerator="cpu", default_root_dir=root, **flags)
        start = time.perf_counter()
        trainer.fit(model, loader)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16 * 2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bare", action="store_true", help="turn off progress bar, summary, logger, checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loader = DataLoader(make_data(args.samples), batch_size=16)
    hand_written(loader, 1)  # warm up both paths
    with_trainer(loader, 1, args.bare)
    ratios, base, ours = [], [], []
    for _ in range(args.repeats):
        b = hand_written(loader, args.epochs)
        e = with_trainer(loader, args.epochs, args.bare)
        base.append(b)
        ours.append(e)
        ratios.append(e / b)
    steps = args.epochs * len(loader)
    print(f"steps per run: {steps}; hand-written: {statistics.median(base) / steps * 1e6:.1f} us/step; "
          f"ember: {statistics.median(ours) / steps * 1e6:.1f} us/step")
    print(f"median ratio ember / hand-written ({'bare' if args.bare else 'default callbacks'}): "
          f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
