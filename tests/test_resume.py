"""Checkpoints as a user sees them: bit-identical resume, the file's contents, safe loading, atomic writes."""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import ModelCheckpoint
from conftest import BoringModel, random_loader

# resuming into a folder that holds the earlier run's files is what these tests do on purpose
pytestmark = [pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
              pytest.mark.filterwarnings("ignore:ModelCheckpoint's dirpath changed")]


# --- bit-identical resume ---------------------------------------------------------------------------
class NoisyModel(ember.LightningModule):
    """Draws from every global generator while training: torch (Dropout, shuffling), NumPy and ``random``."""

    def __init__(self, lr: float = 1e-2):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                       torch.nn.Linear(16, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = 1e-3 * (float(np.random.rand()) + random.random())  # NumPy and python RNGs change the loss
        loss = F.mse_loss(self(x + noise), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)]


def _data(shuffle=True):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 32, generator=g), torch.randn(48, 2, generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=shuffle)  # reshuffles from torch's global RNG
    val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
    return train, val


def _fit(dirpath, max_epochs, seed, ckpt_path=None, shuffle=True, **checkpoint_kwargs):
    ember.seed_everything(seed)
    model = NoisyModel()
    checkpoint = ModelCheckpoint(dirpath=dirpath, **checkpoint_kwargs)
    trainer = ember.Trainer(max_epochs=max_epochs, callbacks=[checkpoint], enable_progress_bar=False,
                            enable_model_summary=False, logger=False, accelerator="cpu")
    train, val = _data(shuffle)
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return trainer, model


def _assert_same_run(a, b):
    (trainer_a, model_a), (trainer_b, model_b) = a, b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    opt_a, opt_b = trainer_a.optimizers[0].state_dict(), trainer_b.optimizers[0].state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for pid, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][pid][name])), (pid, name)
    assert trainer_a.lr_scheduler_configs[0].scheduler.state_dict() == \
        trainer_b.lr_scheduler_configs[0].scheduler.state_dict()
    assert trainer_a.global_step == trainer_b.global_step
    assert trainer_a.current_epoch == trainer_b.current_epoch


def test_resume_at_an_epoch_boundary_is_bit_identical(tmp_path):
    straight = _fit(tmp_path / "a", max_epochs=4, seed=0, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    assert straight[0].global_step == 4 * 6
    saved = tmp_path / "a" / "epoch=1.ckpt"
    assert saved.is_file()

    # a different process state: other seeds everywhere, a different initialisation
    np.random.seed(99)
    random.seed(99)
    resumed = _fit(tmp_path / "b", max_epochs=4, seed=1234, ckpt_path=str(saved), save_top_k=-1, every_n_epochs=1,
                   filename="{epoch}")
    _assert_same_run(straight, resumed)
    # the resumed run writes the epochs it trained, and none it did not
    assert sorted(os.listdir(tmp_path / "b")) == ["epoch=2.ckpt", "epoch=3.ckpt"]


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_mid_epoch_is_bit_identical(tmp_path, shuffle):
    """A checkpoint from the middle of an epoch (step 9 = batch 3 of epoch 1) continues with the same batches
    and the same random numbers (Dropout, NumPy, random) as the uninterrupted run."""
    straight = _fit(tmp_path / "a", max_epochs=3, seed=0, shuffle=shuffle, save_top_k=-1, every_n_train_steps=9,
                    filename="{step}")
    saved = tmp_path / "a" / "step=9.ckpt"
    assert torch.load(saved, weights_only=True)["loops"]["ember"]["batch_idx"] == 3
    resumed = _fit(tmp_path / "b", max_epochs=3, seed=1234, shuffle=shuffle, ckpt_path=str(saved), save_top_k=-1,
                   every_n_train_steps=9, filename="{step}")
    _assert_same_run(straight, resumed)


def test_resume_without_restoring_would_differ(tmp_path):
    """Guard against a vacuous comparison: runs from different seeds end with different weights."""
    a = _fit(tmp_path / "a", max_epochs=2, seed=0)
    b = _fit(tmp_path / "b", max_epochs=2, seed=1)
    assert not torch.equal(a[1].net[0].weight, b[1].net[0].weight)


def test_resume_from_last(tmp_path):
    straight = _fit(tmp_path / "straight", max_epochs=4, seed=0)
    first_half = _fit(tmp_path / "run", max_epochs=2, seed=0, save_last=True)
    assert first_half[0].global_step == 2 * 6
    assert (tmp_path / "run" / "last.ckpt").is_file()
    resumed = _fit(tmp_path / "run", max_epochs=4, seed=7, ckpt_path="last", save_last=True)
    assert resumed[0].ckpt_path == str(tmp_path / "run" / "last.ckpt")
    _assert_same_run(straight, resumed)


def test_resume_from_finished_run_trains_nothing_more(tmp_path):
    first = _fit(tmp_path / "run", max_epochs=2, seed=0, save_last=True)
    weights = first[1].net[0].weight.detach().clone()
    again = _fit(tmp_path / "run", max_epochs=2, seed=5, ckpt_path=str(tmp_path / "run" / "last.ckpt"), save_last=True)
    assert again[0].global_step == first[0].global_step
    assert again[0].current_epoch == 2
    assert torch.equal(again[1].net[0].weight, weights)
    # the finished epoch is not finished a second time: no extra scheduler step, no extra checkpoint
    assert again[0].optimizers[0].param_groups[0]["lr"] == first[0].optimizers[0].param_groups[0]["lr"]
    assert sorted(os.listdir(tmp_path / "run")) == sorted(["epoch=1-step=12.ckpt", "last.ckpt"])


# --- checkpoint contents ---------------------------------------------------------------------------
class HParamsModel(BoringModel):
    def __init__(self, lr: float = 0.1, hidden: int = 4, name: str = "boring"):
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1)]


def _trained(trainer_kwargs, model=None, epochs=1):
    model = model or HParamsModel()
    trainer = ember.Trainer(max_epochs=epochs, **trainer_kwargs)
    trainer.fit(model, random_loader())
    return trainer, model


def test_checkpoint_has_lightnings_keys_and_loads_weights_only(trainer_kwargs, tmp_path):
    trainer, model = _trained(trainer_kwargs, epochs=2)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "epoch", "global_step", "hyper_parameters",
                "callbacks", "loops", "pytorch-lightning_version", "ember_version"):
        assert key in ckpt, key
    assert ckpt["global_step"] == 16
    assert ckpt["epoch"] == trainer.current_epoch
    assert ckpt["hyper_parameters"] == {"lr": 0.1, "hidden": 4, "name": "boring"}
    assert ckpt["ember_version"] == ember.__version__
    assert len(ckpt["optimizer_states"]) == 1 and len(ckpt["lr_schedulers"]) == 1
    assert torch.equal(ckpt["state_dict"]["layer.weight"], model.layer.weight)


def test_weights_only_checkpoint_has_no_training_state(trainer_kwargs, tmp_path):
    trainer, _ = _trained(trainer_kwargs)
    path = tmp_path / "weights.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    ckpt = torch.load(path, weights_only=True)
    assert "state_dict" in ckpt and "hyper_parameters" in ckpt
    assert "optimizer_states" not in ckpt and "lr_schedulers" not in ckpt


def test_load_from_checkpoint_rebuilds_the_model(trainer_kwargs, tmp_path):
    trainer, model = _trained(trainer_kwargs)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = HParamsModel.load_from_checkpoint(path)
    assert loaded.hparams == {"lr": 0.1, "hidden": 4, "name": "boring"}
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    overridden = HParamsModel.load_from_checkpoint(path, lr=0.5)
    assert overridden.hparams.lr == 0.5 and overridden.hparams.hidden == 4
    assert torch.equal(overridden.layer.weight, model.layer.weight)


class WithBackbone(BoringModel):
    def __init__(self, backbone: torch.nn.Module, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = backbone

    def forward(self, x):
        return self.layer(self.backbone(x))


class WithBackboneIgnored(WithBackbone):
    def __init__(self, backbone: torch.nn.Module, lr: float = 0.1):
        ember.LightningModule.__init__(self)
        self.save_hyperparameters(ignore=["backbone"])
        self.layer = torch.nn.Linear(32, 2)
        self.backbone = backbone


def test_save_hyperparameters_keeps_a_module_with_lightnings_warning(trainer_kwargs, tmp_path):
    backbone = torch.nn.Linear(32, 32)
    with pytest.warns(UserWarning, match=r"Attribute 'backbone' is an instance of `nn.Module`.*ignore=\['backbone'\]"):
        model = WithBackbone(backbone)
    assert model.hparams.backbone is backbone
    trainer, model = _trained(trainer_kwargs, model=model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == {"lr": 0.1}  # the module is left out
    with pytest.warns(UserWarning, match="Attribute 'backbone'"):  # the new model saves it again, and warns
        loaded = WithBackbone.load_from_checkpoint(path, backbone=torch.nn.Linear(32, 32))
    assert torch.equal(loaded.backbone.weight, model.backbone.weight)


def test_save_hyperparameters_with_ignore_loads_weights_only(trainer_kwargs, tmp_path):
    model = WithBackboneIgnored(torch.nn.Linear(32, 32), lr=0.2)
    assert dict(model.hparams) == {"lr": 0.2}
    trainer, model = _trained(trainer_kwargs, model=model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"] == {"lr": 0.2}
    loaded = WithBackboneIgnored.load_from_checkpoint(path, backbone=torch.nn.Linear(32, 32))
    assert loaded.hparams.lr == 0.2
    assert torch.equal(loaded.backbone.weight, model.backbone.weight)
    assert torch.equal(loaded.layer.weight, model.layer.weight)


class _WritesMarker:
    """Unpickling this object creates a file: the test's stand-in for arbitrary code in a hostile pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": BoringModel().state_dict(), "payload": _WritesMarker(str(marker))}, path)
    return path, marker


def test_hostile_pickle_is_refused_by_load_from_checkpoint(tmp_path):
    path, marker = _hostile_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only=True"):
        BoringModel.load_from_checkpoint(path)
    assert not marker.exists()
    # the file really is hostile: a trusting load runs its code
    torch.load(path, weights_only=False)["payload"].close()
    assert marker.exists()


def test_hostile_pickle_is_refused_by_fit(trainer_kwargs, tmp_path):
    path, marker = _hostile_checkpoint(tmp_path)
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(pickle.UnpicklingError):
        trainer.fit(BoringModel(), random_loader(), ckpt_path=str(path))
    assert not marker.exists()
    assert trainer.global_step == 0


def test_resume_from_weights_only_checkpoint_points_to_load_from_checkpoint(trainer_kwargs, tmp_path):
    trainer, _ = _trained(trainer_kwargs)
    path = tmp_path / "weights.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    with pytest.raises((KeyError, ValueError), match="load_from_checkpoint"):
        ember.Trainer(max_epochs=2, **trainer_kwargs).fit(HParamsModel(), random_loader(), ckpt_path=str(path))


def test_resume_from_missing_file_names_it(trainer_kwargs, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        ember.Trainer(max_epochs=1, **trainer_kwargs).fit(BoringModel(), random_loader(),
                                                          ckpt_path=str(tmp_path / "nope.ckpt"))


# --- atomic writes -----------------------------------------------------------------------------------
def test_save_checkpoint_leaves_no_temporary_file(trainer_kwargs, tmp_path):
    trainer, _ = _trained(trainer_kwargs)
    folder = tmp_path / "ckpts"
    trainer.save_checkpoint(folder / "a.ckpt")
    trainer.save_checkpoint(folder / "a.ckpt")  # overwrite in place
    assert os.listdir(folder) == ["a.ckpt"]


def test_failed_save_keeps_the_previous_file(trainer_kwargs, tmp_path, monkeypatch):
    trainer, model = _trained(trainer_kwargs)
    path = tmp_path / "ckpts" / "a.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with torch.no_grad():
        model.layer.weight.add_(1.0)
    with pytest.raises(OSError, match="a.ckpt"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["a.ckpt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_save_into_unwritable_folder_names_the_path(trainer_kwargs, tmp_path):
    trainer, _ = _trained(trainer_kwargs)
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OSError, match="readonly"):
            trainer.save_checkpoint(folder / "a.ckpt")
    finally:
        folder.chmod(0o700)
    assert os.listdir(folder) == []


def test_save_where_the_folder_is_a_file_names_the_path(trainer_kwargs, tmp_path):
    trainer, _ = _trained(trainer_kwargs)
    not_a_folder = tmp_path / "plainfile"
    not_a_folder.write_text("x")
    with pytest.raises(OSError, match="plainfile"):
        trainer.save_checkpoint(not_a_folder / "a.ckpt")


def test_mid_epoch_resume_on_an_iterable_dataset_warns(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            g = torch.Generator().manual_seed(3)
            for _ in range(8):
                yield torch.randn(32, generator=g), torch.randn(2, generator=g)

    def fit(ckpt_path=None):
        ember.seed_everything(0)
        model = BoringModel()
        checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")
        trainer = ember.Trainer(max_epochs=2, callbacks=[checkpoint], enable_progress_bar=False,
                                enable_model_summary=False, logger=False, accelerator="cpu")
        trainer.fit(model, DataLoader(Stream(), batch_size=2), ckpt_path=ckpt_path)
        return model

    straight = fit()
    with pytest.warns(UserWarning, match="Resuming mid-epoch on a loader without a sampler.*skips the first 3"):
        resumed = fit(str(tmp_path / "step=3.ckpt"))
    # this stream is deterministic, so skipping its first batches continues it exactly
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_python_rng_state_is_one_tensor_and_older_checkpoints_still_restore():
    """The 625 numbers of random.getstate() are saved as one int64 tensor (pickling them one by one cost more than
    half of a small checkpoint's save); a checkpoint from before, with a list, restores the same stream."""
    from ember.trainer.progress import rng_state, set_rng_state

    random.seed(7)
    state = rng_state()
    version, internal, gauss = state["python"]
    assert isinstance(internal, torch.Tensor) and internal.dtype == torch.int64 and internal.numel() == 625
    expected = [random.random() for _ in range(3)]
    set_rng_state(state)
    assert [random.random() for _ in range(3)] == expected
    set_rng_state({**state, "python": (version, internal.tolist(), gauss)})  # the format before
    assert [random.random() for _ in range(3)] == expected
