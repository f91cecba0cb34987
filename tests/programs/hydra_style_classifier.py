"""A digits classifier in the lightning-hydra-template style, with `import lightning as L`.

Lightning features exercised: a LightningModule taking its network, a partial optimizer and a partial
scheduler (save_hyperparameters(logger=False), self.hparams.optimizer/scheduler), ReduceLROnPlateau returned in
a lr_scheduler dict with monitor/interval/frequency, torchmetrics objects (Accuracy, MeanMetric, MaxMetric)
passed to self.log, a best val/acc tracked in on_validation_epoch_end, a LightningDataModule splitting the data
into train/val/test, ModelCheckpoint (epoch_{epoch:03d}, save_last) and EarlyStopping on val/acc,
gradient_clip_val, and trainer.test with ckpt_path=best_model_path.

Written for ember's compatibility corpus.
"""
import functools
import json

import lightning as L
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset, random_split
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import Accuracy


class DigitsDataModule(L.LightningDataModule):
    def __init__(self, n_samples: int = 600, batch_size: int = 32):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.train_set = self.val_set = self.test_set = None

    def setup(self, stage=None):
        if self.train_set is not None:
            return
        digits = load_digits()
        x = torch.tensor(digits.data[: self.hparams.n_samples], dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target[: self.hparams.n_samples], dtype=torch.long)
        full = TensorDataset(x, y)
        self.train_set, self.val_set, self.test_set = random_split(
            full, [400, 100, 100], generator=torch.Generator().manual_seed(42)
        )

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.hparams.batch_size)


class SimpleDenseNet(torch.nn.Module):
    def __init__(self, input_size: int = 64, hidden: int = 48, output_size: int = 10):
        super().__init__()
        self.model = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden),
            torch.nn.BatchNorm1d(hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, output_size),
        )

    def forward(self, x):
        return self.model(x.view(x.size(0), -1))


class DigitsLitModule(LightningModule):
    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: functools.partial,
        scheduler: functools.partial,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = net
        self.criterion = torch.nn.CrossEntropyLoss()

        self.train_acc = Accuracy(task="multiclass", num_classes=10)
        self.val_acc = Accuracy(task="multiclass", num_classes=10)
        self.test_acc = Accuracy(task="multiclass", num_classes=10)

        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

        self.val_acc_best = MaxMetric()

    def forward(self, x):
        return self.net(x)

    def on_train_start(self):
        self.val_loss.reset()
        self.val_acc.reset()
        self.val_acc_best.reset()

    def model_step(self, batch):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        return loss, logits.argmax(dim=1), y

    def training_step(self, batch, batch_idx):
        loss, preds, targets = self.model_step(batch)
        self.train_loss(loss)
        self.train_acc(preds, targets)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, preds, targets = self.model_step(batch)
        self.val_loss(loss)
        self.val_acc(preds, targets)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self):
        acc = self.val_acc.compute()
        self.val_acc_best(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx):
        loss, preds, targets = self.model_step(batch)
        self.test_loss(loss)
        self.test_acc(preds, targets)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True, prog_bar=True)

    def setup(self, stage):
        if self.hparams.compile and stage == "fit":
            self.net = torch.compile(self.net)

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is not None:
            scheduler = self.hparams.scheduler(optimizer=optimizer)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": scheduler,
                    "monitor": "val/loss",
                    "interval": "epoch",
                    "frequency": 1,
                },
            }
        return {"optimizer": optimizer}


def main():
    L.seed_everything(12345, workers=True)
    datamodule = DigitsDataModule()
    model = DigitsLitModule(
        net=SimpleDenseNet(),
        optimizer=functools.partial(torch.optim.Adam, lr=0.002, weight_decay=0.0),
        scheduler=functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min", factor=0.1, patience=10),
        compile=False,
    )
    callbacks = [
        ModelCheckpoint(
            dirpath="checkpoints",
            monitor="val/acc",
            mode="max",
            filename="epoch_{epoch:03d}",
            auto_insert_metric_name=False,
            save_last=True,
        ),
        EarlyStopping(monitor="val/acc", mode="max", patience=3),
    ]
    trainer = Trainer(
        default_root_dir=".",
        accelerator="cpu",
        devices=1,
        min_epochs=1,
        max_epochs=3,
        gradient_clip_val=0.5,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        deterministic=True,
    )
    trainer.fit(model=model, datamodule=datamodule)
    train_metrics = dict(trainer.callback_metrics)
    ckpt_path = trainer.checkpoint_callback.best_model_path
    test_results = trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics = {key: float(value) for key, value in test_results[0].items()}
    metrics["val/acc_best"] = float(train_metrics["val/acc_best"])
    metrics["train/acc"] = float(train_metrics["train/acc"])
    metrics["best_checkpoint"] = ckpt_path.replace("\\", "/").split("/")[-1]
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
