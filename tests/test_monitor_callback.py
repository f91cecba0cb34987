"""MonitorCallback (ModelCheckpoint's and EarlyStopping's shared base) and what callbacks read of the run:
``trainer.run_state`` in hooks, and ``trainer.callback_metrics`` as one dict a callback may add to."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import BoringModel, random_loader

import ember
from ember.callbacks import Callback, Checkpoint, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from ember.callbacks.monitor import MonitorCallback
from ember.loggers import Logger

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`",
                                        "ignore:The number of training batches")


def make_trainer(tmp_path, callbacks, **kwargs):
    defaults = dict(max_epochs=3, enable_progress_bar=False, enable_model_summary=False, logger=False,
                    default_root_dir=tmp_path, accelerator="cpu", enable_checkpointing=True)
    defaults.update(kwargs)
    return ember.Trainer(callbacks=callbacks, **defaults)


class AddsScore(Callback):
    """A user callback that adds its own value to ``callback_metrics`` at the end of each training epoch."""

    def __init__(self, scores):
        self.scores = scores

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.callback_metrics.update({"score": torch.tensor(self.scores[trainer.current_epoch])})


class TrainOnly(BoringModel):
    def validation_step(self, batch, batch_idx):
        return None


# --- the class layout ---------------------------------------------------------------------------------------
def test_both_callbacks_share_the_base_and_keep_their_lightning_bases():
    checkpoint, stop = ModelCheckpoint(monitor="x"), EarlyStopping("x")
    assert isinstance(checkpoint, Checkpoint) and isinstance(checkpoint, MonitorCallback)
    assert isinstance(stop, Callback) and isinstance(stop, MonitorCallback)
    assert checkpoint.monitor_op is torch.lt and EarlyStopping("x", mode="max").monitor_op is torch.gt
    assert sorted(stop.state_dict()) == ["best_score", "patience", "stopped_epoch", "wait_count"]
    assert sorted(checkpoint.state_dict()) == ["best_k_models", "best_model_path", "best_model_score",
                                               "current_score", "dirpath", "kth_best_model_path", "kth_value",
                                               "last_model_path", "monitor"]


@pytest.mark.parametrize("make", [lambda: ModelCheckpoint(mode="avg"), lambda: EarlyStopping("x", mode="avg")])
def test_mode_is_checked_once_for_both(make):
    with pytest.raises(ValueError, match=r"^\w+\(mode='avg'\) is not valid: use 'min' or 'max'\.$"):
        make()


# --- callback_metrics: what a user callback adds is monitored ---------------------------------------------
def test_a_value_a_callback_adds_to_callback_metrics_is_monitored(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max", filename="{epoch}-{score:.1f}")
    stop = EarlyStopping("score", mode="max", patience=1)
    # AddsScore runs before both (they act last at an epoch's end), so they see this epoch's score
    trainer = make_trainer(tmp_path, [stop, checkpoint, AddsScore([0.5, 0.9, 0.7, 0.6])], max_epochs=4)
    trainer.fit(TrainOnly(), random_loader(n=16))
    assert os.path.basename(checkpoint.best_model_path) == "epoch=1-score=0.9.ckpt"
    assert float(checkpoint.best_model_score) == pytest.approx(0.9)
    assert stop.stopped_epoch == 2 and trainer.current_epoch == 3  # 0.7 did not improve on 0.9: patience 1
    assert float(trainer.callback_metrics["score"]) == pytest.approx(0.7)  # the dict persists after fit


@pytest.mark.parametrize(("make", "error", "tail"), [
    (lambda: ModelCheckpoint(monitor="scor"), ValueError, ""),
    (lambda: EarlyStopping("scor"), RuntimeError, " Pass strict=False to skip the check while it is missing."),
])
def test_a_missing_metric_names_it_lists_the_available_ones_and_says_how_to_log_it(tmp_path, make, error, tail):
    callback = make()
    trainer = make_trainer(tmp_path, [callback, AddsScore([0.5])], max_epochs=1)
    with pytest.raises(error) as info:
        trainer.fit(TrainOnly(), random_loader(n=16))
    owner = type(callback).__name__
    assert str(info.value) == (
        f"{owner}(monitor='scor') found no metric 'scor'; logged metrics are: 'score', 'train_loss'. "
        f"Log it with self.log('scor', ...) in training_step, or fix `monitor`.{tail}")


def test_lr_monitor_values_reach_callback_metrics_and_can_be_monitored(tmp_path):
    class Decaying(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="lr-SGD", mode="max", filename="{epoch}")
    trainer = make_trainer(tmp_path, [LearningRateMonitor(logging_interval="epoch"), checkpoint],
                           logger=ember.loggers.CSVLogger(tmp_path))
    trainer.fit(Decaying(), random_loader(n=16), random_loader(n=16))
    assert float(trainer.callback_metrics["lr-SGD"]) == pytest.approx(0.025)  # logged at the last epoch's start
    assert os.path.basename(checkpoint.best_model_path) == "epoch=0.ckpt"  # the largest learning rate


# --- when they act: one rule for both ---------------------------------------------------------------------
@pytest.mark.parametrize(("at_epoch_end_only", "acts"), [(None, 4), (True, 2)])
def test_both_act_after_each_validation_or_only_at_epoch_ends(tmp_path, at_epoch_end_only, acts):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=-1, filename="{step}",
                                 save_on_train_epoch_end=at_epoch_end_only)
    stop = EarlyStopping("val_loss", patience=100, min_delta=1e9, check_on_train_epoch_end=at_epoch_end_only)
    trainer = make_trainer(tmp_path, [checkpoint, stop], max_epochs=2, val_check_interval=0.5)
    trainer.fit(BoringModel(), random_loader(n=32), random_loader(n=16))  # 4 batches: validation every 2
    assert len(os.listdir(tmp_path / "ckpt")) == acts
    assert stop.wait_count == acts - 1  # the first check improves on inf, no later one improves by 1e9


# --- run_state in hooks -----------------------------------------------------------------------------------
class StepLogger(Logger):
    name = property(lambda self: "steps")
    version = property(lambda self: 0)

    def __init__(self):
        super().__init__()
        self.steps = []

    def log_metrics(self, metrics, step=None):
        if "train_loss_step" in metrics or "train_loss" in metrics:
            self.steps.append(step)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class RecordsRunState(Callback):
    def __init__(self):
        self.starts, self.ends = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(trainer.run_state.next_step_logs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        run = trainer.run_state
        self.ends.append((run.stepped, run.is_logging_step, run.batches_stepped, run.epoch_done))


def test_run_state_is_logging_step_matches_the_steps_loggers_get_values_under_accumulation(tmp_path):
    logger, record = StepLogger(), RecordsRunState()
    trainer = make_trainer(tmp_path, [record], max_epochs=1, logger=logger, enable_checkpointing=False,
                           accumulate_grad_batches=2, log_every_n_steps=2)
    trainer.fit(TrainOnly(), random_loader(n=64))  # 8 batches, 4 optimizer steps
    assert [stepped for stepped, _, _, _ in record.ends] == [False, True] * 4
    assert [logs for _, logs, _, _ in record.ends] == [False, False, False, True] * 2
    logged_at = [stepped - 1 for _, logs, stepped, _ in record.ends if logs]
    assert logged_at == logger.steps == [1, 3]  # the index of the batch that stepped, as in Lightning
    assert record.starts == [False, False, True, True] * 2  # the coming batch logs if it steps
    assert not any(done for _, _, _, done in record.ends)


def test_run_state_validation_facts(tmp_path):
    seen = {}

    class Records(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            run = trainer.run_state
            seen[trainer.current_epoch] = (run.validation_enabled, run.validated_at_epoch_end, run.epoch_done)

    trainer = make_trainer(tmp_path, [Records()], max_epochs=2, check_val_every_n_epoch=2,
                           enable_checkpointing=False)
    trainer.fit(BoringModel(), random_loader(n=16), random_loader(n=16))
    assert seen == {0: (True, False, True), 1: (True, True, True)}
    trainer = make_trainer(tmp_path, [Records()], max_epochs=1, enable_checkpointing=False)
    trainer.fit(TrainOnly(), random_loader(n=16))
    assert seen[0] == (False, False, True)
