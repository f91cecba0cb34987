"""CSVLogger: the files it writes, read back with the csv and yaml modules users read them with."""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys

import pytest
import torch
import yaml

import ember
from ember.loggers import CSVLogger, Logger


def read_rows(logger: CSVLogger) -> tuple[list[str], list[dict]]:
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_rows_and_header_rewrite_when_a_new_key_appears(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"loss": 0.5, "epoch": 0}, step=0)
    logger.log_metrics({"loss": 0.25, "val_acc": 0.75, "epoch": 0}, step=1)
    header, rows = read_rows(logger)
    assert header == ["epoch", "loss", "step", "val_acc"]
    assert rows == [
        {"epoch": "0", "loss": "0.5", "step": "0", "val_acc": ""},
        {"epoch": "0", "loss": "0.25", "step": "1", "val_acc": "0.75"},
    ]
    assert sorted(os.listdir(logger.log_dir)) == ["hparams.yaml", "metrics.csv"]  # no temporary file left behind


def test_known_keys_append_without_rewriting(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1.0, "b": 2.0}, step=0)
    path = os.path.join(logger.log_dir, "metrics.csv")
    inode = os.stat(path).st_ino
    logger.log_metrics({"a": 3.0}, step=1)
    assert os.stat(path).st_ino == inode  # appended in place, not replaced
    logger.log_metrics({"c": 4.0}, step=2)
    assert os.stat(path).st_ino != inode  # a new column: rewritten through a temporary file
    header, rows = read_rows(logger)
    assert header == ["a", "b", "c", "step"]
    assert [r["a"] for r in rows] == ["1.0", "3.0", ""]


def test_rows_are_buffered_until_flush_or_save(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=3)
    path = os.path.join(logger.log_dir, "metrics.csv")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.log_metrics({"x": 2.0}, step=1)
    assert not os.path.exists(path)
    logger.log_metrics({"x": 3.0}, step=2)
    assert len(read_rows(logger)[1]) == 3
    logger.log_metrics({"x": 4.0}, step=3)
    logger.finalize("success")
    assert [r["x"] for r in read_rows(logger)[1]] == ["1.0", "2.0", "3.0", "4.0"]


def test_step_defaults_to_row_count_and_tensors_become_numbers(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"loss": torch.tensor(0.5)})
    logger.log_metrics({"loss": torch.tensor(2)})
    logger.save()
    assert read_rows(logger)[1] == [{"loss": "0.5", "step": "0"}, {"loss": "2", "step": "1"}]


def test_prefix_is_joined_with_a_dash(tmp_path):
    logger = CSVLogger(tmp_path, prefix="fold1")
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    assert read_rows(logger)[0] == ["fold1-loss", "step"]


def test_version_is_the_next_free_integer_and_then_fixed(tmp_path):
    root = tmp_path / "lightning_logs"
    for name in ("version_0", "version_3", "version_x"):
        (root / name).mkdir(parents=True)
    (root / "version_9").write_text("a file, not a version folder")
    logger = CSVLogger(tmp_path)
    assert logger.version == 4
    assert logger.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_4")
    logger.save()
    assert os.path.isdir(logger.log_dir)
    assert logger.version == 4  # fixed once chosen, although version_4 exists now
    assert CSVLogger(tmp_path).version == 5
    assert CSVLogger(tmp_path / "empty").version == 0


def test_named_version_and_name_are_folders(tmp_path):
    logger = CSVLogger(tmp_path, name="exp", version="baseline")
    assert (logger.name, logger.version, logger.save_dir) == ("exp", "baseline", str(tmp_path))
    assert logger.root_dir == os.path.join(str(tmp_path), "exp")
    assert logger.log_dir == os.path.join(str(tmp_path), "exp", "baseline")
    assert CSVLogger(tmp_path, name="", version=2).log_dir == os.path.join(str(tmp_path), "version_2")


def test_a_fixed_version_continues_its_metrics_file(tmp_path):
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"loss": 1.0}, step=0)
    first.finalize("success")
    resumed = CSVLogger(tmp_path, version=0)
    resumed.log_metrics({"loss": 0.5}, step=1)
    resumed.log_metrics({"loss": 0.25, "lr": 0.1}, step=2)
    resumed.save()
    header, rows = read_rows(resumed)
    assert header == ["loss", "lr", "step"]
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == [("0", "1.0", ""), ("1", "0.5", ""), ("2", "0.25", "0.1")]


def test_hparams_yaml_holds_plain_data(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams(argparse.Namespace(lr=0.1, sizes=(4, 8), weight=torch.tensor([1.0, 2.0])))
    logger.log_hyperparams({"optim": {"name": "adam", "beta": torch.tensor(0.5)}, "device": torch.device("cpu")})
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as f:
        hparams = yaml.safe_load(f)
    assert hparams == {"lr": 0.1, "sizes": [4, 8], "weight": [1.0, 2.0], "optim": {"name": "adam", "beta": 0.5},
                       "device": "cpu"}


def test_finalize_of_an_unused_logger_creates_no_folders(tmp_path):
    CSVLogger(tmp_path).finalize("success")
    assert os.listdir(tmp_path) == []


def test_flush_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="flush_logs_every_n_steps=0"):
        CSVLogger(tmp_path, flush_logs_every_n_steps=0)


def test_logger_base_defaults():
    class Memory(Logger):
        name, version = "memory", 1

        def __init__(self):
            self.saved = 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def save(self):
            self.saved += 1

    logger = Memory()
    assert (logger.save_dir, logger.root_dir, logger.log_dir, logger.experiment) == (None, None, None, None)
    logger.log_graph(torch.nn.Linear(1, 1))
    logger.after_save_checkpoint(None)
    logger.finalize("success")
    assert logger.saved == 1
    with pytest.raises(TypeError):
        Logger()  # abstract


def test_loggers_that_are_not_there_yet_import_and_say_so_when_built():
    from ember.loggers import CometLogger, NeptuneLogger  # noqa: F401  (a program's import line keeps working)

    with pytest.raises(NotImplementedError, match=r"CometLogger` is not in ember: .*use CSVLogger"):
        CometLogger(project="p")
    with pytest.raises(AttributeError):
        ember.loggers.NoSuchLogger


def test_importing_ember_loads_no_yaml():
    code = "import sys, ember; assert 'yaml' not in sys.modules, 'yaml was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
