"""Per-step overhead of ember's Trainer against a hand-written PyTorch loop, in one process.

The same tiny MLP (32-64-10), batch 16, one CPU thread, SGD; the LightningModule calls
``self.log`` every step. Both runs see the same batches; repeats alternate between the two (the order
reverses every repeat) and the script prints the median ratio of wall times (ember / hand-written), and
the same ratio of CPU times. Target: 1.05 or less.

    python benchmarks/overhead.py            # defaults: progress bar, model summary, CSV logger, checkpoints
    python benchmarks/overhead.py --bare     # Trainer with the default callbacks and logger turned off
    python benchmarks/overhead.py --bare --model noop   # a one-parameter step: ember's own µs per step
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import ember  # noqa: E402


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


class OneParameter(ember.LightningModule):
    """``--model noop``: a step that costs almost nothing, so the difference to the hand-written loop is the
    Trainer's own per-step Python (plus ``self.log`` and the module's attribute access)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        loss = self.w * 1.0
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def hand_written_noop(loader: DataLoader, epochs: int) -> tuple:
    w = nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)

    def train() -> None:
        for _ in range(epochs):
            for _batch in loader:
                loss = w * 1.0
                opt.zero_grad()
                loss.backward()
                opt.step()

    return h.clocked(train)


def hand_written(loader: DataLoader, epochs: int) -> tuple:
    """(wall, CPU) seconds of the loop."""
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def train() -> None:
        for _ in range(epochs):
            for x, y in loader:
                loss = nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

    return h.clocked(train)


def with_trainer(loader: DataLoader, epochs: int, bare: bool, model_class: type = MLP) -> tuple:
    """(wall, CPU) seconds in ``trainer.fit``."""
    model = model_class()
    with tempfile.TemporaryDirectory() as root, h.silenced():
        flags = h.BARE if bare else {}
        trainer = ember.Trainer(max_epochs=epochs, accelerator="cpu", default_root_dir=root, **flags)
        return h.timed_fit(trainer, model, loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16 * 2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bare", action="store_true", help="turn off progress bar, summary, logger, checkpoints")
    parser.add_argument("--model", choices=["mlp", "noop"], default="mlp",
                        help="noop: a one-parameter step, so the difference is the Trainer's own µs per step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "noop":
        loader = DataLoader(range(args.samples // 16), batch_size=None)  # the same number of steps, no data work
        hand, model_class = hand_written_noop, OneParameter
    else:
        loader = DataLoader(make_data(args.samples), batch_size=16)
        hand, model_class = hand_written, MLP
    columns = {"hand-written": lambda: hand(loader, args.epochs),
               "ember": lambda: with_trainer(loader, args.epochs, args.bare, model_class)}
    steps = args.epochs * len(loader)
    res = h.interleaved(columns, args.repeats, per=steps)  # warms both up; the order reverses every repeat
    wall, cpu = res["wall"], res["cpu"]
    print(f"steps per run: {steps}; hand-written: {wall['per']['hand-written'] * 1e6:.1f} us/step; "
          f"ember: {wall['per']['ember'] * 1e6:.1f} us/step")
    print(f"CPU-time ratio (process_time, steadier on a shared machine): {cpu['ratio']['ember']:.3f} "
          f"({cpu['spread']['ember'][0]:.2f}-{cpu['spread']['ember'][1]:.2f})")
    if args.model == "noop":
        extra = (cpu["per"]["ember"] - cpu["per"]["hand-written"]) * 1e6
        print(f"ember's own CPU time per step: {extra:.2f} us (difference of the median CPU times per step)")
    print(f"median ratio ember / hand-written ({'bare' if args.bare else 'default callbacks'}"
          f"{', noop model' if args.model == 'noop' else ''}): {wall['ratio']['ember']:.3f}")


if __name__ == "__main__":
    main()
