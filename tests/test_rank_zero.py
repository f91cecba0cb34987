"""Rank-zero behaviour under several processes: loggers, progress bars, summaries and checkpoint callbacks.

Most tests run a fit as rank 1 of 2 (or rank 0 of 2) through a fake strategy whose collectives are recorded
and answered locally; one test runs a real 2-process DDP fit (gloo, CPU).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch

import ember
from ember.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from ember.callbacks.model_summary import ModelSummary
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.callbacks.progress import TQDMProgressBar
from ember.loggers import CSVLogger, TensorBoardLogger
from ember.loggers.logger import DummyExperiment, Logger, rank_zero_experiment, rank_zero_only
from ember.strategies.strategy import Strategy
from ember.utilities.rank_zero import rank_zero_only as utilities_rank_zero_only
from ember.utilities.rank_zero import rank_zero_warn

from conftest import BoringModel, random_loader


# --- a fake strategy: this process is one rank of two ------------------------------------------------------
class _Vote:
    """The Trainer's stop vote, answered by this rank alone."""

    def now(self, wish: list) -> list:
        return list(wish)

    def step(self, wish, trainer) -> list:
        return list(wish(trainer))

    def drain(self) -> None:
        pass


class FakeRanks(Strategy):
    """Rank ``rank`` of 2. Collectives are recorded in ``calls``; ``answers`` may replace their local result,
    as the other rank's vote or rank 0's broadcast would."""

    strategy_name = "fake"
    world_size = 2

    def __init__(self, rank: int, broadcast=None, any_rank_stops: bool = False, all_agree: bool = True) -> None:
        super().__init__(torch.device("cpu"))
        self.global_rank = self.local_rank = rank
        self.calls: list = []
        self.stop_vote = _Vote()
        self._broadcast = broadcast
        self._any_rank_stops = any_rank_stops
        self._all_agree = all_agree

    def setup_environment(self) -> None:
        rank_zero_only.rank = self.global_rank  # as DDPStrategy does when it joins the group

    def barrier(self, name=None) -> None:
        self.calls.append(("barrier", name))

    def broadcast(self, obj, src=0):
        self.calls.append(("broadcast", obj))
        return self._broadcast(obj) if self._broadcast is not None else obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls.append(("reduce_boolean_decision", decision, all))
        return (decision and self._all_agree) if all else (decision or self._any_rank_stops)

    def names(self) -> list:
        return [call[0] for call in self.calls]


@pytest.fixture
def restore_rank(monkeypatch):
    """Whatever a test sets ``rank_zero_only.rank`` to, it is 0 again afterwards."""
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)


class RecordingLogger(Logger):
    """A user's logger written as Lightning documents it: ``@rank_zero_only`` methods and experiment."""

    def __init__(self) -> None:
        self.calls: list = []

    name = property(lambda self: "recording")
    version = property(lambda self: 0)

    @property
    @rank_zero_experiment
    def experiment(self):
        self.calls.append("experiment")
        return self

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append("log_metrics")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self.calls.append("log_hyperparams")

    def after_save_checkpoint(self, checkpoint_callback) -> None:  # undecorated: the Trainer calls it on rank 0
        self.calls.append("after_save_checkpoint")


class ImageModel(BoringModel):
    """Calls the TensorBoard writer directly, as users do: it must run on every rank."""

    def training_step(self, batch, batch_idx):
        self.loggers[1].experiment.add_scalar("custom", 1.0, self.global_step)
        self.loggers[1].experiment.add_histogram("weights", self.layer.weight, self.global_step)
        return super().training_step(batch, batch_idx)


def _files(root) -> list:
    return sorted(os.path.relpath(p, root) for p in map(str, root.rglob("*")))


def _fit(tmp_path, strategy, callbacks, loggers, model=None, **kwargs):
    kwargs.setdefault("max_epochs", 2)
    trainer = ember.Trainer(accelerator="cpu", default_root_dir=str(tmp_path), logger=loggers,
                            callbacks=callbacks, log_every_n_steps=1, **kwargs)
    trainer.strategy = strategy
    trainer.fit(model or BoringModel(), random_loader(32), random_loader(16))
    return trainer


# --- rank 1 writes nothing ---------------------------------------------------------------------------------
def test_rank_one_writes_no_file_prints_nothing_and_calls_no_logger(tmp_path, restore_rank, capsys):
    strategy = FakeRanks(rank=1)
    recording = RecordingLogger()
    loggers = [CSVLogger(str(tmp_path)), TensorBoardLogger(str(tmp_path), log_graph=True), recording]
    ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True)
    early = EarlyStopping("val_loss", patience=5, verbose=True, log_rank_zero_only=True)
    callbacks = [ckpt, early, LearningRateMonitor(), TQDMProgressBar(), ModelSummary(max_depth=2)]
    model = ImageModel()
    model.example_input_array = torch.randn(2, 32)
    trainer = _fit(tmp_path, strategy, callbacks, loggers, model=model)

    assert _files(tmp_path) == []  # no log folder, no event file, no metrics.csv, no checkpoint
    assert capsys.readouterr().out == ""  # no progress bar, no model summary, no verbose message
    assert recording.calls == []
    assert isinstance(loggers[1].experiment, DummyExperiment)
    assert loggers[0]._experiment is None and loggers[1]._experiment is None
    # the checkpoint state is kept as on rank 0, which wrote the files
    assert len(ckpt.best_k_models) == 2 and ckpt.best_model_path in ckpt.best_k_models
    assert ckpt.last_model_path == os.path.join(ckpt.dirpath, "last.ckpt")
    assert ckpt.dirpath == os.path.join(str(tmp_path), "lightning_logs", "version_0", "checkpoints")
    assert trainer.current_epoch == 2
    # each save point's decision was agreed with the other rank; so was each early-stopping check
    decisions = [c for c in strategy.calls if c[0] == "reduce_boolean_decision"]
    assert [c[2] for c in decisions] == [False, True, False, True]  # EarlyStopping runs first, as in Lightning


def test_rank_zero_writes_each_file_once_and_notifies_its_loggers(tmp_path, restore_rank):
    strategy = FakeRanks(rank=0)
    recording = RecordingLogger()
    loggers = [CSVLogger(str(tmp_path)), TensorBoardLogger(str(tmp_path)), recording]
    ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=2, filename="{epoch}")
    _fit(tmp_path, strategy, [ckpt], loggers, enable_progress_bar=False, enable_model_summary=False)
    files = _files(tmp_path / "lightning_logs")
    # as in Lightning, two loggers in one folder take a version each; checkpoints go to the first one's
    assert len([f for f in files if "tfevents" in f]) == 1
    assert sorted(f for f in files if "tfevents" not in f) == [
        "version_0", "version_0/checkpoints", "version_0/checkpoints/epoch=0.ckpt",
        "version_0/checkpoints/epoch=1.ckpt", "version_0/hparams.yaml", "version_0/metrics.csv",
        "version_1", "version_1/hparams.yaml"]
    assert recording.calls.count("after_save_checkpoint") == 2
    assert "log_metrics" in recording.calls and "log_hyperparams" in recording.calls


def test_progress_bar_and_summary_are_quiet_on_rank_one_with_rich(tmp_path, restore_rank):
    pytest.importorskip("rich")
    from ember.callbacks.rich_model_summary import RichModelSummary
    from ember.callbacks.rich_progress import RichProgressBar

    bar = RichProgressBar(console_kwargs={"record": True, "force_terminal": False})
    summary = RichModelSummary(console_kwargs={"record": True})
    _fit(tmp_path, FakeRanks(rank=1), [bar, summary], False, enable_checkpointing=False, max_epochs=1)
    assert bar.is_disabled and bar.progress is None and bar._console is None
    assert summary.console is None


# --- the decisions every rank shares ---------------------------------------------------------------------
def test_checkpoint_dirpath_is_rank_zeros(tmp_path, restore_rank):
    rank0_dir = str(tmp_path / "rank0" / "checkpoints")
    strategy = FakeRanks(rank=1, broadcast=lambda obj: rank0_dir if obj == str(tmp_path / "checkpoints") else obj)
    ckpt = ModelCheckpoint(save_top_k=-1)
    _fit(tmp_path, strategy, [ckpt], False, enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    assert ("broadcast", str(tmp_path / "checkpoints")) in strategy.calls
    assert ckpt.dirpath == rank0_dir and ckpt.best_model_path == os.path.join(rank0_dir, "epoch=0-step=4.ckpt")
    assert _files(tmp_path) == []


def test_checkpoint_saves_only_when_every_rank_agrees(tmp_path, restore_rank):
    """Rank 0's value is in the top k, the other rank's is not: nobody saves, and the state stays empty."""
    strategy = FakeRanks(rank=0, all_agree=False)
    ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=1)
    _fit(tmp_path, strategy, [ckpt], False, enable_progress_bar=False, enable_model_summary=False)
    assert ckpt.best_k_models == {} and ckpt.best_model_path == ""
    assert _files(tmp_path) == []


def test_checkpoint_file_name_and_score_are_rank_zeros(tmp_path, restore_rank):
    """The -v1 suffix (a file rank 0 sees) and the score come from rank 0's broadcast, not this rank's files."""
    taken = tmp_path / "checkpoints" / "epoch=0-step=4.ckpt"
    taken.parent.mkdir()
    taken.write_text("a file from an earlier run")

    def rank0(obj):
        if isinstance(obj, str) and obj.endswith("epoch=0-step=4.ckpt"):
            return obj.replace(".ckpt", "-v1.ckpt")
        return torch.tensor(0.25) if isinstance(obj, torch.Tensor) else obj

    ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=1)
    _fit(tmp_path, FakeRanks(rank=1, broadcast=rank0), [ckpt], False, enable_progress_bar=False,
         enable_model_summary=False, max_epochs=1)
    assert os.path.basename(ckpt.best_model_path) == "epoch=0-step=4-v1.ckpt"
    assert ckpt.best_model_score == torch.tensor(0.25)
    assert taken.read_text() == "a file from an earlier run"
    assert _files(tmp_path) == ["checkpoints", "checkpoints/epoch=0-step=4.ckpt"]


def test_time_interval_save_follows_rank_zeros_clock(tmp_path, restore_rank):
    """This rank's clock says the interval has passed; rank 0's says not: no save."""
    strategy = FakeRanks(rank=1, broadcast=lambda obj: False if isinstance(obj, bool) else obj)
    ckpt = ModelCheckpoint(train_time_interval=timedelta(seconds=0))
    _fit(tmp_path, strategy, [ckpt], False, enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    assert ckpt.best_model_path == ""
    assert strategy.names().count("broadcast") >= 4  # once per batch


def test_early_stopping_stops_when_any_rank_decides(tmp_path, restore_rank):
    strategy = FakeRanks(rank=1, any_rank_stops=True)
    early = EarlyStopping("val_loss", patience=100)
    trainer = _fit(tmp_path, strategy, [early], False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, max_epochs=5)
    assert ("reduce_boolean_decision", False, False) in strategy.calls
    assert trainer.should_stop and trainer.current_epoch == 1 and early.stopped_epoch == 0
    assert "Another process decided to stop" in early.stopping_reason_message


# --- loggers off rank 0 -------------------------------------------------------------------------------------
def _log_everything(logger) -> None:
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 0.5}, step=0)
    logger.log_graph(torch.nn.Linear(2, 2), torch.randn(1, 2))
    logger.after_save_checkpoint(SimpleNamespace(best_model_path="", best_k_models={}, last_model_path=""))
    logger.save()
    logger.finalize("success")


def test_file_loggers_on_rank_one_create_nothing(tmp_path, restore_rank):
    rank_zero_only.rank = 1
    for logger in (CSVLogger(str(tmp_path)), TensorBoardLogger(str(tmp_path), log_graph=True)):
        _log_everything(logger)
        experiment = logger.experiment
        assert isinstance(experiment, DummyExperiment)
        experiment.add_image("image", torch.zeros(3, 2, 2), 0)  # user code runs, writes nothing
        assert logger.version == 0 and logger.log_dir.endswith("version_0")
    assert _files(tmp_path) == []


def test_mlflow_on_rank_one_creates_no_run_and_no_folder(tmp_path, restore_rank):
    pytest.importorskip("mlflow")
    from ember.loggers import MLFlowLogger

    rank_zero_only.rank = 1
    logger = MLFlowLogger("demo", save_dir=str(tmp_path / "mlruns"), log_model=True)
    _log_everything(logger)
    assert isinstance(logger.experiment, DummyExperiment)
    assert logger.run_id is None and logger.version is None and logger.name is None
    assert _files(tmp_path) == []


def test_wandb_on_rank_one_starts_no_run(tmp_path, restore_rank, monkeypatch):
    pytest.importorskip("wandb")
    from ember.loggers import WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    rank_zero_only.rank = 1
    logger = WandbLogger(project="demo", save_dir=str(tmp_path / "wandb_dir"), offline=True, log_model=True)
    _log_everything(logger)
    experiment = logger.experiment
    assert isinstance(experiment, DummyExperiment)
    experiment.config.update({"a": 1})  # Lightning's dummy fails here: a method has no `update`
    assert logger.version is None and logger._experiment is None
    assert WandbLogger(project="demo", id="abc", offline=True).version == "abc"
    assert _files(tmp_path) == []


def test_dummy_experiment_accepts_anything():
    dummy = DummyExperiment()
    assert dummy.add_image("x", None) is dummy and dummy[0].log({"a": 1}) is dummy
    dummy["key"] = 1
    assert list(dummy) == []
    with dummy.some_context() as inner:
        assert inner is dummy
    with pytest.raises(AttributeError):
        dummy.__wrapped__  # protocols (copy, pickle, inspect) are not faked


def test_rank_zero_experiment_on_a_users_logger(restore_rank):
    logger = RecordingLogger()
    assert logger.experiment is logger and logger.calls == ["experiment"]
    rank_zero_only.rank = 1
    assert isinstance(logger.experiment, DummyExperiment)
    logger.log_metrics({"a": 1.0})
    assert logger.calls == ["experiment"]
    assert rank_zero_only is utilities_rank_zero_only  # Lightning exports it from loggers.logger too


def test_rank_zero_warn_warns_on_rank_zero_only_and_points_at_the_caller(restore_rank):
    def helper():
        rank_zero_warn("from ember")  # stacklevel=3: the line that called helper

    with pytest.warns(UserWarning, match="from ember") as record:
        line = sys._getframe().f_lineno + 1
        helper()  # <- the line the warning names
    assert record[0].filename == __file__ and record[0].lineno == line
    rank_zero_only.rank = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        helper()


# --- files only rank 0 removes ---------------------------------------------------------------------------------
def test_checkpoint_removal_handles_folders_and_links_on_rank_zero_only(tmp_path):
    ckpt = ModelCheckpoint(dirpath=str(tmp_path))
    sharded = tmp_path / "epoch=0.ckpt"
    (sharded / "shard").mkdir(parents=True)
    (sharded / "shard" / "0.distcp").write_text("x")
    target = tmp_path / "epoch=1.ckpt"
    target.write_text("y")
    link = tmp_path / "last.ckpt"
    link.symlink_to(target.name)

    rank1 = SimpleNamespace(is_global_zero=False, ckpt_path=None)
    ckpt._remove(rank1, str(sharded), str(target))
    assert sharded.is_dir()

    rank0 = SimpleNamespace(is_global_zero=True, ckpt_path=None)
    ckpt._remove(rank0, str(sharded), str(target))
    ckpt._remove(rank0, str(link), str(target))
    assert _files(tmp_path) == ["epoch=1.ckpt"]


@pytest.mark.parametrize("folder", [False, True])
def test_on_exception_checkpoint_is_removed_by_rank_zero_only(tmp_path, folder):
    callback = OnExceptionCheckpoint(str(tmp_path))
    if folder:
        os.makedirs(os.path.join(callback.ckpt_path, "shard"))
    else:
        open(callback.ckpt_path, "w").close()
    finished = SimpleNamespace(status="finished")
    callback.teardown(SimpleNamespace(is_global_zero=False, state=finished), None, "fit")
    assert os.path.lexists(callback.ckpt_path)
    callback.teardown(SimpleNamespace(is_global_zero=True, state=finished), None, "fit")
    assert not os.path.lexists(callback.ckpt_path)


# --- a real run: two processes --------------------------------------------------------------------------------
_SCRIPT = """
import os
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.loggers import CSVLogger, TensorBoardLogger


class Model(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.example_input_array = torch.randn(2, 4)

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.loggers[1].experiment.add_scalar("custom", loss.item(), self.global_step)  # on every rank
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


root = sys.argv[1]
torch.manual_seed(0)
x = torch.randn(64, 4)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=2, filename="{epoch}-{val_loss:.4f}")
trainer = ember.Trainer(accelerator="cpu", devices=2, max_epochs=2, default_root_dir=root,
                        logger=[CSVLogger(root), TensorBoardLogger(root)],
                        callbacks=[ckpt, EarlyStopping("val_loss", patience=3)], enable_progress_bar=False)
trainer.fit(Model(), data, data)
with open(os.path.join(sys.argv[1], f"rank{trainer.global_rank}.txt"), "w") as f:  # one pipe would mix the lines
    f.write(f"rank={trainer.global_rank} best={ckpt.best_model_path} k={sorted(ckpt.best_k_models)}")
"""


def test_two_processes_write_one_set_of_files(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                        "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(ember.__path__[0]), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=120,
                            env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr

    logs = root / "lightning_logs"
    assert sorted(os.listdir(logs)) == ["version_0", "version_1"]  # a version per logger, as in Lightning
    version = logs / "version_0"
    assert sorted(os.listdir(version)) == ["checkpoints", "hparams.yaml", "metrics.csv"]
    tensorboard = os.listdir(logs / "version_1")
    assert len([f for f in tensorboard if f.startswith("events.out.tfevents")]) == 1 and "hparams.yaml" in tensorboard
    checkpoints = sorted(os.listdir(version / "checkpoints"))
    assert len(checkpoints) == 2 and [c.split("-")[0] for c in checkpoints] == ["epoch=0", "epoch=1"]

    lines = [(root / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert [line.split()[0] for line in lines] == ["rank=0", "rank=1"]
    assert lines[0].split()[1:] == lines[1].split()[1:]  # the same best_model_path and top k on both ranks
    best = lines[0].split()[1][len("best="):]
    assert os.path.basename(best) in checkpoints
    assert result.stdout.count("Trainable params") == 1  # the model summary, printed by rank 0 only
