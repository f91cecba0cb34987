"""ModelCheckpoint: which files a fit writes and keeps, what they are named, and the state they carry."""
from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Optional

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import ModelCheckpoint
from ember.loggers import Logger


class Scripted(ember.LightningModule):
    """A linear regression whose validation logs the next value of ``val_losses`` as ``val_loss``."""

    def __init__(self, val_losses: Optional[list] = None, by_epoch: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        torch.nn.init.constant_(self.layer.weight, 0.1)  # the same start in every run, for resume comparisons
        torch.nn.init.zeros_(self.layer.bias)
        self.val_losses = val_losses
        self.by_epoch = by_epoch  # index by epoch (stable across a resume) instead of by validation run
        self.val_runs = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("real_val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def on_validation_epoch_end(self):
        if self.val_losses is None or self.trainer.sanity_checking:
            return
        index = self.current_epoch if self.by_epoch else self.val_runs
        self.log("val_loss", torch.tensor(float(self.val_losses[index])))
        self.val_runs += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)  # 4 batches per epoch


def fit(tmp_path, callbacks, model=None, val=True, ckpt_path=None, **trainer_kwargs):
    trainer_kwargs.setdefault("max_epochs", 5)
    trainer_kwargs.setdefault("logger", False)
    trainer = ember.Trainer(enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                            callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model or Scripted(), loader(), loader() if val else None, ckpt_path=ckpt_path)
    return trainer


def names(folder) -> list:
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def assert_all_load_safely(folder) -> None:
    for name in names(folder):
        checkpoint = torch.load(os.path.join(folder, name), weights_only=True)
        assert "state_dict" in checkpoint


# --- which files are kept ---------------------------------------------------------------------------
def test_top_k_keeps_the_best_k_and_records_the_ranking(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2,
                           filename="{epoch}-{val_loss:.2f}")
    fit(tmp_path, [ckpt], Scripted([0.5, 0.3, 0.4, 0.2, 0.6]))
    folder = tmp_path / "ckpt"
    assert names(folder) == ["epoch=1-val_loss=0.30.ckpt", "epoch=3-val_loss=0.20.ckpt"]
    assert ckpt.best_model_path == str(folder / "epoch=3-val_loss=0.20.ckpt")
    assert ckpt.best_model_score == pytest.approx(0.2)
    assert ckpt.kth_best_model_path == str(folder / "epoch=1-val_loss=0.30.ckpt")
    assert ckpt.kth_value == pytest.approx(0.3)
    assert {os.path.basename(p): round(v.item(), 3) for p, v in ckpt.best_k_models.items()} == {
        "epoch=1-val_loss=0.30.ckpt": 0.3, "epoch=3-val_loss=0.20.ckpt": 0.2}
    assert ckpt.current_score == pytest.approx(0.2)  # the last score that entered the top k
    assert_all_load_safely(folder)


def test_mode_max_keeps_the_largest(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", mode="max", save_top_k=1, filename="{epoch}")
    fit(tmp_path, [ckpt], Scripted([0.5, 0.9, 0.4, 0.2, 0.6]))
    assert names(tmp_path) == ["epoch=1.ckpt"]
    assert ckpt.best_model_score == pytest.approx(0.9)


def test_save_top_k_minus_one_keeps_every_epoch(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=-1)
    fit(tmp_path, [ckpt], Scripted([0.5, 0.3, 0.4]), max_epochs=3)
    assert names(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]
    assert ckpt.best_model_path.endswith("epoch=1-step=8.ckpt")


def test_without_monitor_only_the_latest_is_kept(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path)
    trainer = fit(tmp_path, [ckpt], val=False, max_epochs=3)
    assert names(tmp_path) == ["epoch=2-step=12.ckpt"]
    assert ckpt.best_model_path == str(tmp_path / "epoch=2-step=12.ckpt")
    assert ckpt.best_model_score is None
    checkpoint = torch.load(ckpt.best_model_path, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, trainer.global_step) == (2, 12)


@pytest.mark.parametrize(("save_top_k", "expected"), [(1, ["latest.ckpt"]), (-1, ["latest-v1.ckpt", "latest.ckpt"])])
def test_a_fixed_filename_is_overwritten_or_versioned(tmp_path, save_top_k, expected):
    fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path, filename="latest", save_top_k=save_top_k)], val=False,
        max_epochs=2)
    assert names(tmp_path) == expected
    assert torch.load(tmp_path / "latest.ckpt", weights_only=True)["epoch"] == (1 if save_top_k == 1 else 0)


def test_nan_is_never_best(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2, filename="{epoch}")
    fit(tmp_path, [ckpt], Scripted([math.nan, 0.4, math.nan, 0.5]), max_epochs=4)
    assert names(tmp_path) == ["epoch=1.ckpt", "epoch=3.ckpt"]
    assert ckpt.best_model_score == pytest.approx(0.4)
    assert all(math.isfinite(v.item()) for v in ckpt.best_k_models.values())


def test_save_last_writes_one_last_file(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=1, save_last=True, filename="{epoch}")
    fit(tmp_path, [ckpt], Scripted([0.5, 0.3, 0.4]), max_epochs=3)
    assert names(tmp_path) == ["epoch=1.ckpt", "last.ckpt"]
    assert ckpt.last_model_path == str(tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 2  # the final epoch, not the best
    assert_all_load_safely(tmp_path)


def test_save_top_k_zero_with_save_last_writes_only_last(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)
    fit(tmp_path, [ckpt], val=False, max_epochs=2)
    assert names(tmp_path) == ["last.ckpt"]
    assert ckpt.best_model_path == ""


def test_save_weights_only_omits_the_training_state(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_weights_only=True)
    fit(tmp_path, [ckpt], val=False, max_epochs=1)
    checkpoint = torch.load(ckpt.best_model_path, weights_only=True)
    assert "state_dict" in checkpoint and "optimizer_states" not in checkpoint and "callbacks" not in checkpoint


def test_files_from_an_earlier_run_get_a_version_suffix(tmp_path):
    fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path, save_last=True)], val=False, max_epochs=1)
    with pytest.warns(UserWarning, match="exists and is not empty; new checkpoints named like existing files get"):
        fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path, save_last=True)], val=False, max_epochs=1)
    assert names(tmp_path) == ["epoch=0-step=4-v1.ckpt", "epoch=0-step=4.ckpt", "last-v1.ckpt", "last.ckpt"]


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_version_counter_can_be_turned_off(tmp_path):
    for _ in range(2):
        fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path, enable_version_counter=False)], val=False, max_epochs=1)
    assert names(tmp_path) == ["epoch=0-step=4.ckpt"]


# --- when it saves -----------------------------------------------------------------------------------
def test_every_n_train_steps(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    fit(tmp_path, [ckpt], val=False, max_epochs=2)  # 8 optimizer steps
    assert names(tmp_path) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


def test_every_n_train_steps_counts_optimizer_steps_with_accumulation(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1)
    fit(tmp_path, [ckpt], val=False, max_epochs=1, accumulate_grad_batches=2)  # 2 optimizer steps
    assert names(tmp_path) == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"]


def test_every_n_epochs(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=2, save_top_k=-1)
    fit(tmp_path, [ckpt], val=False, max_epochs=5)
    assert names(tmp_path) == ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]


def test_train_time_interval(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(microseconds=1), save_top_k=-1)
    fit(tmp_path, [ckpt], val=False, max_epochs=1)
    assert names(tmp_path) == [f"epoch=0-step={s}.ckpt" for s in (1, 2, 3, 4)]


def test_mid_epoch_validation_saves(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=-1, filename="{epoch}-{step}")
    fit(tmp_path, [ckpt], Scripted([0.4, 0.3, 0.2, 0.1]), max_epochs=2, val_check_interval=2)
    assert names(tmp_path) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "epoch=1-step=6.ckpt",
                               "epoch=1-step=8.ckpt"]
    assert ckpt.best_model_score == pytest.approx(0.1)


def test_epochs_without_validation_do_not_save_a_monitored_checkpoint(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=-1, filename="{epoch}")
    fit(tmp_path, [ckpt], Scripted([0.4, 0.3]), max_epochs=4, check_val_every_n_epoch=2)
    assert names(tmp_path) == ["epoch=1.ckpt", "epoch=3.ckpt"]


def test_nothing_is_saved_by_validate_test_or_fast_dev_run(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    model = Scripted([0.1] * 10)
    trainer = ember.Trainer(enable_progress_bar=False, enable_model_summary=False, logger=False,
                            callbacks=[ckpt], fast_dev_run=True)
    trainer.fit(model, loader(), loader())
    trainer.validate(model, loader(), verbose=False)
    assert not os.path.exists(tmp_path / "ckpt")


# --- names and folders ---------------------------------------------------------------------------------
def test_format_checkpoint_name():
    ckpt = ModelCheckpoint(dirpath=None, filename="{epoch:02d}-{val/loss:.2f}-{missing:.1f}")
    metrics = {"epoch": torch.tensor(3), "val/loss": torch.tensor(0.1234)}
    assert ckpt.format_checkpoint_name(metrics) == "epoch=03-val/loss=0.12-missing=0.0.ckpt"
    assert ckpt.format_checkpoint_name(metrics, ver=2) == "epoch=03-val/loss=0.12-missing=0.0-v2.ckpt"
    ckpt.auto_insert_metric_name = False
    assert ckpt.format_checkpoint_name(metrics, filename="best_{epoch}_{val/loss:.3f}") == "best_3_0.123.ckpt"
    assert ModelCheckpoint().format_checkpoint_name({"epoch": 1, "step": torch.tensor(8)}) == "epoch=1-step=8.ckpt"
    assert ModelCheckpoint(dirpath="/tmp/x").format_checkpoint_name({}) == os.path.join(
        os.path.realpath("/tmp/x"), "epoch=0-step=0.ckpt")


def test_metric_names_with_a_slash_work_without_auto_insert(tmp_path):
    class SlashModel(Scripted):
        def on_validation_epoch_end(self):
            self.log("val/acc", torch.tensor(0.25 * (self.current_epoch + 1)))

    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max", auto_insert_metric_name=False,
                           filename="e{epoch}-acc{val/acc:.2f}")
    fit(tmp_path, [ckpt], SlashModel(), max_epochs=2)
    assert names(tmp_path) == ["e1-acc0.50.ckpt"]


def test_default_dirpath_without_logger(tmp_path):
    ckpt = ModelCheckpoint()
    fit(tmp_path, [ckpt], val=False, max_epochs=1)
    assert ckpt.dirpath == os.path.join(str(tmp_path), "checkpoints")
    assert names(tmp_path / "checkpoints") == ["epoch=0-step=4.ckpt"]


class RecordingLogger(Logger):
    def __init__(self, save_dir, version) -> None:
        self._save_dir, self._version, self.saved = save_dir, version, []

    name = property(lambda self: "exp")
    version = property(lambda self: self._version)
    save_dir = property(lambda self: self._save_dir)

    def log_metrics(self, metrics, step=None) -> None: ...
    def log_hyperparams(self, params, *args, **kwargs) -> None: ...

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.saved.append(os.path.basename(checkpoint_callback.best_model_path))


@pytest.mark.parametrize(("version", "folder"), [(3, "version_3"), ("run-a", "run-a")])
def test_default_dirpath_follows_the_logger_and_notifies_it(tmp_path, version, folder):
    logger = RecordingLogger(str(tmp_path / "logs"), version)
    ckpt = ModelCheckpoint()
    fit(tmp_path, [ckpt], val=False, max_epochs=2, logger=logger)
    assert ckpt.dirpath == os.path.join(str(tmp_path), "logs", "exp", folder, "checkpoints")
    assert logger.saved == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]


# --- errors and messages --------------------------------------------------------------------------------
def test_missing_monitor_names_the_key_and_the_logged_metrics(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc")
    with pytest.raises(ValueError) as info:
        fit(tmp_path, [ckpt], Scripted([0.5, 0.4]), max_epochs=2)
    assert str(info.value) == (
        "ModelCheckpoint(monitor='val_acc') found no metric 'val_acc'; logged metrics are: 'real_val_loss', "
        "'train_loss', 'val_loss'. Log it with self.log('val_acc', ...) in validation_step, or fix `monitor`.")
    assert names(tmp_path) == []


def test_step_saves_before_the_first_validation_wait_for_the_metric(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", every_n_train_steps=2, save_top_k=-1,
                           filename="{step}")
    with pytest.warns(UserWarning, match="found no metric 'val_loss'"):
        fit(tmp_path, [ckpt], Scripted([0.5, 0.4]), max_epochs=2)
    assert names(tmp_path) == ["step=6.ckpt", "step=8.ckpt"]  # steps 2 and 4 came before any validation


def test_verbose_message(tmp_path, capsys):
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", filename="{epoch}", verbose=True)
    fit(tmp_path, [ckpt], Scripted([0.5, 0.7]), max_epochs=2)
    out = capsys.readouterr().out
    path = str(tmp_path / "epoch=0.ckpt")
    assert f"Epoch 0, global step 4: 'val_loss' reached 0.50000 (best 0.50000), saving model to '{path}'" in out
    assert "Epoch 1, global step 8: 'val_loss' was not in top 1" in out


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "avg"}, "mode='avg'.*'min' or 'max'"),
    ({"save_top_k": -2}, "save_top_k=-2"),
    ({"save_top_k": 3}, "save_top_k=3, monitor=None"),
    ({"every_n_epochs": -1}, "every_n_epochs=-1"),
    ({"every_n_train_steps": -5}, "every_n_train_steps=-5"),
    ({"every_n_train_steps": 2, "every_n_epochs": 3}, "every_n_train_steps=2, every_n_epochs=3.*exclusive"),
    ({"every_n_epochs": 1, "train_time_interval": timedelta(minutes=1)}, "exclusive"),
    ({"save_last": "yes"}, "save_last='yes'"),
])
def test_constructor_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(**kwargs)


# --- state ----------------------------------------------------------------------------------------------
def test_state_key_separates_two_checkpoint_callbacks(tmp_path):
    by_loss = ModelCheckpoint(dirpath=tmp_path / "a", monitor="val_loss")
    by_step = ModelCheckpoint(dirpath=tmp_path / "b", every_n_train_steps=4)
    assert by_loss.state_key != by_step.state_key
    fit(tmp_path, [by_loss, by_step], Scripted([0.5, 0.4]), max_epochs=2)
    states = torch.load(by_loss.best_model_path, weights_only=True)["callbacks"]
    assert states[by_loss.state_key]["best_model_path"] == by_loss.best_model_path
    assert states[by_step.state_key]["dirpath"] == str(tmp_path / "b")


class StepScored(Scripted):
    """Logs ``score`` = ``scores[global_step]`` in every training step."""

    def __init__(self, scores: list) -> None:
        super().__init__()
        self.scores = scores

    def training_step(self, batch, batch_idx):
        self.log("score", torch.tensor(self.scores[self.global_step]))
        return super().training_step(batch, batch_idx)


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_resume_mid_run_continues_the_ranking(tmp_path):
    scores = [0.9, 0.5, 0.8, 0.4, 0.7, 0.6, 0.3, 0.35]  # step k's save sees scores[k - 1]

    def checkpoint(folder):
        return ModelCheckpoint(dirpath=folder, monitor="score", save_top_k=2, every_n_train_steps=2,
                               filename="{step}-{score:.2f}")

    fit(tmp_path, [checkpoint(tmp_path / "straight")], StepScored(scores), val=False, max_epochs=2)
    first = checkpoint(tmp_path / "resumed")
    fit(tmp_path, [first], StepScored(scores), val=False, max_epochs=1)
    assert names(tmp_path / "resumed") == ["step=2-score=0.50.ckpt", "step=4-score=0.40.ckpt"]
    resumed = checkpoint(tmp_path / "resumed")
    fit(tmp_path, [resumed], StepScored(scores), val=False, max_epochs=2, ckpt_path=first.best_model_path)
    assert names(tmp_path / "resumed") == names(tmp_path / "straight") == [
        "step=4-score=0.40.ckpt", "step=8-score=0.35.ckpt"]
    assert resumed.best_model_score == pytest.approx(0.35)
    assert resumed.kth_value == pytest.approx(0.4)
    assert_all_load_safely(tmp_path / "resumed")


@pytest.mark.filterwarnings("ignore:Checkpoint directory")
def test_resume_from_an_epoch_end_checkpoint_continues_like_an_uninterrupted_run(tmp_path):
    losses = [0.5, 0.3, 0.4, 0.2, 0.6]

    def checkpoint(folder):
        return ModelCheckpoint(dirpath=folder, monitor="val_loss", save_top_k=2, save_last=True,
                               filename="{epoch}-{val_loss:.2f}")

    straight = checkpoint(tmp_path / "straight")
    fit(tmp_path, [straight], Scripted(losses, by_epoch=True), max_epochs=5)
    fit(tmp_path, [checkpoint(tmp_path / "resumed")], Scripted(losses, by_epoch=True), max_epochs=2)
    resumed = checkpoint(tmp_path / "resumed")
    model = Scripted(losses, by_epoch=True)
    fit(tmp_path, [resumed], model, max_epochs=5, ckpt_path=str(tmp_path / "resumed" / "last.ckpt"))
    assert model.val_runs == 3  # epochs 2, 3 and 4: epoch 1 finished before the checkpoint was written
    assert names(tmp_path / "resumed") == names(tmp_path / "straight") == [
        "epoch=1-val_loss=0.30.ckpt", "epoch=3-val_loss=0.20.ckpt", "last.ckpt"]
    assert resumed.best_model_score == pytest.approx(0.2)
    assert torch.equal(torch.load(resumed.last_model_path, weights_only=True)["state_dict"]["layer.weight"],
                       torch.load(straight.last_model_path, weights_only=True)["state_dict"]["layer.weight"])


def test_save_last_link_points_at_the_newest_checkpoint(tmp_path):
    from conftest import BoringModel, random_loader

    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last="link", save_top_k=-1, filename="{epoch}")
    trainer = ember.Trainer(max_epochs=3, callbacks=[checkpoint], enable_progress_bar=False,
                            enable_model_summary=False, logger=False, accelerator="cpu")
    trainer.fit(BoringModel(), random_loader())
    last = tmp_path / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch=2.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert checkpoint.last_model_path == str(last)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt", "last.ckpt"]


def test_save_last_link_writes_a_file_when_nothing_new_was_saved(tmp_path):
    from conftest import BoringModel, random_loader

    class Worse(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("score", float(self.current_epoch))  # best at epoch 0 with mode="min"

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", save_last="link", filename="{epoch}")
    trainer = ember.Trainer(max_epochs=2, callbacks=[checkpoint], enable_progress_bar=False,
                            enable_model_summary=False, logger=False, accelerator="cpu")
    trainer.fit(Worse(), random_loader(), random_loader())
    last = tmp_path / "last.ckpt"
    assert not last.is_symlink()  # epoch 1 was not in the top 1: last.ckpt is a complete file of epoch 1
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert checkpoint.best_model_path == str(tmp_path / "epoch=0.ckpt")


def test_temporary_files_of_killed_saves_are_removed_at_the_next_setup(tmp_path, trainer_kwargs):
    """A SIGKILL during a save leaves '.{name}.ember-{pid}@{host}.*.tmp'. The next run removes those whose process
    is gone on this host, and nothing else: a live writer's, another host's, a file that is not ember's."""
    import subprocess
    import sys

    from conftest import BoringModel, random_loader
    from ember._checkpoint_io import _host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "ckpts"
    folder.mkdir()
    names = {"stale": f".epoch=3.ckpt.ember-{dead.pid}@{_host()}.k2j4.tmp",
             "live": f".epoch=4.ckpt.ember-{os.getpid()}@{_host()}.a1b2.tmp",
             "other_host": f".epoch=5.ckpt.ember-{dead.pid}@elsewhere.c3d4.tmp",
             "not_ours": ".notes.tmp"}
    for name in names.values():
        (folder / name).write_bytes(b"partial")
    callback = ModelCheckpoint(dirpath=folder)
    trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[callback],
                            **{**trainer_kwargs, "enable_checkpointing": True})
    trainer.fit(BoringModel(), random_loader())
    left = {p.name for p in folder.iterdir()}
    assert names["stale"] not in left
    assert {names["live"], names["other_host"], names["not_ours"]} <= left
    assert any(name.endswith(".ckpt") for name in left)
