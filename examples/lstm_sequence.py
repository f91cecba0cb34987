"""An LSTM that reads 30 noisy samples of a sine wave and predicts the next 5, on synthetic data.

Shows a recurrent network as a LightningModule: batch-first ``nn.LSTM`` whose last hidden state
feeds a linear head, gradient clipping through ``Trainer(gradient_clip_val=...)`` (the usual
guard for RNNs), and a comparison with the naive "repeat the last value" baseline at the end.
Run: ``python examples/lstm_sequence.py [--max-epochs 10] [--fast]``.
"""
import argparse
import math

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember as pl


def make_sine_windows(n: int, seq_len: int, horizon: int, seed: int):
    """Windows of sin(f t + phase) + noise with random frequency and phase; targets are the next ``horizon`` values."""
    g = torch.Generator().manual_seed(seed)
    freq = 0.1 + 0.3 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    t = torch.arange(seq_len + horizon, dtype=torch.float32)
    wave = torch.sin(freq * t + phase)
    x = wave[:, :seq_len] + 0.05 * torch.randn(n, seq_len, generator=g)
    return TensorDataset(x.unsqueeze(-1), wave[:, seq_len:])


class SineLSTM(pl.LightningModule):
    def __init__(self, hidden_size: int = 64, num_layers: int = 1, horizon: int = 5, lr: float = 1e-2):
        super().__init__()
        self.save_hyperparameters()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, x):  # x: (batch, seq_len, 1)
        output, (h_n, c_n) = self.lstm(x)
        return self.head(h_n[-1])  # the last layer's final hidden state summarises the sequence

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.mse_loss(self(x), y))
        baseline = x[:, -1, :].expand_as(y)  # "the wave stays where it is"
        self.log("baseline_loss", F.mse_loss(baseline, y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--root-dir", default="lightning_logs_examples/lstm_sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 1 epoch on 256 sequences")
    args = parser.parse_args(argv)
    if args.fast:
        args.max_epochs, args.samples, args.hidden_size = 1, 256, 16

    pl.seed_everything(args.seed)
    data = make_sine_windows(args.samples, seq_len=30, horizon=5, seed=args.seed)
    train, val, test = random_split(data, [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(args.seed))
    model = SineLSTM(hidden_size=args.hidden_size)
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir, gradient_clip_val=1.0,
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast, log_every_n_steps=10)
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))
    result = trainer.test(model, DataLoader(test, batch_size=256), verbose=False)[0]
    print(f"test_loss={result['test_loss']:.4f} baseline_loss={result['baseline_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
