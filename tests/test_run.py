"""``ember run``: an unmodified Lightning program runs on ember; Lightning names ember lacks are named clearly."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import pytest

from ember._lightning_alias import ember_name
from ember.cli import main

# A Lightning program as users write it: three import styles, a callback from a Lightning path, argv, __main__.
SCRIPT = textwrap.dedent('''
    import argparse
    import sys

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import lightning as L
    import pytorch_lightning as pl
    from lightning.pytorch.callbacks import ModelCheckpoint


    class Regressor(pl.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--max_epochs", type=int, default=1)
        parser.add_argument("--exit_code", type=int, default=0)
        args = parser.parse_args()
        print("argv:", sys.argv[1:])
        print("trainer:", pl.Trainer.__module__, L.Trainer is pl.Trainer, L.LightningModule is pl.LightningModule)
        L.seed_everything(0)
        x = torch.randn(32, 3)
        data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
        checkpoint = ModelCheckpoint(dirpath="checkpoints", monitor="train_loss_epoch")
        trainer = L.Trainer(max_epochs=args.max_epochs, callbacks=[checkpoint], logger=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Regressor(), data)
        print(f"train_loss_epoch={float(trainer.callback_metrics['train_loss_epoch']):.4f}")
        print("best:", checkpoint.best_model_path)
        sys.exit(args.exit_code)
''')


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _run(command: list, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_env(), timeout=120)


def _ember_command() -> list:
    script = os.path.join(os.path.dirname(sys.executable), "ember")
    if not os.path.isfile(script):
        pytest.skip("the `ember` console script is not installed beside this Python (pip install -e .)")
    return [script]


def _assert_trained(done: subprocess.CompletedProcess, argv: list, epochs: int, tmp_path) -> float:
    out = done.stdout
    assert f"argv: {argv}" in out, done.stderr
    assert "trainer: ember.trainer.trainer True True" in out  # ember's Trainer, even though Lightning is installed
    loss = float(out.split("train_loss_epoch=")[1].split()[0])
    best = out.split("best: ")[1].split()[0]
    assert os.path.isfile(os.path.join(tmp_path, best)) and f"epoch={epochs - 1}" in best
    return loss


def test_ember_run_trains_an_unmodified_lightning_script(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    done = _run([*_ember_command(), "run", "train.py", "--max_epochs", "2"], tmp_path)
    assert done.returncode == 0, done.stderr
    loss = _assert_trained(done, ["--max_epochs", "2"], 2, tmp_path)
    assert 0 < loss < 10


def test_python_m_ember_run_passes_argv_and_the_exit_code(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    done = _run([sys.executable, "-m", "ember", "run", "train.py", "--exit_code", "3"], tmp_path)
    assert done.returncode == 3, done.stderr
    _assert_trained(done, ["--exit_code", "3"], 1, tmp_path)


MISSING = textwrap.dedent('''
    import pytorch_lightning as pl
    import lightning.pytorch.callbacks

    for attempt in ("from pytorch_lightning.callbacks import NotALightningName",
                    "import pytorch_lightning.not_a_module",
                    "from lightning.fabric import NotAFabricName",
                    "pl.NotALightningName"):
        try:
            exec(attempt)
        except (ImportError, AttributeError) as e:
            print(type(e).__name__, "|", e)
    from lightning.pytorch.utilities import NotInEmber  # not caught: the run fails with the message
''')


def test_a_lightning_name_ember_lacks_is_named_with_where_to_look(tmp_path):
    (tmp_path / "missing.py").write_text(MISSING)
    done = _run([sys.executable, "-m", "ember", "run", "missing.py"], tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout + done.stderr
    expected = [("LightningNameError", "`pytorch_lightning.callbacks.NotALightningName`", "ember.callbacks"),
                ("LightningNameError", "`pytorch_lightning.not_a_module`", "ember.not_a_module"),
                ("LightningNameError", "`lightning.fabric.NotAFabricName`", "ember.fabric.NotAFabricName"),
                ("AttributeError", "`pytorch_lightning.NotALightningName`", "ember.NotALightningName")]
    for line, (kind, name, found) in zip(lines, expected):
        assert line.startswith(kind) and name in line and found in line and "docs/migration.md" in line, line
    assert "`lightning.pytorch.utilities.NotInEmber` is a Lightning name that ember does not have" in done.stderr


def test_ember_run_m_runs_a_module_from_the_current_folder(tmp_path):
    package = tmp_path / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(textwrap.dedent('''
        import sys
        from pytorch_lightning.callbacks import EarlyStopping
        from ember._lightning_alias import relaunch_command
        if __name__ == "__main__":
            print(__name__, sys.argv[0].endswith("train.py"), sys.argv[1:], EarlyStopping.__module__)
            print(relaunch_command()[1:])  # how DDP's other ranks would start this program again
    '''))
    done = _run([sys.executable, "-m", "ember", "run", "-m", "proj.train", "--flag", "x"], tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.split() == ["__main__", "True", "['--flag',", "'x']", "ember.callbacks.early_stopping"]
    assert second == str(["-m", "ember", "run", "-m", "proj.train", "--flag", "x"])


def test_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2 and "usage: ember run train.py" in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    assert main(["run", "nope.py"]) == 2 and "no script 'nope.py'" in capsys.readouterr().err
    assert main(["run", "--fast", "train.py"]) == 2 and "unknown option '--fast'" in capsys.readouterr().err


def test_the_hook_refuses_to_start_after_lightning_was_imported(monkeypatch):
    from ember import _lightning_alias

    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    with pytest.raises(RuntimeError, match=r"Lightning is already imported in this process \(.*pytorch_lightning.*"
                                           r"ember run train.py"):
        _lightning_alias.install()
    assert not _lightning_alias.installed()


def test_lightning_module_names_map_to_ember_modules():
    assert ember_name("pytorch_lightning") == ember_name("lightning.pytorch") == ember_name("lightning") == "ember"
    assert ember_name("pytorch_lightning.callbacks.model_checkpoint") == "ember.callbacks.model_checkpoint"
    assert ember_name("lightning.pytorch.utilities.rank_zero") == "ember.utilities.rank_zero"
    # Fabric's parts shared with the Trainer are the same ember packages; its own parts are ember.fabric's
    assert ember_name("lightning.fabric.utilities.seed") == ember_name("lightning_fabric.utilities.seed") \
        == "ember.utilities.seed"
    assert ember_name("lightning.fabric.strategies") == "ember.strategies"
    assert ember_name("lightning.fabric.loggers") == ember_name("lightning_fabric.loggers") == "ember.fabric.loggers"
    assert ember_name("lightning_utilities") is None and ember_name("pytorch_lightning_bolts") is None
    assert ember_name("lightning.app") is None  # refused by the hook with a clear error, not mapped
