"""LightningCLI and the `ember` command: arguments from signatures, configs that repeat a run, clear errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("jsonargparse")
pytest.importorskip("sklearn")
yaml = pytest.importorskip("yaml")

from ember.cli import LightningCLI, SaveConfigCallback  # noqa: E402
from ember.demo import DigitsCNN, DigitsDataModule  # noqa: E402


def _tiny(root) -> list:
    return ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def test_fit_builds_objects_from_signatures_and_saves_the_config(tmp_path):
    cli = LightningCLI(DigitsCNN, DigitsDataModule,
                       args=["fit", *_tiny(tmp_path), "--model.lr=0.01", "--data.batch_size=32", "--seed_everything=7"])
    assert isinstance(cli.model, DigitsCNN) and cli.model.hparams.lr == 0.01
    assert isinstance(cli.datamodule, DigitsDataModule) and cli.datamodule.hparams.batch_size == 32
    assert cli.trainer.max_epochs == 1 and cli.trainer.global_step == 2
    assert cli.config.fit.seed_everything == 7
    saved = yaml.safe_load(open(os.path.join(cli.trainer.log_dir, "config.yaml")))
    assert saved["model"]["lr"] == 0.01 and saved["data"]["batch_size"] == 32 and saved["seed_everything"] == 7


def test_saved_config_repeats_the_run(tmp_path):
    first = LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", *_tiny(tmp_path / "a"), "--model.hidden=16"])
    saved = os.path.join(first.trainer.log_dir, "config.yaml")
    seed = yaml.safe_load(open(saved))["seed_everything"]
    assert isinstance(seed, int)  # the drawn seed is recorded, so the config repeats the run
    again = LightningCLI(DigitsCNN, DigitsDataModule,
                         args=["fit", f"--config={saved}", f"--trainer.default_root_dir={tmp_path / 'b'}"])
    assert dict(again.model.hparams) == dict(first.model.hparams) == {"lr": 2e-3, "hidden": 16, "dropout": 0.1}
    assert again.config.fit.seed_everything == seed
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert (a == b).all()  # same seed, same data order, same steps: the same weights


def test_save_config_refuses_to_overwrite(tmp_path):
    args = ["fit", *_tiny(tmp_path), "--trainer.logger=false", "--trainer.enable_checkpointing=false"]  # no versioned folder: both runs share the dir
    LightningCLI(DigitsCNN, DigitsDataModule, args=args)
    with pytest.raises(RuntimeError, match="will not overwrite.*overwrite': True"):
        LightningCLI(DigitsCNN, DigitsDataModule, args=args)
    LightningCLI(DigitsCNN, DigitsDataModule, args=args, save_config_kwargs={"overwrite": True})
    LightningCLI(DigitsCNN, DigitsDataModule, args=args, save_config_callback=None)


def test_print_config_is_yaml_with_every_group(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", *_tiny(tmp_path), "--print_config"])
    assert exit_.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["lr"] == 2e-3 and config["data"]["batch_size"] == 64
    assert config["trainer"]["max_epochs"] == 1 and "ckpt_path" in config
    assert not list(tmp_path.rglob("*.ckpt"))  # printing runs nothing


def test_run_false_only_instantiates(tmp_path):
    cli = LightningCLI(DigitsCNN, DigitsDataModule, run=False, args=_tiny(tmp_path) + ["--model.dropout=0.3"])
    assert cli.model.hparams.dropout == 0.3 and cli.trainer.global_step == 0 and cli.subcommand is None
    assert cli.config.model.dropout == 0.3


def test_validate_with_checkpoint_and_optimizer_from_the_command_line(tmp_path):
    fit = LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", *_tiny(tmp_path), "--optimizer=SGD",
                                                           "--optimizer.lr=0.05"])
    assert type(fit.trainer.optimizers[0]).__name__ == "SGD" and fit.trainer.optimizers[0].param_groups[0]["lr"] == 0.05
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    cli = LightningCLI(DigitsCNN, DigitsDataModule, args=["validate", *_tiny(tmp_path / "v"), f"--ckpt_path={ckpt}"])
    assert "val_acc" in cli.trainer.callback_metrics


def test_unknown_arguments_and_bad_types_are_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", "--model.not_an_arg=1"])
    assert exit_.value.code != 0 and "not_an_arg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", "--model.hidden=many"])
    assert "hidden" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        LightningCLI(DigitsCNN, DigitsDataModule, args=["train"])  # not a subcommand


def test_save_config_callback_is_an_ember_callback():
    import ember

    assert issubclass(SaveConfigCallback, ember.Callback)


def test_import_ember_stays_light():
    code = "import sys, ember; print('jsonargparse' in sys.modules, 'optuna' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_ember_fit_command_with_class_paths(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ember.cli", "fit", "--model", "ember.demo.DigitsCNN",
                           "--data", "ember.demo.DigitsDataModule", "--model.lr", "0.02", *_tiny(tmp_path)],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    saved = yaml.safe_load(open(next(tmp_path.rglob("config.yaml"))))
    assert saved["model"] == {"class_path": "ember.demo.DigitsCNN",
                              "init_args": {"lr": 0.02, "hidden": 64, "dropout": 0.1}}
    assert list(tmp_path.rglob("*.ckpt"))


def test_ember_help_lists_the_commands_and_rejects_unknown_ones(capsys):
    from ember.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "fit", "validate", "test", "predict", "tune"):
        assert f"  {command} " in out
    assert main(["frobnicate"]) == 2 and "commands are: demo, fit" in capsys.readouterr().err

# `ember demo` through the console command: tests/test_demo.py::test_ember_command_runs_the_demo
