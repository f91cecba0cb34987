"""The Optuna integration: a study of short runs finishes, the pruning callback stops a trial when told to."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import ember
from conftest import BoringModel  # a Linear(32, 2) that logs val_loss

optuna = pytest.importorskip("optuna")

from ember.integrations.optuna import OptunaPruningCallback, PyTorchLightningPruningCallback, tune_main  # noqa: E402


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def _loader():
    data = torch.utils.data.TensorDataset(torch.randn(16, 32), torch.randn(16, 2))
    return torch.utils.data.DataLoader(data, batch_size=4)


def _fit(trial, monitor="val_loss", epochs=3):
    model = BoringModel()
    trainer = ember.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[OptunaPruningCallback(trial, monitor=monitor)])
    trainer.fit(model, _loader(), _loader())
    return trainer


def test_a_study_with_a_pruner_finishes():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    study.optimize(lambda trial: float(_fit(trial).callback_metrics["val_loss"]), n_trials=3)
    assert len(study.trials) == 3 and study.best_trial is not None
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert finished and all(len(t.intermediate_values) == 3 for t in finished)  # one report per validation epoch


def test_the_callback_prunes_when_the_pruner_says_so():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(pruner=_AlwaysPrune())
    study.optimize(lambda trial: float(_fit(trial).callback_metrics["val_loss"]), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert list(study.trials[0].intermediate_values) == [0]  # stopped at the first validation, not after 3 epochs


def test_a_missing_metric_is_named_with_the_logged_ones():
    study = optuna.create_study()
    with pytest.raises(RuntimeError, match=r"found no metric `val_acc`; logged metrics are: .*`val_loss`"):
        _fit(study.ask(), monitor="val_acc", epochs=1)


def test_alias_and_missing_optuna_message(monkeypatch):
    assert PyTorchLightningPruningCallback is OptunaPruningCallback
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match="pip install optuna"):
        OptunaPruningCallback(object(), "val_loss")


def test_ember_tune_runs_trials_each_with_its_logs_and_config(tmp_path, capsys):
    pytest.importorskip("jsonargparse")
    pytest.importorskip("sklearn")
    conf = tmp_path / "conf.yaml"
    conf.write_text("model:\n  class_path: ember.demo.DigitsCNN\ndata:\n  class_path: ember.demo.DigitsDataModule\n"
                    "trainer:\n  max_epochs: 1\n  limit_train_batches: 2\n  limit_val_batches: 1\n"
                    "  enable_progress_bar: false\n  enable_model_summary: false\n")
    root = tmp_path / "tune"
    assert tune_main(["--config", str(conf), "--n-trials", "2", "--root-dir", str(root),
                      "--search", "model.init_args.lr=loguniform(1e-4,1e-1)",
                      "--search", "model.init_args.hidden=choice(16,32)"]) == 0
    out = capsys.readouterr().out
    assert "best trial:" in out and "model.init_args.lr" in out
    for n in range(2):
        configs = list((root / f"trial_{n}").rglob("config.yaml"))
        assert len(configs) == 1 and "hidden:" in configs[0].read_text()


def test_ember_tune_rejects_a_bad_search_spec(tmp_path):
    with pytest.raises(ValueError, match="loguniform"):
        from ember.integrations.optuna import _suggest

        _suggest(optuna.create_study().ask(), "model.lr=gaussian(0,1)")
