"""`ember demo`, the first command a new user runs: it trains, checkpoints the best model, tests it."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")

from ember import demo  # noqa: E402


def test_demo_reaches_the_promised_accuracy(tmp_path, capsys):
    results = demo.run(max_epochs=12, root_dir=str(tmp_path), enable_progress_bar=False)
    assert results["test_acc"] >= 0.95
    out = capsys.readouterr().out
    assert f"test_acc={results['test_acc']:.4f}" in out.splitlines()[-1]
    # the best checkpoint exists, loads safely, and the CSV logger wrote its files
    checkpoints = list(tmp_path.rglob("digits-*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["hyper_parameters"] == {"lr": 2e-3, "hidden": 64, "dropout": 0.1}
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    assert any(row.get("val_acc") for row in rows) and any(row.get("train_loss") for row in rows)
    assert next(tmp_path.rglob("hparams.yaml")).is_file()


def test_ember_command_runs_the_demo(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "ember.cli", "demo", "--max-epochs", "1", "--no-progress-bar",
                           "--root-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test_acc=" in done.stdout.splitlines()[-1]


def test_ember_command_rejects_unknown_commands():
    done = subprocess.run([sys.executable, "-m", "ember.cli", "dmeo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown command 'dmeo'" in done.stderr and "demo" in done.stderr
