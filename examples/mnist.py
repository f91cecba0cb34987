"""MNIST handwritten digits through torchvision, read from a local folder.

Shows the articles' MNIST classifier (784 -> 256 -> 10, Adam) as a LightningModule with a
LightningDataModule around ``torchvision.datasets.MNIST(root)``. Many training machines have no
internet, so nothing is fetched unless ``--download`` says so: put the four raw files in ``--data-dir``
(the error message lists them). Run: ``python examples/mnist.py --data-dir ./data [--download] [--fast]``.
"""
import argparse
import os

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, random_split

import ember as pl

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def import_torchvision():
    try:
        import torchvision
    except ImportError:
        raise SystemExit(f"examples/mnist.py needs torchvision, which is not installed. Install the build that matches "
                         f"your torch {torch.__version__}: pip install torchvision matching your torch "
                         "(see https://pytorch.org/get-started/previous-versions/ for the pairs).") from None
    return torchvision


def check_data_dir(data_dir: str) -> None:
    raw = os.path.join(data_dir, "MNIST", "raw")
    missing = [name for name in RAW_FILES if not os.path.isfile(os.path.join(raw, name))]
    if missing:
        raise SystemExit(
            f"MNIST not found in --data-dir {data_dir!r}: expected the files {', '.join(RAW_FILES)} in {raw}/ "
            f"(missing: {', '.join(missing)}). No download happens (machines without internet are common): fetch "
            "them elsewhere, e.g. with torchvision.datasets.MNIST(root, download=True), unpack the .gz files, and "
            "copy the folder here.")


class MNISTDataModule(pl.LightningDataModule):
    def __init__(self, data_dir: str = "./data", batch_size: int = 128, val_size: int = 5000, download: bool = False):
        super().__init__()
        self.save_hyperparameters()

    def prepare_data(self):  # runs once per machine, before setup: where Lightning programs download
        if self.hparams.download:
            from torchvision import datasets

            datasets.MNIST(self.hparams.data_dir, train=True, download=True)
            datasets.MNIST(self.hparams.data_dir, train=False, download=True)
        check_data_dir(self.hparams.data_dir)

    def setup(self, stage):
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        root = self.hparams.data_dir
        if stage in ("fit", "validate") and not hasattr(self, "train_set"):
            full = datasets.MNIST(root, train=True, download=False, transform=transform)
            n_val = min(self.hparams.val_size, len(full) // 5)
            self.train_set, self.val_set = random_split(full, [len(full) - n_val, n_val],
                                                        generator=torch.Generator().manual_seed(0))
        if stage in ("test", "predict"):
            self.test_set = datasets.MNIST(root, train=False, download=False, transform=transform)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=512)


class MNISTClassifier(pl.LightningModule):
    def __init__(self, hidden: int = 256, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw/<the four idx files>")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--root-dir", default="lightning_logs_examples/mnist")
    parser.add_argument("--download", action="store_true", help="fetch MNIST into --data-dir first (needs internet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="one batch of training, validation and test")
    args = parser.parse_args(argv)
    import_torchvision()
    if not args.download:
        check_data_dir(args.data_dir)  # fail before building anything

    pl.seed_everything(args.seed)
    data = MNISTDataModule(args.data_dir, args.batch_size, download=args.download)
    model = MNISTClassifier()
    limit = 1 if args.fast else None
    trainer = pl.Trainer(max_epochs=1 if args.fast else args.max_epochs, default_root_dir=args.root_dir,
                         limit_train_batches=limit, limit_val_batches=limit, limit_test_batches=limit,
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast)
    trainer.fit(model, datamodule=data)
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    print(f"test_acc={result['test_acc']:.4f} test_loss={result['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
