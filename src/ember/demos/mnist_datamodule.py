"""``lightning.pytorch.demos.mnist_datamodule``: not in ember (it downloads MNIST itself)."""
from ember._missing import missing_class, missing_function

_USE = "torchvision.datasets.MNIST in your own LightningDataModule (see examples/ in ember's repository)"
MNIST = missing_function("demos.mnist_datamodule.MNIST", "ember does not bundle an MNIST downloader", _USE)
MNISTDataModule = missing_class("demos.mnist_datamodule.MNISTDataModule", "ember does not bundle an MNIST "
                                "downloader", _USE)

__all__ = ["MNIST", "MNISTDataModule"]
