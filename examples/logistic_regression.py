"""Logistic regression: a binary classifier on scikit-learn's bundled breast-cancer data (569 rows, 30 features).

Shows a LightningDataModule that standardises features with statistics from the training split
only, ``BCEWithLogitsLoss`` on a single linear layer, accuracy logged per epoch with
``on_epoch=True``, and weight decay as L2 regularisation. No download: the data ships with sklearn.
Run: ``python examples/logistic_regression.py [--max-epochs 30] [--fast]``.
"""
import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl


class BreastCancerData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage):
        if hasattr(self, "train_set"):
            return
        from sklearn.datasets import load_breast_cancer

        x, y = load_breast_cancer(return_X_y=True)
        x = torch.tensor(x, dtype=torch.float32)
        y = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.hparams.seed))
        n_val = n_test = len(x) // 6
        test_idx, val_idx, train_idx = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
        mean, std = x[train_idx].mean(0), x[train_idx].std(0) + 1e-6  # training statistics only
        x = (x - mean) / std
        self.train_set = TensorDataset(x[train_idx], y[train_idx])
        self.val_set = TensorDataset(x[val_idx], y[val_idx])
        self.test_set = TensorDataset(x[test_idx], y[test_idx])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=256)


class LogisticRegression(pl.LightningModule):
    def __init__(self, in_features: int = 30, lr: float = 0.05, weight_decay: float = 1e-4):
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(in_features, 1)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def forward(self, x):
        return torch.sigmoid(self.linear(x))  # probabilities; the loss uses the logits directly

    def _step(self, batch, stage):
        x, y = batch
        logits = self.linear(x)
        loss = self.loss_fn(logits, y)
        acc = ((logits > 0).float() == y).float().mean()
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}_acc", acc, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--root-dir", default="lightning_logs_examples/logistic_regression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 2 epochs")
    args = parser.parse_args(argv)
    if args.fast:
        args.max_epochs = 2

    pl.seed_everything(args.seed)
    data = BreastCancerData(seed=args.seed)
    model = LogisticRegression(lr=args.lr)
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir,
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast, log_every_n_steps=5)
    trainer.fit(model, datamodule=data)
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    print(f"test_acc={result['test_acc']:.4f} test_loss={result['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
