"""TQDMProgressBar and ModelSummary: what a user sees on the terminal."""
from __future__ import annotations

import math
import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ember
from conftest import BoringModel, random_loader
from ember.callbacks import ModelSummary, ProgressBar, TQDMProgressBar
from ember.callbacks.model_summary import summarize


class SequentialModel(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))  # 528 + 68 params
        self.head = nn.Linear(4, 2)  # 10 params, frozen below
        self.head.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


# --- model summary ---------------------------------------------------------------------------------------
def test_summarize_lists_children_and_exact_counts():
    lines = summarize(SequentialModel()).splitlines()
    assert lines[0].split("|") == ["  ", " Name    ", " Type       ", " Params ", " Mode"]
    assert lines[2].split() == ["0", "|", "encoder", "|", "Sequential", "|", "596", "|", "train"]
    assert lines[3].split() == ["1", "|", "head", "|", "Linear", "|", "10", "|", "train"]
    assert set(lines[1]) == {"-"} and lines[4] == lines[1]
    assert lines[5:] == [
        "596       Trainable params",
        "10        Non-trainable params",
        "606       Total params",
        "0.002     Total estimated model params size (MB)",  # 606 float32 values: 2424 bytes
        "6         Modules in train mode",
        "0         Modules in eval mode",
    ]


def test_summarize_depth():
    model = SequentialModel()

    def names(depth: int) -> list[str]:
        rows = summarize(model, depth).splitlines()[2:]
        return [row.split(" | ")[1].strip() for row in rows if " | " in row]

    assert names(1) == ["encoder", "head"]
    assert names(2) == ["encoder", "encoder.0", "encoder.1", "encoder.2", "head"]
    assert names(-1) == names(2)
    assert names(0) == []
    with pytest.raises(ValueError, match="max_depth=-2"):
        summarize(model, -2)


def test_summarize_sizes_from_example_input_keep_each_modules_mode():
    model = SequentialModel()
    model.example_input_array = torch.zeros(3, 32)
    model.head.eval()
    lines = summarize(model, max_depth=2).splitlines()
    assert lines[0].split("|")[-2:] == [" In sizes ", " Out sizes"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[4:]] for line in lines[2:7]}
    assert rows["encoder"] == ["train", "[3, 32]", "[3, 4]"]
    assert rows["encoder.1"] == ["train", "[3, 16]", "[3, 16]"]
    assert rows["head"] == ["eval", "[3, 4]", "[3, 2]"]
    assert model.training and model.encoder.training and not model.head.training
    assert "5         Modules in train mode" in lines


def test_human_readable_counts():
    from ember.callbacks.model_summary import _human_count

    assert [_human_count(n) for n in (0, 999, 1234, 50_400, 101_234, 3_400_000, 2 * 10**9)] == \
        ["0", "999", "1.2 K", "50.4 K", "101 K", "3.4 M", "2.0 B"]


def test_summary_prints_at_fit_start(trainer_kwargs, capsys):
    trainer_kwargs["enable_model_summary"] = True
    ember.Trainer(max_steps=1, **trainer_kwargs).fit(BoringModel(), random_loader(16))
    out = capsys.readouterr().out
    assert "0 | layer | Linear | 66     | train" in out
    assert "66        Total params" in out


def test_summary_depth_zero_prints_nothing(trainer_kwargs, capsys):
    trainer_kwargs.pop("enable_model_summary")
    ember.Trainer(max_steps=1, callbacks=[ModelSummary(max_depth=0)], **trainer_kwargs).fit(
        BoringModel(), random_loader(16))
    assert "Total params" not in capsys.readouterr().out


# --- progress bar: against the Trainer ---------------------------------------------------------------------
def test_fit_shows_epoch_bar_and_writes_metrics_csv(tmp_path, capsys):
    trainer = ember.Trainer(max_epochs=2, default_root_dir=tmp_path, enable_checkpointing=False,
                            enable_model_summary=False, log_every_n_steps=2, accelerator="cpu",
                            logger=ember.loggers.CSVLogger(tmp_path))
    trainer.fit(BoringModel(), random_loader(32), random_loader(16))
    out = capsys.readouterr().out
    assert "Sanity Checking" in out
    assert "Epoch 0: 100%" in out and "4/4" in out and "Epoch 1: 100%" in out
    assert "v_num=0" in out
    bar = trainer.progress_bar_callback
    assert bar.train_progress_bar is None and bar.val_progress_bar is None  # closed at the end
    assert os.path.isfile(os.path.join(tmp_path, "lightning_logs", "version_0", "metrics.csv"))


def test_refresh_rate_zero_prints_nothing(trainer_kwargs, capsys):
    trainer_kwargs.pop("enable_progress_bar")
    bar = TQDMProgressBar(refresh_rate=0)
    trainer = ember.Trainer(max_epochs=1, callbacks=[bar], **trainer_kwargs)
    trainer.fit(BoringModel(), random_loader(16), random_loader(16))
    trainer.test(BoringModel(), random_loader(16), verbose=False)
    assert bar.is_disabled
    assert capsys.readouterr().out == ""


def test_test_and_predict_bars(trainer_kwargs, capsys):
    class Predicting(BoringModel):
        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    trainer_kwargs.pop("enable_progress_bar")
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.test(Predicting(), random_loader(24), verbose=False)
    trainer.predict(Predicting(), random_loader(16))
    out = capsys.readouterr().out
    assert "Testing: 100%" in out and "3/3" in out
    assert "Predicting: 100%" in out and "2/2" in out


def test_bars_close_on_exception(trainer_kwargs):
    class Failing(BoringModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    trainer_kwargs.pop("enable_progress_bar")
    bar = TQDMProgressBar()
    with pytest.raises(RuntimeError, match="boom"):
        ember.Trainer(max_epochs=1, callbacks=[bar], **trainer_kwargs).fit(Failing(), random_loader(32))
    assert bar.train_progress_bar is None


# --- progress bar: its own logic, driven by a stand-in trainer -----------------------------------------------------
class FakeTrainer:
    """The trainer attributes the bar reads; counts reads of ``progress_bar_metrics``."""

    def __init__(self, num_training_batches=10) -> None:
        self.num_training_batches = num_training_batches
        self.current_epoch = 0
        self.sanity_checking = False
        self.is_global_zero = True
        self.logger = SimpleNamespace(version="20240101-abcd")
        self.metric_reads = 0

    @property
    def progress_bar_metrics(self) -> dict:
        self.metric_reads += 1
        return {"loss": torch.tensor(0.25), "acc": 1}


def test_get_metrics_converts_values_and_adds_version():
    metrics = ProgressBar().get_metrics(FakeTrainer(), None)
    assert metrics == {"v_num": "abcd", "loss": 0.25, "acc": 1}


def test_bar_advances_every_refresh_rate_batches_and_reads_metrics_rarely(capsys):
    trainer, bar = FakeTrainer(num_training_batches=10), TQDMProgressBar(refresh_rate=4)
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    seen = []
    for i in range(10):
        bar.on_train_batch_end(trainer, None, None, None, i)
        seen.append(bar.train_progress_bar.n)
    assert seen == [0, 0, 0, 4, 4, 4, 4, 8, 8, 10]  # every 4 batches, and the last one
    assert trainer.metric_reads == 0  # well under mininterval: no per-step metric read (a GPU sync)
    bar.on_train_epoch_end(trainer, None)
    assert trainer.metric_reads == 1
    bar.on_train_end(trainer, None)
    assert "Epoch 0: 100%" in capsys.readouterr().out


def test_unknown_length_gives_a_bar_without_total(capsys):
    trainer, bar = FakeTrainer(num_training_batches=math.inf), TQDMProgressBar()
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    bar.on_train_batch_end(trainer, None, None, None, 0)
    assert bar.train_progress_bar.total is None and bar.train_progress_bar.n == 1
    bar.on_exception(trainer, None, RuntimeError())
    assert bar.train_progress_bar is None


def test_leave_keeps_one_finished_bar_per_epoch(capsys):
    trainer, bar = FakeTrainer(num_training_batches=2), TQDMProgressBar(leave=True)
    bar.on_train_start(trainer, None)
    for epoch in range(3):
        trainer.current_epoch = epoch
        bar.on_train_epoch_start(trainer, None)
        for i in range(2):
            bar.on_train_batch_end(trainer, None, None, None, i)
        bar.on_train_epoch_end(trainer, None)
    bar.on_train_end(trainer, None)
    finished = [line for line in capsys.readouterr().out.split("\n") if "2/2" in line]
    assert len(finished) == 3


def test_bar_is_disabled_off_global_rank_zero():
    trainer, bar = FakeTrainer(), TQDMProgressBar()
    trainer.is_global_zero = False
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    assert bar.is_disabled and bar.train_progress_bar is None


def test_negative_refresh_rate_is_refused():
    with pytest.raises(ValueError, match="refresh_rate=-1"):
        TQDMProgressBar(refresh_rate=-1)


def test_default_logger_is_tensorboard_when_installed_else_csv(tmp_path):
    import importlib.util

    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_checkpointing=False,
                            enable_model_summary=False, enable_progress_bar=False, accelerator="cpu")
    trainer.fit(BoringModel(), random_loader(16))
    folder = tmp_path / "lightning_logs" / "version_0"
    if importlib.util.find_spec("tensorboard") is not None:
        assert type(trainer.logger).__name__ == "TensorBoardLogger"
        assert list(folder.glob("events.out.tfevents.*"))
    else:
        assert type(trainer.logger).__name__ == "CSVLogger"
        assert (folder / "metrics.csv").is_file()
    assert (folder / "hparams.yaml").is_file()


def test_a_bar_subclass_that_logs_from_its_batch_hook_is_called_as_a_logging_hook(tmp_path):
    """The bar's own per-batch hook is called directly (it never logs); a subclass's override goes through the hook
    runner, so its self.log calls get the hook's name and defaults."""
    class LoggingBar(TQDMProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            pl_module.log("seen_by_bar", float(batch_idx), on_epoch=True, reduce_fx="max")

    trainer = ember.Trainer(max_epochs=1, limit_train_batches=4, callbacks=[LoggingBar()], logger=False,
                            enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(BoringModel(), random_loader())
    assert trainer.callback_metrics["seen_by_bar_epoch"].item() == 3.0
