"""A convolutional image classifier on scikit-learn's bundled 8x8 digits, or on your own image folder.

Shows a CNN LightningModule with batch norm and dropout, ``EarlyStopping`` and ``ModelCheckpoint``
on validation accuracy, a ``CSVLogger`` whose curves are drawn with ``ember.plot.plot_metrics``,
and reloading the best checkpoint with ``load_from_checkpoint``. ``--image-folder DIR`` (one sub-folder
per class, read with Pillow, resized to ``--image-size``) swaps in your data. Run: ``python examples/cnn_classifier.py``.
"""
import argparse
import os

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import ember as pl
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.loggers import CSVLogger


class CNN(pl.LightningModule):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, lr: float = 3e-3):
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 4, num_classes))
        self.example_input_array = torch.zeros(1, in_channels, image_size, image_size)

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
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def load_digits_tensors():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(digits.target), 10


def load_image_folder(root: str, size: int):
    """Every image under ``root/<class>/``; returns (images N x 3 x size x size in [0, 1], labels, classes)."""
    from PIL import Image

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise SystemExit(f"--image-folder {root}: expected one sub-folder per class (e.g. {root}/cat/1.png), found none.")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(os.listdir(os.path.join(root, name))):
            with Image.open(os.path.join(root, name, file)) as img:
                img = img.convert("RGB").resize((size, size))
                images.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3))
            labels.append(label)
    x = torch.stack(images).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.tensor(labels), len(classes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--image-folder", default=None, help="one sub-folder of images per class (default: digits)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--root-dir", default="lightning_logs_examples/cnn_classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 1 epoch, 5 batches")
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    if args.image_folder:
        x, y, num_classes = load_image_folder(args.image_folder, args.image_size)
    else:
        x, y, num_classes = load_digits_tensors()
    train, val, test = random_split(TensorDataset(x, y), [0.7, 0.15, 0.15],
                                    generator=torch.Generator().manual_seed(args.seed))
    model = CNN(in_channels=x.shape[1], num_classes=num_classes, image_size=x.shape[-1])
    checkpoint = ModelCheckpoint(monitor="val_acc", mode="max")
    logger = CSVLogger(save_dir=args.root_dir)
    trainer = pl.Trainer(max_epochs=1 if args.fast else args.max_epochs, default_root_dir=args.root_dir,
                         limit_train_batches=5 if args.fast else None, logger=logger,
                         callbacks=[EarlyStopping(monitor="val_loss", patience=3), checkpoint],
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast, log_every_n_steps=5)
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))
    best = CNN.load_from_checkpoint(checkpoint.best_model_path)
    result = trainer.test(best, DataLoader(test, batch_size=256), verbose=False)[0]
    try:
        from ember.plot import plot_metrics

        print(f"curves: {plot_metrics(os.path.join(logger.log_dir, 'metrics.csv'))}")
    except ImportError as e:  # matplotlib is optional
        print(f"no curves drawn: {e}")
    print(f"best checkpoint: {checkpoint.best_model_path}")
    print(f"test_acc={result['test_acc']:.4f} test_loss={result['test_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
