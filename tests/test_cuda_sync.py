"""On CUDA, a training step does not wait for the GPU: no host-device synchronisation between
``on_train_batch_start`` and ``on_train_batch_end`` unless the user asks for a number (prog_bar or a
logger at a logging step reads values after the step). Skipped without a GPU."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import Callback

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class SyncsAreErrors(Callback):
    """Turns any host-device synchronisation inside the training step into a RuntimeError."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception):
        torch.cuda.set_sync_debug_mode("default")


class Logged(ember.LightningModule):
    def __init__(self, read_a_number: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        self.read_a_number = read_a_number

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)  # to the loggers, not the progress bar
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        if self.read_a_number:
            loss.item()  # a user's own sync: the guard must catch it (proves the test can fail)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=5)}


def _fit(tmp_path, precision: str, read_a_number: bool = False, **kwargs) -> ember.Trainer:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(256, 32, generator=g), torch.randint(0, 2, (256,), generator=g))
    trainer = ember.Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=2, log_every_n_steps=7,
                            callbacks=[SyncsAreErrors()], enable_progress_bar=False, default_root_dir=tmp_path,
                            logger=ember.loggers.CSVLogger(tmp_path), **kwargs)
    trainer.fit(Logged(read_a_number), DataLoader(data, batch_size=16, pin_memory=True))
    return trainer


@cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_training_steps_never_synchronise_with_the_gpu(tmp_path, precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    trainer = _fit(tmp_path, precision, accumulate_grad_batches=2, gradient_clip_val=1.0)
    assert trainer.global_step == 16
    assert "train_loss_epoch" in trainer.callback_metrics


@cuda
def test_the_guard_catches_a_synchronisation(tmp_path):
    with pytest.raises(RuntimeError, match="synchroniz"):
        _fit(tmp_path, "32-true", read_a_number=True)
