"""``trainer.fit(torch.compile(model))``: the module's forward is compiled, the loop and hooks stay Python."""
from __future__ import annotations

import pytest
import torch

import ember
from conftest import BoringModel, random_loader


class EpochRecorder(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list = []

    def on_train_epoch_start(self) -> None:
        self.epochs.append(self.current_epoch)


def _fit(model, trainer_kwargs) -> ember.Trainer:
    trainer = ember.Trainer(max_epochs=3, **trainer_kwargs)
    trainer.fit(model, random_loader())
    return trainer


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_a_compiled_module_trains_like_the_plain_one_and_keeps_its_hooks(backend, trainer_kwargs, tmp_path):
    torch.manual_seed(0)
    plain = EpochRecorder()
    _fit(plain, trainer_kwargs)
    torch.manual_seed(0)
    model = EpochRecorder()
    trainer = _fit(torch.compile(model, backend=backend), trainer_kwargs)
    assert trainer.lightning_module is model  # the LightningModule itself, its forward compiled
    assert model.epochs == plain.epochs == [0, 1, 2]
    assert trainer.current_epoch == 3 and trainer.global_step == 24
    assert torch.allclose(model.layer.weight, plain.layer.weight, atol=1e-6)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    keys = set(torch.load(tmp_path / "c.ckpt", weights_only=True)["state_dict"])
    assert keys == {"layer.weight", "layer.bias"}  # no `_orig_mod.` prefix: loads into an uncompiled model
    loaded = BoringModel.load_from_checkpoint(tmp_path / "c.ckpt")
    assert torch.equal(loaded.layer.weight, model.layer.weight)
