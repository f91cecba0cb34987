"""Mistakes a user makes, and messages that name the rule, the value received and the fix."""
from __future__ import annotations

import pytest
import torch

import ember
from conftest import BoringModel, random_loader


class NoDataModule(ember.LightningDataModule):
    """A datamodule that serves nothing."""


# --- fit's data -----------------------------------------------------------------------------------------
def test_fit_without_any_data_says_how_to_pass_it(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match=r"found no train data.*train_dataloaders=.*BoringModel\.train_dataloader"):
        trainer.fit(BoringModel())


def test_fit_with_a_datamodule_without_train_dataloader(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match=r"train_dataloaders=.*NoDataModule\.train_dataloader\(\)"):
        trainer.fit(BoringModel(), datamodule=NoDataModule())


def test_fit_with_dataloaders_and_datamodule(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match="both dataloaders and a datamodule; pass one or the other"):
        trainer.fit(BoringModel(), random_loader(), datamodule=NoDataModule())
    with pytest.raises(ValueError, match="both dataloaders and a datamodule"):
        trainer.fit(BoringModel(), val_dataloaders=random_loader(), datamodule=NoDataModule())


def test_fit_with_something_that_is_not_a_module(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(TypeError, match=r"expects a ember\.LightningModule, got str.*Subclass"):
        trainer.fit("not a module", random_loader())
    with pytest.raises(TypeError, match=r"got Linear"):
        trainer.fit(torch.nn.Linear(32, 2), random_loader())


# --- Trainer arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategy": "deepspeed"}, r"strategy='deepspeed'.*not a strategy ember knows.*'ddp'"),
        ({"strategy": "single_device", "devices": 2}, r"strategy='single_device'.*devices=2.*Use strategy='ddp'"),
        ({"devices": 0}, r"devices=0.*positive int"),
        ({"num_nodes": 0}, r"num_nodes=0.*int >= 1"),
        ({"accelerator": "tpu"}, r"accelerator='tpu'.*not supported.*'cpu'"),
        ({"gradient_clip_algorithm": "l2"}, r"gradient_clip_algorithm='l2'.*'norm' or 'value'"),
        ({"limit_train_batches": 1.5}, r"limit_train_batches=1\.5.*\[0\.0, 1\.0\].*int >= 0"),
        ({"limit_val_batches": -1}, r"limit_val_batches=-1"),
        ({"accumulate_grad_batches": 0}, r"accumulate_grad_batches=0.*int >= 1"),
        ({"max_time": "bad"}, r"max_time='bad'.*'DD:HH:MM:SS'.*timedelta"),
        ({"max_time": "00:01:00"}, r"max_time='00:01:00'.*DD:HH:MM:SS"),
        ({"log_every_n_steps": 0}, r"log_every_n_steps=0.*int >= 1"),
    ],
)
def test_invalid_trainer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ember.Trainer(**kwargs)


def test_valid_max_time_forms_are_accepted():
    import datetime

    for value in ("00:00:01:00", datetime.timedelta(minutes=1), {"minutes": 1}):
        ember.Trainer(max_time=value, logger=False, enable_progress_bar=False, accelerator="cpu")


def test_val_check_interval_larger_than_the_epoch(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, val_check_interval=10, **trainer_kwargs)
    with pytest.raises(ValueError, match=r"val_check_interval=10.*larger than the 4 training batches"):
        trainer.fit(BoringModel(), random_loader(n=32), random_loader(n=8))


# --- the module outside a trainer ---------------------------------------------------------------------------
def test_trainer_of_a_detached_module():
    with pytest.raises(RuntimeError, match=r"BoringModel is not attached to a Trainer.*trainer\.fit"):
        BoringModel().trainer


def test_log_outside_a_trainer_warns_and_is_ignored():
    model = BoringModel()
    with pytest.warns(UserWarning, match=r"self\.log\('x', \.\.\.\) was called outside of a Trainer loop and is "
                                         r"ignored"):
        model.log("x", 1.0)
    with pytest.warns(UserWarning, match="outside of a Trainer loop"):
        model.log_dict({"a": 1.0})


# --- evaluation --------------------------------------------------------------------------------------------
def test_validate_without_validation_step(trainer_kwargs):
    class NoValidation(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

    trainer = ember.Trainer(**trainer_kwargs)
    with pytest.raises(NotImplementedError, match=r"validate\(\) needs NoValidation\.validation_step\(self, batch, "
                                                  r"batch_idx\)"):
        trainer.validate(NoValidation(), random_loader())
    with pytest.raises(NotImplementedError, match=r"NoValidation\.test_step"):
        trainer.test(NoValidation(), random_loader())


def test_ckpt_path_missing_file(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path='missing\.ckpt' is not a file.*'last' or 'best'"):
        trainer.fit(BoringModel(), random_loader(), ckpt_path="missing.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        trainer.validate(BoringModel(), random_loader(), ckpt_path="missing.ckpt", verbose=False)


def test_ckpt_path_best_without_checkpoint_callback(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)  # enable_checkpointing=False
    model = BoringModel()
    trainer.fit(model, random_loader())
    with pytest.raises(ValueError, match=r'ckpt_path="best" needs a ModelCheckpoint.*pass a file path'):
        trainer.test(model, random_loader(), ckpt_path="best", verbose=False)
