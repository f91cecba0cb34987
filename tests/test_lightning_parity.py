"""Behaviour a Lightning program relies on, each checked against what PyTorch Lightning 2.6 does."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import ember
from conftest import BoringModel, random_loader


def test_overridden_optimizer_step_runs_every_step_with_a_closure(trainer_kwargs):
    calls = []

    class WarmUp(BoringModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            calls.append(batch_idx)
            for group in optimizer.param_groups:
                group["lr"] = 0.1 * min(1.0, (self.global_step + 1) / 4)
            optimizer.step(closure=optimizer_closure)

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(WarmUp(), random_loader())
    assert calls == list(range(8)) and trainer.global_step == 8
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1)


def test_lbfgs_gets_a_closure_that_reevaluates(trainer_kwargs):
    class Lbfgs(BoringModel):
        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters(), lr=0.5, max_iter=5)

    model = Lbfgs()
    x, y = next(iter(random_loader(n=64, batch_size=64)))
    before = F.mse_loss(model(x), y).item()
    ember.Trainer(max_epochs=3, **trainer_kwargs).fit(model, random_loader(n=64, batch_size=64))
    assert F.mse_loss(model(x), y).item() < before


class ValSteps(BoringModel):
    def __init__(self):
        super().__init__()
        self.validated_at = []

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking and batch_idx == 0:
            self.validated_at.append(self.trainer._progress.batches_seen)
        return super().validation_step(batch, batch_idx)


def test_val_check_interval_int_validates_at_its_multiples_only(trainer_kwargs):
    model = ValSteps()
    trainer = ember.Trainer(max_epochs=1, val_check_interval=3, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=80, batch_size=8), random_loader(n=8))
    assert model.validated_at == [3, 6, 9]  # 10 batches: no extra validation at the epoch's end


def test_val_check_interval_across_epochs(trainer_kwargs):
    model = ValSteps()
    trainer = ember.Trainer(max_epochs=2, val_check_interval=4, check_val_every_n_epoch=None,
                            num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=80, batch_size=8), random_loader(n=8))
    assert model.validated_at == [4, 8, 12, 16, 20]


def test_val_check_interval_fraction_includes_the_epoch_end(trainer_kwargs):
    model = ValSteps()
    trainer = ember.Trainer(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=80, batch_size=8), random_loader(n=8))
    assert model.validated_at == [5, 10]


def test_estimated_stepping_batches_takes_the_smaller_limit(trainer_kwargs):
    seen = {}

    class Model(BoringModel):
        def configure_optimizers(self):
            seen["steps"] = self.trainer.estimated_stepping_batches
            return super().configure_optimizers()

    ember.Trainer(max_epochs=2, max_steps=1000, **trainer_kwargs).fit(Model(), random_loader(n=80, batch_size=8))
    assert seen["steps"] == 20


def test_epoch_mean_of_bfloat16_values_is_exact(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("one", torch.ones((), dtype=torch.bfloat16), on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(Model(), random_loader(n=1000 * 2, batch_size=2))
    assert trainer.callback_metrics["one"].item() == 1.0


def test_skipped_last_batch_still_steps_the_accumulated_window(trainer_kwargs):
    steps = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 7:
                return None
            return super().training_step(batch, batch_idx)

        def on_before_optimizer_step(self, optimizer):
            steps.append((self.current_epoch, self.trainer._progress.batch_idx))

    ember.Trainer(max_epochs=2, accumulate_grad_batches=3, **trainer_kwargs).fit(Model(), random_loader())
    # windows: batches 0-2, 3-5, 6 (+ skipped 7) step at the end of each epoch; epoch 1 starts a fresh window
    assert steps == [(0, 2), (0, 5), (0, 7), (1, 2), (1, 5), (1, 7)]


def test_trainer_flags_during_validation_inside_fit(trainer_kwargs):
    flags = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            flags.append(("train", self.trainer.training, self.trainer.validating))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            flags.append(("val", self.trainer.training, self.trainer.validating))
            return super().validation_step(batch, batch_idx)

    ember.Trainer(max_epochs=1, num_sanity_val_steps=0, limit_train_batches=1, limit_val_batches=1,
                  **trainer_kwargs).fit(Model(), random_loader(), random_loader())
    assert flags == [("train", True, False), ("val", False, True)]


def test_test_after_fit_without_a_model_uses_the_best_checkpoint(tmp_path):
    trainer = ember.Trainer(max_epochs=2, default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False, logger=False,
                            callbacks=[ember.callbacks.ModelCheckpoint(monitor="val_loss")])
    trainer.fit(BoringModel(), random_loader(), random_loader())
    with pytest.warns(UserWarning, match="best checkpoint"):
        trainer.test(dataloaders=random_loader(), verbose=False)
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path


def test_validate_returns_epoch_names(trainer_kwargs):
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("both", 1.0, on_step=True, on_epoch=True)
            self.log("plain", 2.0)

    results = ember.Trainer(**trainer_kwargs).validate(Model(), random_loader(), verbose=False)
    assert results == [{"both_epoch": 1.0, "plain": 2.0}]


def test_logged_metrics_without_a_logger(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, log_every_n_steps=1, **trainer_kwargs)
    trainer.fit(BoringModel(), random_loader(), random_loader())
    assert {"train_loss", "val_loss"} <= set(trainer.logged_metrics)


def test_limit_train_batches_zero_trains_nothing(trainer_kwargs):
    model = BoringModel()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = ember.Trainer(max_epochs=3, limit_train_batches=0, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_steps_may_omit_batch_idx(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch):
            return F.mse_loss(self(batch[0]), batch[1])

        def validation_step(self, batch):
            self.log("val_loss", F.mse_loss(self(batch[0]), batch[1]))

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(Model(), random_loader(), random_loader())
    assert trainer.global_step == 8 and "val_loss" in trainer.callback_metrics


def test_toggle_optimizer_and_optimizer_attributes(trainer_kwargs):
    seen = []

    class Gan(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.other = torch.nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            opt_a, opt_b = self.optimizers()
            seen.append(isinstance(opt_a.defaults, dict))
            self.toggle_optimizer(opt_a)
            seen.append((self.layer.weight.requires_grad, self.other.weight.requires_grad))
            self.untoggle_optimizer(opt_a)
            seen.append((self.layer.weight.requires_grad, self.other.weight.requires_grad))

        def configure_optimizers(self):
            return [torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.1)]

    ember.Trainer(max_epochs=1, limit_train_batches=1, **trainer_kwargs).fit(Gan(), random_loader())
    assert seen == [True, (True, False), (True, True)]


def test_limit_train_batches_fetches_no_batch_beyond_the_limit(trainer_kwargs):
    fetched = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            fetched.append(i)
            return torch.randn(32), torch.randn(2)

    trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, **trainer_kwargs)
    trainer.fit(BoringModel(), torch.utils.data.DataLoader(Counting(), batch_size=8))
    assert len(fetched) == 16  # two batches of 8, not a third fetched and dropped
