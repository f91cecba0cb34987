"""``ember.plot``: the curves of a real run (its metrics.csv or its TensorBoard event files), drawn to a PNG."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.loggers import CSVLogger
from ember.plot import main, metric_family, plot_metrics, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Classifier(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True)
        self.log("train_acc", (self.net(x).argmax(1) == y).float().mean())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def metrics_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    ember.seed_everything(0)
    x = torch.randn(64, 4)
    data = TensorDataset(x, x[:, :3].argmax(1))
    logger = CSVLogger(save_dir=str(root))
    trainer = ember.Trainer(max_epochs=3, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, log_every_n_steps=1, default_root_dir=str(root))
    trainer.fit(_Classifier(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    path = os.path.join(logger.log_dir, "metrics.csv")
    assert os.path.isfile(path)
    return path


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_plot_metrics_draws_a_real_run_next_to_its_csv(metrics_csv):
    pytest.importorskip("matplotlib")
    out = plot_metrics(metrics_csv)
    assert out == os.path.join(os.path.dirname(metrics_csv), "metrics.png")
    _assert_png(out)


def test_metrics_of_one_kind_share_a_subplot(metrics_csv):
    columns = next(csv.reader(open(metrics_csv)))
    series = read_metrics(metrics_csv)
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "val_acc", "train_acc"} <= set(series)
    assert "step" not in series and "epoch" not in series and "step" in columns
    assert len(series["val_loss"][0]) == 3  # one validation value per epoch, drawn at its step
    families = {metric_family(name) for name in series}
    assert families == {"loss", "acc"}
    assert metric_family("lr-SGD") == "lr-SGD" and metric_family("train/loss") == "loss"


def test_keys_select_columns_and_an_unknown_key_names_the_choices(metrics_csv, tmp_path):
    pytest.importorskip("matplotlib")
    _assert_png(plot_metrics(metrics_csv, tmp_path / "only.png", keys=["val_loss"]))
    with pytest.raises(ValueError, match=r"no values for \['val_los'\].*val_loss"):
        plot_metrics(metrics_csv, tmp_path / "x.png", keys=["val_los"])


def test_a_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="Pass a run folder such as lightning_logs/version_0"):
        plot_metrics(tmp_path / "nope.csv")


def test_a_run_folder_is_read_through_its_metrics_csv(metrics_csv, tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = os.path.dirname(metrics_csv)
    assert read_metrics(run_dir) == read_metrics(metrics_csv)
    out = tmp_path / "folder.png"
    assert main([run_dir, "-o", str(out)]) == 0
    _assert_png(out)


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """A default run with TensorBoard installed: event files, no metrics.csv (the case the docs once missed)."""
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("tb_run")
    ember.seed_everything(0)
    x = torch.randn(64, 4)
    data = TensorDataset(x, x[:, :3].argmax(1))
    trainer = ember.Trainer(max_epochs=3, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, log_every_n_steps=1, default_root_dir=str(root))
    trainer.fit(_Classifier(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    run_dir = trainer.log_dir
    assert not os.path.exists(os.path.join(run_dir, "metrics.csv"))
    assert any(name.startswith("events.out.tfevents.") for name in os.listdir(run_dir))
    return run_dir


def test_a_tensorboard_run_folder_is_plotted(tensorboard_run):
    pytest.importorskip("matplotlib")
    series = read_metrics(tensorboard_run)
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "val_acc", "train_acc"} <= set(series)
    assert "epoch" not in series and "hp_metric" not in series  # the placeholder -1 is not a measurement
    assert len(series["val_loss"][0]) == 3 and len(series["train_loss_step"][0]) == 12  # 3 epochs of 4 steps
    assert series["train_loss_step"][0] == sorted(series["train_loss_step"][0])
    out = plot_metrics(tensorboard_run)
    assert out == os.path.join(tensorboard_run, "metrics.png")
    _assert_png(out)
    event_file = next(n for n in os.listdir(tensorboard_run) if n.startswith("events.out.tfevents."))
    assert read_metrics(os.path.join(tensorboard_run, event_file)) == series  # one event file: its folder


def test_a_folder_without_metrics_names_the_runs_inside_it(tensorboard_run, tmp_path, capsys):
    logs = os.path.dirname(tensorboard_run)  # lightning_logs: the parent of the run folders
    with pytest.raises(FileNotFoundError, match=r"no metrics.csv \(CSVLogger\) and no TensorBoard event files.*"
                                                r"run folders inside it: version_0"):
        read_metrics(logs)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path)])
    assert info.value.code == 1 and "it holds: nothing" in capsys.readouterr().err


def test_without_tensorboard_reading_event_files_names_the_install(tensorboard_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    with pytest.raises(ImportError, match="pip install tensorboard.*CSVLogger"):
        read_metrics(tensorboard_run)


def test_main_writes_the_png_named_by_o(metrics_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sub" / "curves.png"
    assert main([metrics_csv, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _assert_png(out)


def test_main_reports_errors_with_exit_code_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing.csv")])
    assert info.value.code == 1
    assert "ember plot: error: plot_metrics: no file or folder" in capsys.readouterr().err


def test_plot_module_runs_as_a_script(metrics_csv, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "script.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "ember.plot", metrics_csv, "-o", str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    _assert_png(out)


def test_without_matplotlib_the_error_names_the_install(metrics_csv, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install matplotlib.*ember\[plot\]"):
        plot_metrics(metrics_csv, tmp_path / "x.png")
    with pytest.raises(SystemExit) as info:
        main([metrics_csv, "-o", str(tmp_path / "x.png")])
    assert info.value.code == 1
