"""Linear regression, the introductory articles' first LightningModule, on synthetic data.

Shows the smallest complete program: a LightningModule with training/validation/test steps,
``self.log``, an SGD optimizer from ``configure_optimizers`` and ``pl.Trainer().fit``. The data
is y = X @ w + b + noise with known w, b, so the end of the run prints how close the fit got.
Run: ``python examples/linear_regression.py [--max-epochs 20] [--fast]``.
"""
import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember as pl


class LightningModel(pl.LightningModule):
    def __init__(self, in_features: int = 10, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(in_features, 1)
        self.loss_fn = nn.MSELoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.loss_fn(self(x), y), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", self.loss_fn(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def make_data(n: int, in_features: int, seed: int):
    """Rows of X ~ N(0, 1), y = X @ w + b + 0.1 * noise; returns the dataset and the true (w, b)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(in_features, 1, generator=g)
    b = torch.randn(1, generator=g)
    x = torch.randn(n, in_features, generator=g)
    y = x @ w + b + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y), w, b


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--root-dir", default="lightning_logs_examples/linear_regression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 2 epochs on 256 samples")
    args = parser.parse_args(argv)
    if args.fast:
        args.max_epochs, args.samples = 2, 256

    pl.seed_everything(args.seed)
    data, w, b = make_data(args.samples, 10, args.seed)
    train, val, test = random_split(data, [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(args.seed))
    model = LightningModel(lr=args.lr)
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir,
                         enable_progress_bar=not args.fast, log_every_n_steps=10)
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=256))
    result = trainer.test(model, DataLoader(test, batch_size=256), verbose=False)[0]
    weight_error = (model.net.weight.detach().T - w).abs().max().item()
    print(f"true bias {b.item():.3f}, learned bias {model.net.bias.item():.3f}")
    print(f"test_loss={result['test_loss']:.4f} max_weight_error={weight_error:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
