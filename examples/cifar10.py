"""CIFAR-10 (32x32 colour images, 10 classes) through torchvision, read from a local folder.

Shows a small CNN in the style of the articles' CIFAR-10 classifier (conv 5x5 layers, SGD with momentum),
a LightningDataModule over ``torchvision.datasets.CIFAR10(root)`` with flip-and-crop augmentation for
training, and a clear message when the data folder is missing: nothing is fetched unless ``--download``
says so. Run: ``python examples/cifar10.py --data-dir ./data [--download] [--fast]``.
"""
import argparse
import os

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

import ember as pl

FOLDER = "cifar-10-batches-py"
FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


def import_torchvision():
    try:
        import torchvision
    except ImportError:
        raise SystemExit(f"examples/cifar10.py needs torchvision, which is not installed. Install the build that "
                         f"matches your torch {torch.__version__}: pip install torchvision matching your torch "
                         "(see https://pytorch.org/get-started/previous-versions/ for the pairs).") from None
    return torchvision


def check_data_dir(data_dir: str) -> None:
    folder = os.path.join(data_dir, FOLDER)
    missing = [name for name in FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise SystemExit(
            f"CIFAR-10 not found in --data-dir {data_dir!r}: expected the python-pickle files {', '.join(FILES)} in "
            f"{folder}/ (missing: {', '.join(missing)}). No download happens (machines without internet are common): "
            "fetch cifar-10-python.tar.gz elsewhere (https://www.cs.toronto.edu/~kriz/cifar.html), unpack it, and copy "
            f"the {FOLDER} folder here.")


class CIFAR10DataModule(pl.LightningDataModule):
    def __init__(self, data_dir: str = "./data", batch_size: int = 128, val_size: int = 5000, download: bool = False):
        super().__init__()
        self.save_hyperparameters()

    def prepare_data(self):  # runs once per machine, before setup: where Lightning programs download
        if self.hparams.download:
            from torchvision import datasets

            datasets.CIFAR10(self.hparams.data_dir, train=True, download=True)
            datasets.CIFAR10(self.hparams.data_dir, train=False, download=True)
        check_data_dir(self.hparams.data_dir)

    def setup(self, stage):
        from torchvision import datasets, transforms

        normalize = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
        augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), normalize])
        plain = transforms.Compose([transforms.ToTensor(), normalize])
        root = self.hparams.data_dir
        if stage in ("fit", "validate") and not hasattr(self, "train_set"):
            # the same 50,000 images twice: augmented for training, plain for validation, split by index
            train_aug = datasets.CIFAR10(root, train=True, download=False, transform=augment)
            train_plain = datasets.CIFAR10(root, train=True, download=False, transform=plain)
            order = torch.randperm(len(train_aug), generator=torch.Generator().manual_seed(0)).tolist()
            n_val = min(self.hparams.val_size, len(order) // 5)
            self.train_set, self.val_set = Subset(train_aug, order[n_val:]), Subset(train_plain, order[:n_val])
        if stage in ("test", "predict"):
            self.test_set = datasets.CIFAR10(root, train=False, download=False, transform=plain)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=512)


class CIFAR10CNN(pl.LightningModule):
    def __init__(self, lr: float = 0.05, momentum: float = 0.9):
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 16 x 16
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 8 x 8
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))

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
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="./data", help=f"folder holding {FOLDER}/")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--root-dir", default="lightning_logs_examples/cifar10")
    parser.add_argument("--download", action="store_true", help="fetch CIFAR-10 into --data-dir first (needs internet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="one batch of training, validation and test")
    args = parser.parse_args(argv)
    import_torchvision()
    if not args.download:
        check_data_dir(args.data_dir)  # fail before building anything

    pl.seed_everything(args.seed)
    data = CIFAR10DataModule(args.data_dir, args.batch_size, download=args.download)
    model = CIFAR10CNN()
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
