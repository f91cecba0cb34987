"""A digits classifier trained through LightningCLI, its backbone frozen then unfrozen by a finetuning callback.

Lightning features exercised: a ``LightningCLI`` subclass (``from lightning.pytorch.cli import LightningCLI``) whose
``add_arguments_to_parser`` adds a ``BaseFinetuning`` subclass with ``parser.add_lightning_class_args(...,
"finetuning")``, links ``data.num_classes`` to ``model.num_classes`` with ``apply_on="instantiate"`` and sets
defaults with ``parser.set_defaults``; the callback freezes the backbone in ``freeze_before_training`` and calls
``unfreeze_and_add_param_group`` at a milestone epoch in ``finetune_function``; a torchmetrics
``Accuracy(task="multiclass")`` object passed to ``self.log``; ``MultiStepLR`` returned in list form; a
LightningDataModule with a ``num_classes`` property; ``LightningCLI(Model, DataModule, seed_everything_default=...,
trainer_defaults={...}, save_config_kwargs={"overwrite": True})`` run with the ``fit`` subcommand
(``python cli_finetuning.py fit``).

Written for ember's compatibility corpus.
"""
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Accuracy

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.cli import LightningCLI


class DigitsDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64, n_train: int = 256, n_val: int = 128):
        super().__init__()
        self.batch_size = batch_size
        self.n_train = n_train
        self.n_val = n_val

    @property
    def num_classes(self) -> int:
        return 10

    def setup(self, stage: str):
        digits = load_digits()
        x = torch.from_numpy(digits.data.astype(np.float32) / 16.0)
        y = torch.from_numpy(digits.target).long()
        self.train_set = TensorDataset(x[: self.n_train], y[: self.n_train])
        self.val_set = TensorDataset(x[self.n_train : self.n_train + self.n_val], y[self.n_train : self.n_train + self.n_val])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


class DigitsClassifier(pl.LightningModule):
    def __init__(self, num_classes: int = 10, hidden: int = 32, lr: float = 0.01, milestones: tuple = (1,)):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Sequential(nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)
        self.train_acc = Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train_loss", loss)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=self.hparams.lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(self.hparams.milestones), gamma=0.5)
        return [optimizer], [scheduler]


class BackboneFinetuning(BaseFinetuning):
    def __init__(self, unfreeze_at_epoch: int = 1, backbone_lr: float = 0.002):
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr = backbone_lr

    def freeze_before_training(self, pl_module):
        self.freeze(pl_module.backbone, train_bn=False)

    def finetune_function(self, pl_module, current_epoch, optimizer):
        if current_epoch == self.unfreeze_at_epoch:
            self.unfreeze_and_add_param_group(
                modules=pl_module.backbone, optimizer=optimizer, lr=self.backbone_lr, train_bn=True
            )


class FinetuningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        parser.add_lightning_class_args(BackboneFinetuning, "finetuning")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.set_defaults({"finetuning.unfreeze_at_epoch": 1, "model.lr": 0.05, "data.batch_size": 32})


def main():
    cli = FinetuningCLI(
        DigitsClassifier,
        DigitsDataModule,
        seed_everything_default=1234,
        trainer_defaults={
            "accelerator": "cpu",
            "max_epochs": 2,
            "default_root_dir": ".",
            "enable_progress_bar": False,
            "enable_checkpointing": False,
        },
        save_config_kwargs={"overwrite": True},
    )
    metrics = cli.trainer.callback_metrics
    optimizer = cli.trainer.optimizers[0]
    print("FINAL_METRICS", json.dumps({
        "train_loss": float(metrics["train_loss"]),
        "train_acc": float(metrics["train_acc"]),
        "val_loss": float(metrics["val_loss"]),
        "val_acc": float(metrics["val_acc"]),
        "param_groups": len(optimizer.param_groups),
        "lrs": [float(group["lr"]) for group in optimizer.param_groups],
        "backbone_trainable": all(p.requires_grad for p in cli.model.backbone.parameters()),
    }))


if __name__ == "__main__":
    main()
