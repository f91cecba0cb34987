"""LightningCLI and the `ember` command: arguments from signatures, configs that repeat a run, clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Optional

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
    for command in ("demo", "fit", "validate", "test", "predict", "tune", "plot", "run"):
        assert f"  {command} " in out
    assert main(["frobnicate"]) == 2 and "commands are: demo, fit" in capsys.readouterr().err

# `ember demo` through the console command: tests/test_demo.py::test_ember_command_runs_the_demo


# --- LightningArgumentParser: what LightningCLI subclasses in real programs do ------------------------------
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import ember  # noqa: E402
from ember.callbacks import ModelCheckpoint  # noqa: E402
from ember.cli import OptimizerCallable  # noqa: E402


class Blobs(ember.LightningDataModule):
    """Three classes of points; the model learns num_classes from here (a link applied on instantiation)."""

    def __init__(self, batch_size: int = 16):
        super().__init__()
        self.batch_size = batch_size
        self.num_classes = 3

    def _loader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(48, 4, generator=g)
        return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()


class Classifier(ember.LightningModule):
    def __init__(self, num_classes: int, hidden: int = 8, optimizer: OptimizerCallable = torch.optim.SGD):
        super().__init__()
        self.num_classes, self.optimizer = num_classes, optimizer
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, num_classes))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return self.optimizer(self.parameters(), lr=0.1)


class ProjectCLI(LightningCLI):
    """The shape of Lightning's documented examples and project templates."""

    events: list = []

    def add_arguments_to_parser(self, parser):
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val_loss", "checkpoint.save_top_k": 2})
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_optimizer_args(torch.optim.Adam)
        parser.add_lr_scheduler_args(torch.optim.lr_scheduler.StepLR)

    def before_instantiate_classes(self):
        self.events.append("before_instantiate_classes")

    def after_instantiate_classes(self):
        self.events.append("after_instantiate_classes")

    def before_fit(self):
        self.events.append(f"before_fit:{self.trainer.global_step}")

    def after_fit(self):
        self.events.append(f"after_fit:{self.trainer.global_step}")


def test_a_cli_subclass_adds_a_callback_group_links_data_to_model_and_sets_the_optimizer(tmp_path):
    ProjectCLI.events = []
    with pytest.warns(UserWarning, match="Classifier.configure_optimizers` will be overridden"):
        cli = ProjectCLI(Classifier, Blobs, args=["fit", *_tiny(tmp_path), "--checkpoint.filename=best-{epoch}",
                                                  "--optimizer.lr=0.02", "--lr_scheduler.step_size=1",
                                                  "--lr_scheduler.gamma=0.5"])
    assert ProjectCLI.events == ["before_instantiate_classes", "after_instantiate_classes", "before_fit:0",
                                 "after_fit:2"]
    assert cli.model.num_classes == 3 and cli.model.net[-1].out_features == 3  # linked from the datamodule
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor == "val_loss"]
    assert len(checkpoints) == 1 and checkpoints[0].save_top_k == 2  # the default set in add_arguments_to_parser
    assert os.path.basename(checkpoints[0].best_model_path).startswith("best-epoch=0")
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # 1 step
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "StepLR"
    saved = yaml.safe_load(open(os.path.join(cli.trainer.log_dir, "config.yaml")))
    assert saved["checkpoint"]["monitor"] == "val_loss" and saved["optimizer"]["lr"] == 0.02
    assert saved["lr_scheduler"]["step_size"] == 1 and "num_classes" not in saved["model"]  # a link target


def test_a_config_file_fills_the_groups_and_the_command_line_wins(tmp_path):
    config = tmp_path / "conf.yaml"
    config.write_text(yaml.safe_dump({"checkpoint": {"monitor": "train_loss", "mode": "min"},
                                      "optimizer": {"lr": 0.3}, "model": {"hidden": 5},
                                      "lr_scheduler": {"step_size": 4}}))
    cli = ProjectCLI(Classifier, Blobs, run=False, args=[f"--config={config}", "--optimizer.lr=0.4", *_tiny(tmp_path)])
    assert cli.config.checkpoint.monitor == "train_loss" and cli.config.optimizer.lr == 0.4
    assert cli.model.net[0].out_features == 5
    optimizer = cli.model.configure_optimizers()[0][0]  # the CLI's optimizer and scheduler replace the model's
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 0.4
    assert cli.model.configure_optimizers()[1][0].step_size == 4


def test_an_optimizer_callable_in_the_model_is_chosen_by_class_path(tmp_path):
    cli = LightningCLI(Classifier, Blobs, run=False, auto_configure_optimizers=False,
                       args=["--model.num_classes=3", "--model.optimizer=Adagrad", "--model.optimizer.lr_decay=0.1",
                             *_tiny(tmp_path)])
    optimizer = cli.model.configure_optimizers()
    assert type(optimizer) is torch.optim.Adagrad and optimizer.defaults["lr_decay"] == 0.1


def test_reduce_lr_on_plateau_from_the_command_line_monitors_its_metric(tmp_path):
    cli = LightningCLI(Classifier, Blobs, run=False,
                       args=["--model.num_classes=3", "--optimizer=SGD", "--optimizer.lr=0.1",
                             "--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val_loss", *_tiny(tmp_path)])
    configured = cli.model.configure_optimizers()
    assert configured["lr_scheduler"]["monitor"] == "val_loss"
    assert isinstance(configured["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_trainer_defaults_and_per_subcommand_default_config_files(tmp_path):
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text(yaml.safe_dump({"model": {"hidden": 6}}))
    cli = LightningCLI(Classifier, Blobs, args=["fit", "--model.num_classes=3", *_tiny(tmp_path)[1:]],
                       trainer_defaults={"max_epochs": 2}, seed_everything_default=3,
                       parser_kwargs={"fit": {"default_config_files": [str(defaults)]}})
    assert cli.trainer.max_epochs == 2 and cli.trainer.global_step == 4
    assert cli.model.net[0].out_features == 6 and cli.config.fit.seed_everything == 3


def test_add_lightning_class_args_refuses_other_classes_and_the_parser_is_jsonargparse(tmp_path):
    import jsonargparse

    from ember.cli import LightningArgumentParser

    assert issubclass(LightningArgumentParser, jsonargparse.ArgumentParser)
    parser = LightningArgumentParser()
    with pytest.raises(TypeError, match=r"expected a Trainer, LightningModule.*add_class_arguments"):
        parser.add_lightning_class_args(torch.nn.Linear, "layer")
    with pytest.raises(TypeError, match="not a subclass of Optimizer"):
        parser.add_optimizer_args(torch.nn.Linear)


def test_import_ember_cli_does_not_load_jsonargparse():
    code = ("import sys, ember.cli; from ember.cli import LightningCLI, OptimizerCallable, ReduceLROnPlateau; "
            "print('jsonargparse' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.stdout.split() == ["False"], done.stderr


def test_ember_fit_imports_the_model_from_the_current_folder(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "ember")
    if not os.path.isfile(script):
        pytest.skip("the `ember` console script is not installed beside this Python")
    (tmp_path / "mymodule.py").write_text(textwrap.dedent("""
        import torch
        import ember

        class Model(ember.LightningModule):
            def __init__(self, lr: float = 0.1):
                super().__init__()
                self.lr, self.layer = lr, torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                return self.layer(batch[0]).pow(2).mean()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=self.lr)

        class Data(ember.LightningDataModule):
            def train_dataloader(self):
                return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    """))
    env = {k: v for k, v in _env().items()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.abspath(p) != str(tmp_path))
    done = subprocess.run([script, "fit", "--model", "mymodule.Model", "--data", "mymodule.Data", *_tiny(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    saved = yaml.safe_load(open(next(tmp_path.rglob("config.yaml"))))
    assert saved["model"]["class_path"] == "mymodule.Model"


class OptimizerConfigModel(Classifier):
    """Builds its optimizer itself from the class-path dict the CLI sends (link_to)."""

    def __init__(self, num_classes: int = 3, optimizer_config: Optional[dict] = None):
        super().__init__(num_classes)
        self.optimizer_config = optimizer_config

    def configure_optimizers(self):
        from ember.cli import instantiate_class

        return instantiate_class(self.parameters(), self.optimizer_config)


def test_an_optimizer_group_linked_to_a_model_argument_arrives_as_a_class_path_dict(tmp_path):
    class LinkedCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_optimizer_args(torch.optim.RMSprop, link_to="model.optimizer_config")

    cli = LinkedCLI(OptimizerConfigModel, Blobs, run=False, args=["--optimizer.lr=0.03", *_tiny(tmp_path)])
    assert cli.model.optimizer_config["class_path"] == "torch.optim.rmsprop.RMSprop"
    assert cli.model.optimizer_config["init_args"]["lr"] == 0.03
    optimizer = cli.model.configure_optimizers()  # the model's own method stays: the group is linked, not automatic
    assert type(optimizer) is torch.optim.RMSprop and optimizer.defaults["lr"] == 0.03


# --- hyperparameters of a model the CLI built: the config in the checkpoint, rebuilt only when asked -----------
from ember._hparams import CLI_KEY  # noqa: E402


class SavesHparams(Classifier):
    """A model that records its arguments; the optimizer is chosen by class path on the command line."""

    def __init__(self, num_classes: int = 3, hidden: int = 8, optimizer: OptimizerCallable = torch.optim.SGD):
        super().__init__(num_classes, hidden, optimizer)
        self.save_hyperparameters()


class NeedsOptimizer(SavesHparams):
    def __init__(self, optimizer: OptimizerCallable, hidden: int = 8):
        super().__init__(3, hidden, optimizer)


ADAGRAD = ["--model.optimizer=Adagrad", "--model.optimizer.lr_decay=0.1", "--model.hidden=5"]


@pytest.fixture(scope="module")
def cli_checkpoint(tmp_path_factory):
    """A checkpoint written by `fit` of a model whose optimizer came from the command line by class path."""
    root = tmp_path_factory.mktemp("cli_hparams")
    cli = LightningCLI(SavesHparams, Blobs, args=["fit", *_tiny(root), *ADAGRAD])
    return cli, cli.trainer.checkpoint_callback.best_model_path


def test_a_cli_checkpoint_stores_the_config_of_objects_as_plain_data(cli_checkpoint):
    cli, path = cli_checkpoint
    stored = torch.load(path, weights_only=True)["hyper_parameters"]
    assert stored["hidden"] == 5 and stored[CLI_KEY] == ["optimizer"]
    assert stored["optimizer"]["class_path"] == "torch.optim.Adagrad"
    assert stored["optimizer"]["init_args"]["lr_decay"] == 0.1
    assert "jsonargparse" not in repr(stored)
    assert cli.model.hparams.optimizer is cli.model.optimizer  # in memory: the object the model received
    hparams_yaml = yaml.safe_load(open(os.path.join(cli.trainer.log_dir, "hparams.yaml")))
    assert "jsonargparse" not in repr(hparams_yaml) and "Adagrad" in repr(hparams_yaml["optimizer"])
    logged = ember._hparams.hparams_to_log(cli.model, cli.datamodule)  # what the loggers get: the config
    assert logged["optimizer"] == stored["optimizer"] and logged[CLI_KEY] == ["optimizer"]
    assert ember._hparams.hparams_for_yaml(logged) == {k: v for k, v in stored.items()}  # hparams.yaml: the same


def test_load_from_checkpoint_rebuilds_the_cli_optimizer_only_when_asked(cli_checkpoint, tmp_path):
    from ember.core.saving import save_hparams_to_yaml

    cli, path = cli_checkpoint
    with pytest.warns(UserWarning, match=r"'optimizer'.*torch\.optim\.Adagrad\(.*lr_decay=0\.1.*import_objects=True"):
        plain = SavesHparams.load_from_checkpoint(path)
    assert plain.hparams.optimizer is torch.optim.SGD and plain.hparams.hidden == 5  # the default, and the stored
    rebuilt = SavesHparams.load_from_checkpoint(path, import_objects=True)
    optimizer = rebuilt.configure_optimizers()
    assert type(optimizer) is torch.optim.Adagrad and optimizer.defaults["lr_decay"] == 0.1
    again = ember._hparams.hparams_for_checkpoint(rebuilt.hparams)  # saved again: the same config
    assert again == torch.load(path, weights_only=True)["hyper_parameters"]
    with pytest.raises(TypeError, match=r"needs 'optimizer'.*the command line's config torch\.optim\.Adagrad.*"
                                        r"import_objects=True"):
        NeedsOptimizer.load_from_checkpoint(path)
    assert NeedsOptimizer.load_from_checkpoint(path, optimizer=torch.optim.Adam).hparams.optimizer is torch.optim.Adam
    save_hparams_to_yaml(tmp_path / "hparams.yaml", cli.model.hparams)  # the config again, as in the checkpoint
    from_yaml = SavesHparams.load_from_checkpoint(path, hparams_file=tmp_path / "hparams.yaml", import_objects=True)
    assert type(from_yaml.configure_optimizers()) is torch.optim.Adagrad


def test_a_cli_config_naming_os_system_is_never_imported_without_the_opt_in(tmp_path, monkeypatch):
    probe = tmp_path / "probe"
    probe.mkdir()
    marker = tmp_path / "imported"
    (probe / "ember_cli_payload.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Opt: pass\n")
    monkeypatch.syspath_prepend(str(probe))
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args) or 0)
    state = SavesHparams().state_dict()
    hostile = {"optimizer": {"class_path": "os.system", "init_args": {"command": "echo pwned"}},
               "hidden": {"class_path": "ember_cli_payload.Opt"}}
    for marks in ({CLI_KEY: ["optimizer", "hidden"]}, {"_instantiator": "lightning.pytorch.cli.instantiate_module"}):
        path = tmp_path / "hostile.ckpt"
        torch.save({"state_dict": state, "hyper_parameters": {**hostile, **marks}}, path)
        with pytest.warns(UserWarning, match="import_objects=True"):
            loaded = SavesHparams.load_from_checkpoint(path)
        assert loaded.hparams.optimizer is torch.optim.SGD and loaded.hparams.hidden == 8  # the defaults
        with pytest.warns(UserWarning, match=r"\['optimizer', 'hidden'\].*not read from the checkpoint"):
            LightningCLI(SavesHparams, Blobs, args=["validate", *_tiny(tmp_path / "v"), f"--ckpt_path={path}"])
        assert calls == [] and not marker.exists() and "ember_cli_payload" not in sys.modules


def test_ckpt_path_reads_the_models_hyperparameters_and_the_command_line_wins(cli_checkpoint, tmp_path):
    _, path = cli_checkpoint
    with pytest.warns(UserWarning, match=r"\['optimizer'\].*not read from the checkpoint"):
        cli = LightningCLI(SavesHparams, Blobs, args=["validate", *_tiny(tmp_path / "a"), f"--ckpt_path={path}"])
    assert cli.model.hparams.hidden == 5 and cli.model.net[0].out_features == 5  # read back: the weights fit

    class BuildOnly(LightningCLI):
        def fit(self, **kwargs):  # a subclass may replace the run: here only the objects are built
            pass

    with pytest.warns(UserWarning, match="not read from the checkpoint"):
        cli = BuildOnly(SavesHparams, Blobs, args=["fit", f"--ckpt_path={path}", "--model.hidden=7",
                                                   *_tiny(tmp_path / "b")])
    assert cli.model.hparams.hidden == 7
    for extra, hidden in (([], 5), (["--model.hidden=9"], 9)):  # class paths, as `ember fit --model ...`
        with pytest.warns(UserWarning, match="not read from the checkpoint"):
            cli = BuildOnly(subclass_mode_model=True, args=[
                "fit", f"--model={__name__}.SavesHparams", f"--data={__name__}.Blobs", f"--ckpt_path={path}",
                *extra, *_tiny(tmp_path / "c")])
        assert cli.model.hparams.hidden == hidden


def test_without_load_from_checkpoint_support_the_object_is_described(tmp_path):
    cli = LightningCLI(SavesHparams, Blobs, run=False, load_from_checkpoint_support=False,
                       args=[*ADAGRAD, *_tiny(tmp_path)])
    stored = ember._hparams.hparams_for_checkpoint(cli.model.hparams)
    assert CLI_KEY not in stored  # jsonargparse's callable, described as what it calls
    assert stored["optimizer"]["_ember_object_"] == "partial"
    assert stored["optimizer"]["target"] == "torch.optim.adagrad.Adagrad"
    assert stored["optimizer"]["kwargs"]["lr_decay"] == 0.1


class WithNet(ember.LightningModule):
    """A network chosen by class path: stored as its config, so the checkpoint can build the model again."""

    def __init__(self, net: torch.nn.Module, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = net


def test_a_network_given_by_class_path_is_stored_as_its_config_and_built_again_when_asked(tmp_path, recwarn):
    cli = LightningCLI(WithNet, run=False, auto_configure_optimizers=False,
                       args=["--model.net=torch.nn.Linear", "--model.net.in_features=4", "--model.net.out_features=3",
                             *_tiny(tmp_path)])
    assert not [w for w in recwarn if "is an instance of `nn.Module`" in str(w.message)]  # it is stored: no advice
    stored = ember._hparams.hparams_for_checkpoint(cli.model.hparams)
    assert stored["net"] == {"class_path": "torch.nn.Linear",
                             "init_args": {"in_features": 4, "out_features": 3, "bias": True, "device": None,
                                           "dtype": None}}
    path = tmp_path / "net.ckpt"
    torch.save({"state_dict": cli.model.state_dict(), "hyper_parameters": stored}, path)
    with pytest.raises(TypeError, match=r"needs 'net'.*torch\.nn\.Linear\(.*import_objects=True"):
        WithNet.load_from_checkpoint(path)
    loaded = WithNet.load_from_checkpoint(path, import_objects=True)
    assert isinstance(loaded.net, torch.nn.Linear) and torch.equal(loaded.net.weight, cli.model.net.weight)
