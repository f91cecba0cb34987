"""A small CNN on the 8x8 digits with a one-cycle learning rate, logged to CSV and read back.

Lightning features exercised: `import pytorch_lightning as pl`, seed_everything, OneCycleLR stepped every
batch ("interval": "step") with total_steps from self.trainer.estimated_stepping_batches,
LearningRateMonitor(logging_interval="step"), CSVLogger(save_dir=".") whose metrics.csv the program reads
back from trainer.logger.log_dir, torchmetrics.functional.accuracy, and dataloaders passed directly to
trainer.fit / trainer.test.

Written for ember's compatibility corpus.
"""
import csv
import json
import os

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional import accuracy


class DigitsCNN(pl.LightningModule):
    def __init__(self, lr: float = 0.05, channels: int = 8):
        super().__init__()
        self.save_hyperparameters()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, kernel_size=3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Linear(2 * channels * 2 * 2, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def evaluate(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = accuracy(logits.argmax(dim=1), y, task="multiclass", num_classes=10)
        self.log(f"{stage}_loss", loss, prog_bar=True)
        self.log(f"{stage}_acc", acc, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self.evaluate(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=0.1,
            total_steps=self.trainer.estimated_stepping_batches,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def make_loaders():
    digits = load_digits()
    images = torch.tensor(digits.images[:500], dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target[:500], dtype=torch.long)
    train = TensorDataset(images[:350], labels[:350])
    val = TensorDataset(images[350:425], labels[350:425])
    test = TensorDataset(images[425:], labels[425:])
    return (
        DataLoader(train, batch_size=25, shuffle=True),
        DataLoader(val, batch_size=25),
        DataLoader(test, batch_size=25),
    )


def last_value(rows, column):
    values = [row[column] for row in rows if row.get(column) not in (None, "")]
    return float(values[-1]) if values else None


def main():
    pl.seed_everything(7)
    train_loader, val_loader, test_loader = make_loaders()
    model = DigitsCNN()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=CSVLogger(save_dir="."),
        callbacks=[LearningRateMonitor(logging_interval="step")],
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, train_loader, val_loader)
    val_acc = float(trainer.callback_metrics["val_acc"])
    test_result = trainer.test(model, dataloaders=test_loader)[0]

    with open(os.path.join(trainer.logger.log_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    lr_column = [name for name in rows[0] if name.startswith("lr")][0]

    metrics = {
        "test_loss": float(test_result["test_loss"]),
        "test_acc": float(test_result["test_acc"]),
        "val_acc": val_acc,
        "csv_lr_column": lr_column,
        "csv_last_lr": last_value(rows, lr_column),
        "csv_last_val_acc": last_value(rows, "val_acc"),
        "csv_rows": len(rows),
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
