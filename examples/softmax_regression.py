"""Softmax regression: one linear layer classifies scikit-learn's bundled 8x8 digits into 10 classes.

Shows multinomial logistic regression as a LightningModule (``cross_entropy`` on raw logits),
a ``predict_step`` used through ``trainer.predict`` to get class labels, and a learning-rate
schedule returned from ``configure_optimizers``. No download: the digits ship with scikit-learn.
Run: ``python examples/softmax_regression.py [--max-epochs 20] [--fast]``.
"""
import argparse

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember as pl


class SoftmaxRegression(pl.LightningModule):
    def __init__(self, in_features: int = 64, num_classes: int = 10, lr: float = 0.1, max_epochs: int = 20):
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))  # logits; softmax lives inside cross_entropy

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        x, _ = batch
        return self(x).softmax(dim=1).argmax(dim=1)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.hparams.max_epochs))
        return [optimizer], [scheduler]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--root-dir", default="lightning_logs_examples/softmax_regression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 1 epoch")
    args = parser.parse_args(argv)
    if args.fast:
        args.max_epochs = 1

    from sklearn.datasets import load_digits

    pl.seed_everything(args.seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    train, val, test = random_split(TensorDataset(x, y), [0.7, 0.15, 0.15],
                                    generator=torch.Generator().manual_seed(args.seed))
    model = SoftmaxRegression(lr=args.lr, max_epochs=args.max_epochs)
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir,
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast, log_every_n_steps=10)
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=512))
    result = trainer.test(model, DataLoader(test, batch_size=512), verbose=False)[0]
    predictions = torch.cat(trainer.predict(model, DataLoader(test, batch_size=512)))
    print(f"first predictions: {predictions[:10].tolist()}")
    print(f"test_acc={result['test_acc']:.4f} test_loss={result['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
