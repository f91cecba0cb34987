"""Shared tiny fixtures for ember's tests: a BoringModel, a random loader, quiet Trainer kwargs."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember


class BoringModel(ember.LightningModule):
    """Linear(32, 2) trained with MSE and SGD(lr=0.1); logs train_loss / val_loss / test_loss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val_loss", loss)
        return loss

    def test_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("test_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def random_loader(n: int = 64, batch_size: int = 8, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over TensorDataset(randn(n, 32), randn(n, 2)), reproducible through ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, generator=g)
    y = torch.randn(n, 2, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


@pytest.fixture
def trainer_kwargs() -> dict:
    """Trainer arguments that keep a test quiet and free of files: no bar, summary, logger, checkpoints."""
    return dict(
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )


@pytest.fixture(autouse=True)
def _chdir_tmp(tmp_path, monkeypatch):
    """Run every test inside its own tmp_path, so default ``lightning_logs/`` never lands in the repo."""
    monkeypatch.chdir(tmp_path)
    yield
