"""Data-parallel training (DDP) of a digits classifier: the same script on one machine or many.

``Trainer(devices=N)`` picks DDP: each process trains a replica on its share of the data, ``sync_dist=True``
metrics cover the whole data set, rank 0 alone writes logs and checkpoints. Run it with ``python
examples/ddp.py --devices 2``, ``torchrun --nproc_per_node=2 examples/ddp.py`` or ``srun ... python examples/ddp.py``.
"""
import argparse

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember as pl
from ember.callbacks import ModelCheckpoint
from ember.loggers import CSVLogger


class DigitsMLP(pl.LightningModule):
    def __init__(self, hidden: int = 128, lr: float = 2e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # sync_dist: the epoch value is the mean over every rank's samples, the same on all ranks
        self.log(f"{stage}_loss", loss, on_epoch=True, on_step=False, sync_dist=True)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, on_step=False,
                 sync_dist=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="processes per machine (GPUs, or CPU processes)")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--root-dir", default="lightning_logs_examples/ddp")
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 2 epochs")
    args = parser.parse_args(argv)

    pl.seed_everything(0)  # every rank the same seed: identical initial weights and data split
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = TensorDataset(torch.tensor(digits.images, dtype=torch.float32) / 16.0, torch.tensor(digits.target))
    train, val, test = random_split(data, [0.7, 0.15, 0.15], generator=torch.Generator().manual_seed(0))
    checkpoint = ModelCheckpoint(monitor="val_acc", mode="max")
    trainer = pl.Trainer(accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                         max_epochs=2 if args.fast else args.max_epochs, default_root_dir=args.root_dir,
                         logger=CSVLogger(args.root_dir), callbacks=[checkpoint],
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast)
    model = DigitsMLP()
    # batch_size is per process: with 2 processes each step sees 2 x 32 samples
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128))
    result = trainer.test(ckpt_path="best", dataloaders=DataLoader(test, batch_size=128), verbose=False)[0]
    if trainer.is_global_zero:  # every rank runs this script to the end; print once
        print(f"world_size={trainer.world_size} best checkpoint: {checkpoint.best_model_path}")
        print(f"test_acc={result['test_acc']:.4f} test_loss={result['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
