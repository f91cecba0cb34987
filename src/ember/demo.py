"""``ember demo``: a small CNN learns scikit-learn's bundled handwritten digits (8x8 images).

It shows the whole path in well under a minute on two CPU cores: a LightningDataModule,
validation, early stopping, checkpointing of the best model, and a test of that checkpoint.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.loggers import CSVLogger


class DigitsDataModule(ember.LightningDataModule):
    """The 1,797 digits that ship inside scikit-learn, split 70/15/15 with a fixed seed."""

    def __init__(self, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        if hasattr(self, "train_set"):
            return
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise ImportError("`ember demo` needs scikit-learn for its bundled digits: pip install -e '.[demo]'") from e
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        data = TensorDataset(images, labels)
        n_val = n_test = int(0.15 * len(data))
        self.train_set, self.val_set, self.test_set = random_split(
            data, [len(data) - n_val - n_test, n_val, n_test], generator=torch.Generator().manual_seed(self.hparams.seed)
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


class DigitsCNN(ember.LightningModule):
    """Two convolutions, a pooling layer and two linear layers: about 40k parameters."""

    def __init__(self, lr: float = 2e-3, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10),
        )
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch, prefix: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log(f"{prefix}_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def run(max_epochs: int = 30, root_dir: str = "ember-demo", seed: int = 0,
        enable_progress_bar: bool = True) -> dict:
    """Train, keep the best checkpoint by validation accuracy, test it; returns the test metrics."""
    ember.seed_everything(seed)
    start = time.perf_counter()
    datamodule = DigitsDataModule(seed=seed)
    model = DigitsCNN()
    checkpoint = ModelCheckpoint(monitor="val_acc", mode="max", filename="digits-{epoch:02d}-{val_acc:.3f}")
    trainer = ember.Trainer(
        max_epochs=max_epochs,
        default_root_dir=root_dir,
        callbacks=[EarlyStopping(monitor="val_loss", patience=5), checkpoint],
        logger=CSVLogger(save_dir=root_dir),  # metrics.csv: readable with any tool
        enable_progress_bar=enable_progress_bar,
        log_every_n_steps=10,
    )
    trainer.fit(model, datamodule=datamodule)
    try:
        from ember.plot import plot_metrics

        print(f"curves: {plot_metrics(os.path.join(trainer.log_dir, 'metrics.csv'))}")
    except ImportError as e:  # matplotlib is optional: the run itself does not need it
        print(f"curves: not drawn ({e})")
    results = trainer.test(ckpt_path="best", datamodule=datamodule, verbose=False)[0]
    seconds = time.perf_counter() - start
    print(f"best checkpoint: {checkpoint.best_model_path}")
    print(f"logs: {trainer.log_dir}/metrics.csv")
    print(f"epochs trained: {trainer.current_epoch}, time: {seconds:.1f} s")
    print(f"test_acc={results['test_acc']:.4f} test_loss={results['test_loss']:.4f}")
    return results


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="ember demo", description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--root-dir", default="ember-demo", help="where logs and checkpoints go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)
    run(args.max_epochs, args.root_dir, args.seed, not args.no_progress_bar)
    return 0
