"""Hostile and careless Trainer-side input (issue 14): each case fails early with a message that names the argument,
the value and what is allowed, or warns where Lightning warns; none trains wrongly in silence."""
from __future__ import annotations

import datetime
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import ember
from conftest import BoringModel, random_loader


# --- 1. gradient clipping ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), "0.5"])
def test_gradient_clip_val_must_be_a_number_at_least_zero(value):
    with pytest.raises(ValueError, match=r"gradient_clip_val=.*must be a number >= 0 \(None or 0: no clipping\)"):
        ember.Trainer(gradient_clip_val=value)


def test_gradient_clip_val_zero_or_none_is_off_and_the_algorithm_any_case(trainer_kwargs):
    for value in (None, 0, 0.0):
        ember.Trainer(gradient_clip_val=value, **trainer_kwargs)
    trainer = ember.Trainer(gradient_clip_val=0.5, gradient_clip_algorithm="VALUE", **trainer_kwargs)
    assert trainer.gradient_clip_algorithm == "value"
    with pytest.raises(ValueError, match=r"gradient_clip_algorithm='l2'\) must be 'norm' or 'value'"):
        ember.Trainer(gradient_clip_algorithm="l2")


def test_clip_gradients_with_a_negative_value_in_user_code_raises(trainer_kwargs):
    class Clips(BoringModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, gradient_clip_val=-1.0)

    with pytest.raises(ValueError, match=r"clip_gradients\(gradient_clip_val=-1\.0\) must be a number >= 0"):
        ember.Trainer(max_steps=1, **trainer_kwargs).fit(Clips(), random_loader())


# --- 2. every numeric Trainer argument in its range -------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"check_val_every_n_epoch": 0}, r"check_val_every_n_epoch=0\) must be an int >= 1 \(None: .*\), or None"),
    ({"check_val_every_n_epoch": 1.5}, r"check_val_every_n_epoch=1\.5\) must be an int >= 1"),
    ({"num_sanity_val_steps": -2}, r"num_sanity_val_steps=-2\) must be an int >= -1 \(-1: every validation batch"),
    ({"reload_dataloaders_every_n_epochs": -1}, r"reload_dataloaders_every_n_epochs=-1\) must be an int >= 0"),
    ({"max_epochs": -2}, r"max_epochs=-2\) must be an int >= -1 \(-1: no limit\), or None"),
    ({"min_epochs": -1}, r"min_epochs=-1\) must be an int >= 0, or None"),
    ({"max_steps": -5}, r"max_steps=-5\) must be an int >= -1 \(-1: no limit\)"),
    ({"max_steps": 2.5}, r"max_steps=2\.5\) must be an int >= -1"),
    ({"min_steps": -1}, r"min_steps=-1\) must be an int >= 0, or None"),
    ({"log_every_n_steps": 0}, r"log_every_n_steps=0\) must be an int >= 1"),
    ({"accumulate_grad_batches": 0}, r"accumulate_grad_batches=0\) must be an int >= 1"),
    ({"accumulate_grad_batches": True}, r"accumulate_grad_batches=True\) must be an int >= 1"),
    ({"num_nodes": 0}, r"num_nodes=0\) must be an int >= 1"),
    ({"devices": -2}, r"devices=-2\) must be a positive int"),
    ({"fast_dev_run": -1}, r"fast_dev_run=-1\) must be an int >= 0 \(or a bool"),
    ({"fast_dev_run": 1.5}, r"fast_dev_run=1\.5\) must be an int >= 0"),
    ({"limit_train_batches": -1}, r"limit_train_batches=-1\) must be a float in \[0\.0, 1\.0\].*or an int >= 0"),
    ({"limit_val_batches": float("nan")}, r"limit_val_batches=nan\) must be a float in \[0\.0, 1\.0\]"),
    ({"limit_test_batches": 1.5}, r"limit_test_batches=1\.5\) must be a float in \[0\.0, 1\.0\]"),
    ({"limit_predict_batches": "all"}, r"limit_predict_batches='all'\) must be a float"),
    ({"overfit_batches": -0.1}, r"overfit_batches=-0\.1\) must be a float in \[0\.0, 1\.0\]"),
    ({"val_check_interval": 0}, r"val_check_interval=0\) must be a float in \(0\.0, 1\.0\].*or an int >= 1.*"
                                r"limit_val_batches=0"),
    ({"val_check_interval": 0.0}, r"val_check_interval=0\.0\) must be a float in \(0\.0, 1\.0\]"),
    ({"val_check_interval": 1.5}, r"val_check_interval=1\.5\) must be a float in \(0\.0, 1\.0\]"),
    ({"val_check_interval": 0.5, "check_val_every_n_epoch": None},
     r"val_check_interval=0\.5, check_val_every_n_epoch=None\).*must be an int number of training batches"),
    ({"max_time": {"hours": -1}}, r"max_time=\{'hours': -1\}\) is a negative duration; it must be >= 0"),
    ({"max_time": datetime.timedelta(seconds=-1)}, r"max_time=.*negative duration"),
    ({"max_time": {"hourz": 1}}, r"max_time=\{'hourz': 1\}\) must be 'DD:HH:MM:SS'.*timedelta's keyword"),
])
def test_numeric_trainer_arguments_out_of_range_name_the_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ember.Trainer(**kwargs)


def test_the_special_values_lightning_allows_are_accepted(trainer_kwargs):
    ember.Trainer(check_val_every_n_epoch=None, val_check_interval=5, **trainer_kwargs)
    ember.Trainer(num_sanity_val_steps=-1, max_epochs=-1, max_steps=-1, min_epochs=0, min_steps=0, **trainer_kwargs)
    ember.Trainer(max_epochs=0, reload_dataloaders_every_n_epochs=0, fast_dev_run=True, **trainer_kwargs)
    ember.Trainer(limit_train_batches=0, limit_val_batches=0.0, overfit_batches=2, val_check_interval=1.0,
                  max_time={"minutes": 0}, **trainer_kwargs)


def test_check_val_every_n_epoch_none_validates_by_batches_across_epochs(trainer_kwargs):
    seen = []

    class Counts(BoringModel):
        def on_validation_start(self):
            seen.append(self.global_step)

    trainer = ember.Trainer(max_epochs=2, check_val_every_n_epoch=None, val_check_interval=5, num_sanity_val_steps=0,
                            **trainer_kwargs)
    trainer.fit(Counts(), random_loader(n=64), random_loader(n=16))  # 8 batches an epoch, 16 in all
    assert seen == [5, 10, 15]


# --- 3. a loss that is not a scalar ------------------------------------------------------------------------------
class VectorLoss(BoringModel):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y, reduction="none").mean(1)  # one value per sample


@pytest.mark.parametrize("extra", [{}, {"accumulate_grad_batches": 2}, {"gradient_clip_val": 1.0}])
def test_a_non_scalar_loss_says_it_must_be_a_scalar(trainer_kwargs, extra):
    with pytest.raises(ValueError, match=r"training_step returned a loss of shape \(8,\) \(8 elements\); the loss "
                                         r"must be a scalar.*loss\.mean\(\)"):
        ember.Trainer(max_steps=1, **extra, **trainer_kwargs).fit(VectorLoss(), random_loader())


def test_a_one_element_loss_of_shape_1_trains(trainer_kwargs):
    class OneElement(BoringModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx).reshape(1)

    trainer = ember.Trainer(max_steps=2, **trainer_kwargs)
    trainer.fit(OneElement(), random_loader())
    assert trainer.global_step == 2


# --- 4. self.log of one name twice in a hook, and in training and validation --------------------------------------
def test_logging_one_name_twice_in_a_hook_with_different_arguments_raises(trainer_kwargs):
    class Twice(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            self.log("x", loss, on_epoch=True, reduce_fx="max")
            self.log("x", loss * 2, on_epoch=True, reduce_fx="min")
            return loss

    with pytest.raises(ValueError, match=r"You called `self\.log\('x', \.\.\.\)` twice in `training_step` with "
                                         r"different arguments \(reduce_fx='max' then 'min'\)\. This is not allowed"):
        ember.Trainer(max_steps=2, **trainer_kwargs).fit(Twice(), random_loader())


def test_logging_one_name_with_other_arguments_at_the_next_step_raises(trainer_kwargs):
    class Changes(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", self._loss(batch), prog_bar=batch_idx == 1)

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    with pytest.raises(ValueError, match=r"self\.log\('v', \.\.\.\)` twice in `validation_step`.*"
                                         r"prog_bar=False then True"):
        trainer.fit(Changes(), random_loader(), random_loader())


def test_logging_one_name_twice_with_the_same_arguments_keeps_working(trainer_kwargs):
    class Same(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            self.log("x", loss, on_step=False, on_epoch=True, reduce_fx="sum")
            self.log("x", loss, on_step=False, on_epoch=True, reduce_fx=torch.sum)  # the same reduction
            return loss

    trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, **trainer_kwargs)
    trainer.fit(Same(), random_loader())
    assert "x" in trainer.callback_metrics


def test_one_name_logged_in_training_and_validation_warns_once(trainer_kwargs):
    class Shared(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("loss", self._loss(batch))

    trainer = ember.Trainer(max_epochs=3, **trainer_kwargs)
    with pytest.warns(UserWarning, match=r"same name in training and in validation: 'loss' \(training_step and "
                                         r"validation_step\).*Use distinct names") as record:
        trainer.fit(Shared(), random_loader(), random_loader())
    assert sum("same name in training and in validation" in str(w.message) for w in record) == 1


def test_distinct_names_in_training_and_validation_do_not_warn(trainer_kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*same name in training and in validation.*")
        ember.Trainer(max_epochs=2, **trainer_kwargs).fit(BoringModel(), random_loader(), random_loader())


# --- 5. an empty training loader ------------------------------------------------------------------------------
def test_a_training_loader_of_length_zero_warns_and_trains_nothing(trainer_kwargs):
    empty = DataLoader(TensorDataset(torch.zeros(0, 32), torch.zeros(0, 2)), batch_size=8)
    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    with pytest.warns(UserWarning, match=r"Total length of `DataLoader` across ranks is zero"):
        trainer.fit(BoringModel(), empty)
    assert trainer.global_step == 0


class NothingToYield(IterableDataset):
    def __iter__(self):
        return iter(())


def test_an_iterable_dataset_that_yields_nothing_warns_once(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=3, **trainer_kwargs)
    with pytest.warns(UserWarning, match=r"The training DataLoader yielded no batch in epoch 0 \(its dataset: "
                                         r"NothingToYield\): nothing was trained") as record:
        trainer.fit(BoringModel(), DataLoader(NothingToYield(), batch_size=8))
    assert sum("yielded no batch" in str(w.message) for w in record) == 1
    assert trainer.global_step == 0


# --- several evaluation loaders and the step's signature (Lightning's messages) -----------------------------------
def test_several_val_loaders_need_a_dataloader_idx_argument(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(RuntimeError, match=r"You provided multiple `val_dataloader`, but no `dataloader_idx` argument "
                                           r"in `BoringModel\.validation_step\(\)`\. Try adding `dataloader_idx=0`"):
        trainer.fit(BoringModel(), random_loader(), [random_loader(), random_loader()])


def test_one_test_loader_with_a_required_dataloader_idx_raises(trainer_kwargs):
    class Required(BoringModel):
        def test_step(self, batch, batch_idx, dataloader_idx):
            return super().test_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match=r"only a single `test_dataloader`, but have included `dataloader_idx` in "
                                           r"`Required\.test_step\(\)`.*`dataloader_idx=0`"):
        ember.Trainer(**trainer_kwargs).test(Required(), random_loader(), verbose=False)
