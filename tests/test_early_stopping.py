"""EarlyStopping: the epoch training stops at, for each stopping rule, and its state across a resume."""
from __future__ import annotations

import math
import os
from typing import Optional

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import EarlyStopping, ModelCheckpoint


class Scripted(ember.LightningModule):
    """Validation logs ``val_loss`` = the next value of ``values`` (by epoch with ``by_epoch``)."""

    def __init__(self, values: Optional[list] = None, by_epoch: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        torch.nn.init.constant_(self.layer.weight, 0.1)
        torch.nn.init.zeros_(self.layer.bias)
        self.values = values
        self.by_epoch = by_epoch
        self.val_runs = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        if self.values is None or self.trainer.sanity_checking:
            return
        self.log("val_loss", torch.tensor(float(self.values[self.current_epoch if self.by_epoch else self.val_runs])))
        self.val_runs += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)  # 4 batches per epoch


def fit(tmp_path, callbacks, model, val=True, ckpt_path=None, **trainer_kwargs):
    trainer_kwargs.setdefault("max_epochs", 10)
    trainer = ember.Trainer(enable_progress_bar=False, enable_model_summary=False, logger=False,
                            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                            default_root_dir=tmp_path, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model, loader(), loader() if val else None, ckpt_path=ckpt_path)
    return trainer


def test_stops_after_patience_checks_without_improvement(tmp_path):
    stop = EarlyStopping("val_loss", patience=2)
    trainer = fit(tmp_path, [stop], Scripted([0.5, 0.3, 0.4, 0.35, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert stop.stopped_epoch == 3
    assert trainer.current_epoch == 4  # epochs 0..3 ran
    assert stop.wait_count == 2
    assert stop.best_score == pytest.approx(0.3)
    assert stop.stopping_reason_message == (
        "Monitored metric val_loss did not improve in the last 2 records. Best score: 0.300. Signaling Trainer to stop.")


def test_an_improvement_resets_patience(tmp_path):
    stop = EarlyStopping("val_loss", patience=2)
    trainer = fit(tmp_path, [stop], Scripted([0.5, 0.6, 0.4, 0.6, 0.3, 0.7, 0.2]), max_epochs=7)
    assert trainer.current_epoch == 7 and not trainer.should_stop
    assert stop.stopped_epoch == 0 and stop.stopping_reason_message is None


def test_min_delta(tmp_path):
    stop = EarlyStopping("val_loss", patience=2, min_delta=0.05)
    trainer = fit(tmp_path, [stop], Scripted([1.0, 0.97, 0.9, 0.87, 0.86, 0.5]))
    # 0.97 is not 0.05 below 1.0; 0.9 is (best 0.9); 0.87 and 0.86 are not: stop at epoch 4
    assert stop.stopped_epoch == 4 and trainer.current_epoch == 5
    assert stop.best_score == pytest.approx(0.9)


def test_mode_max(tmp_path):
    stop = EarlyStopping("val_loss", mode="max", patience=1)
    fit(tmp_path, [stop], Scripted([0.1, 0.5, 0.6, 0.55, 0.9]))
    assert stop.stopped_epoch == 3 and stop.best_score == pytest.approx(0.6)


def test_stopping_threshold(tmp_path):
    stop = EarlyStopping("val_loss", stopping_threshold=0.2, patience=100)
    fit(tmp_path, [stop], Scripted([0.5, 0.3, 0.2, 0.15, 0.1]))
    assert stop.stopped_epoch == 3  # 0.2 is not below 0.2; 0.15 is
    assert stop.stopping_reason_message == "Stopping threshold reached: val_loss = 0.150 < 0.2. Signaling Trainer to stop."


def test_divergence_threshold(tmp_path):
    stop = EarlyStopping("val_loss", divergence_threshold=2.0, patience=100)
    fit(tmp_path, [stop], Scripted([0.5, 1.5, 2.0, 3.0, 0.1]))
    assert stop.stopped_epoch == 3
    assert stop.stopping_reason_message == "Divergence threshold reached: val_loss = 3.000 > 2.0. Signaling Trainer to stop."


def test_non_finite_value_stops(tmp_path):
    stop = EarlyStopping("val_loss", patience=100)
    fit(tmp_path, [stop], Scripted([0.5, 0.4, math.nan, 0.1]))
    assert stop.stopped_epoch == 2
    assert stop.stopping_reason_message.startswith("Monitored metric val_loss = nan is not finite. Previous best value "
                                                   "was 0.400")


def test_non_finite_value_counts_as_no_improvement_without_check_finite(tmp_path):
    stop = EarlyStopping("val_loss", patience=2, check_finite=False)
    fit(tmp_path, [stop], Scripted([0.5, math.nan, 0.4, math.nan, math.inf, 0.1]))
    assert stop.stopped_epoch == 4 and stop.best_score == pytest.approx(0.4)


def test_missing_metric_with_strict_raises(tmp_path):
    stop = EarlyStopping("val_acc")
    with pytest.raises(RuntimeError) as info:
        fit(tmp_path, [stop], Scripted([0.5, 0.4]))
    assert str(info.value) == (
        "EarlyStopping(monitor='val_acc') found no metric 'val_acc'; logged metrics are: 'train_loss', 'val_loss'. "
        "Log it with self.log('val_acc', ...) in validation_step, or fix `monitor`. Pass strict=False to skip the "
        "check while it is missing.")


def test_missing_metric_without_strict_warns_once_and_trains_on(tmp_path):
    stop = EarlyStopping("val_acc", strict=False, patience=1)
    with pytest.warns(RuntimeWarning, match="found no metric 'val_acc'") as record:
        trainer = fit(tmp_path, [stop], Scripted([0.5] * 3), max_epochs=3)
    assert len([w for w in record if "val_acc" in str(w.message)]) == 1
    assert trainer.current_epoch == 3 and stop.stopped_epoch == 0


def test_verbose_prints_each_decision(tmp_path, capsys):
    stop = EarlyStopping("val_loss", patience=1, verbose=True)
    fit(tmp_path, [stop], Scripted([0.5, 0.3, 0.4]))
    assert capsys.readouterr().out.splitlines() == [
        "Metric val_loss improved. New best score: 0.500",
        "Metric val_loss improved by 0.200 >= min_delta = 0.0. New best score: 0.300",
        "Monitored metric val_loss did not improve in the last 1 records. Best score: 0.300. Signaling Trainer to stop.",
    ]


def test_without_validation_it_checks_training_metrics_at_epoch_end(tmp_path):
    class TrainScripted(Scripted):
        def on_train_epoch_end(self):
            self.log("train_score", torch.tensor([0.5, 0.4, 0.45, 0.42, 0.1][self.current_epoch]))

    stop = EarlyStopping("train_score", patience=2)
    trainer = fit(tmp_path, [stop], TrainScripted(), val=False)
    assert stop.stopped_epoch == 3 and trainer.current_epoch == 4


def test_epochs_without_validation_are_not_checked(tmp_path):
    stop = EarlyStopping("val_loss", patience=2)
    trainer = fit(tmp_path, [stop], Scripted([0.5, 0.6, 0.7, 0.1]), check_val_every_n_epoch=2)
    # validations at epochs 1, 3, 5: patience counts validations, not epochs
    assert stop.stopped_epoch == 5 and trainer.current_epoch == 6


def test_mid_epoch_validation_is_checked(tmp_path):
    stop = EarlyStopping("val_loss", patience=2)
    trainer = fit(tmp_path, [stop], Scripted([0.5, 0.4, 0.45, 0.42, 0.1, 0.1]), val_check_interval=2)
    # two validations per epoch: the 4th (epoch 1, end) exhausts patience
    assert stop.stopped_epoch == 1 and trainer.current_epoch == 2


def test_check_on_train_epoch_end_skips_mid_epoch_validations(tmp_path):
    stop = EarlyStopping("val_loss", patience=1, check_on_train_epoch_end=True)
    model = Scripted([0.9, 0.5, 0.9, 0.4, 0.9, 0.3])  # mid-epoch, end, mid-epoch, end, ...
    trainer = fit(tmp_path, [stop], model, val_check_interval=2, max_epochs=3)
    assert trainer.current_epoch == 3 and stop.best_score == pytest.approx(0.3)  # the 0.9s were never checked


def test_validate_and_sanity_check_are_not_checked(tmp_path):
    stop = EarlyStopping("val_loss", patience=0)
    model = Scripted([0.5] * 4)
    trainer = fit(tmp_path, [stop], model, max_epochs=1, num_sanity_val_steps=2)
    trainer.validate(model, loader(), verbose=False)
    assert stop.wait_count == 0 and stop.best_score == pytest.approx(0.5)


def test_state_dict_round_trip():
    stop = EarlyStopping("val_loss", patience=4)
    stop.wait_count, stop.stopped_epoch, stop.best_score = 2, 7, torch.tensor(0.25)
    other = EarlyStopping("val_loss")
    other.load_state_dict(stop.state_dict())
    assert (other.wait_count, other.stopped_epoch, other.patience) == (2, 7, 4)
    assert other.best_score == pytest.approx(0.25)
    assert stop.state_key == other.state_key != EarlyStopping("val_loss", mode="max").state_key


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_patience_survives_a_resume(tmp_path):
    values = [0.5, 0.3, 0.4, 0.35, 0.1, 0.1]  # without a break: stops at epoch 3

    def callbacks():
        return [EarlyStopping("val_loss", patience=2),
                ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")]

    fit(tmp_path, callbacks(), Scripted(values, by_epoch=True))
    checkpoint = os.path.join(tmp_path, "step=14.ckpt")  # mid-epoch 3: best 0.3, then one check without improvement
    state = torch.load(checkpoint, weights_only=True)["callbacks"][EarlyStopping("val_loss").state_key]
    assert state["wait_count"] == 1 and state["best_score"] == pytest.approx(0.3)
    resumed = callbacks()
    trainer = fit(tmp_path, resumed, Scripted(values, by_epoch=True), ckpt_path=checkpoint)
    assert resumed[0].stopped_epoch == 3 and trainer.current_epoch == 4


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_resume_from_last_checkpoint_counts_each_epoch_once(tmp_path):
    values = [0.5, 0.3, 0.4, 0.35, 0.1, 0.1]  # without a break: stops at epoch 3

    def callbacks():
        return [EarlyStopping("val_loss", patience=2), ModelCheckpoint(dirpath=tmp_path, save_last=True)]

    fit(tmp_path, callbacks(), Scripted(values, by_epoch=True), max_epochs=3)
    resumed = callbacks()
    trainer = fit(tmp_path, resumed, Scripted(values, by_epoch=True), ckpt_path=os.path.join(tmp_path, "last.ckpt"))
    assert resumed[0].stopped_epoch == 3 and trainer.current_epoch == 4


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "auto"}, "mode='auto'.*'min' or 'max'"),
                                               ({"patience": -1}, "patience=-1")])
def test_constructor_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping("val_loss", **kwargs)
