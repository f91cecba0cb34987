"""TensorBoardLogger, MLFlowLogger and WandbLogger: the files each writes after a real fit, read back with
the reader of its own library (TensorBoard's EventAccumulator, MLflow's MlflowClient, W&B's record format)."""
from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time

import pytest
import torch
import yaml

import ember
from conftest import BoringModel, random_loader
from ember.callbacks import ModelCheckpoint
from ember.loggers import CSVLogger


class HParamsModel(BoringModel):
    """BoringModel with hyperparameters (one nested) that logs ``hp_metric`` (= val_loss) in validation."""

    def __init__(self, lr: float = 0.1, optimizer: str = "sgd", net: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.example_input_array = torch.zeros(1, 32)

    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)
        self.log("hp_metric", loss)  # TensorBoard's HParams tab shows its last value
        return loss


def fit(model, loggers, tmp_path, max_epochs=2, callbacks=()):
    trainer = ember.Trainer(max_epochs=max_epochs, logger=loggers, callbacks=list(callbacks), log_every_n_steps=2,
                            enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks), enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(model, random_loader(32), random_loader(16))
    return trainer


def csv_values(logger: CSVLogger) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} from a CSVLogger of the same fit: what every logger must agree with."""
    values: dict[str, list[tuple[int, float]]] = {}
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    values.setdefault(key, []).append((int(row["step"]), float(value)))
    return values


# --- TensorBoard -----------------------------------------------------------------------------------------
def event_accumulator(log_dir: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def hparams_plugin(accumulator) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    return {tag.split("/")[-1]: plugin_data_pb2.HParamsPluginData.FromString(content)
            for tag, content in accumulator.PluginTagToContent("hparams").items()}


def test_tensorboard_fit_writes_the_scalars_and_hparams_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboard")
    from ember.loggers import TensorBoardLogger

    tb, reference = TensorBoardLogger(tmp_path), CSVLogger(tmp_path, name="csv")
    trainer = fit(HParamsModel(net={"width": 4}), [tb, reference], tmp_path)
    assert tb.log_dir == os.path.join(tmp_path, "lightning_logs", "version_0") == trainer.log_dir

    events = event_accumulator(tb.log_dir)
    expected = csv_values(reference)
    assert set(events.Tags()["scalars"]) == set(expected) == {"train_loss", "val_loss", "epoch", "hp_metric"}
    for tag, points in expected.items():
        got = [(s.step, s.value) for s in events.Scalars(tag)]
        if tag == "hp_metric":
            assert got[0] == (0, -1.0)  # the placeholder from log_hyperparams, then the logged values
            got = got[1:]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
    assert events.Scalars("hp_metric")[-1].value == pytest.approx(trainer.callback_metrics["val_loss"].item())

    plugin = hparams_plugin(events)
    assert "experiment" not in plugin  # so TensorBoard builds the table from every version and every scalar
    start = plugin["session_start_info"].session_start_info.hparams
    assert (start["lr"].number_value, start["optimizer"].string_value, start["net/width"].number_value) == (0.1, "sgd", 4)
    from tensorboard.plugins.hparams import api_pb2

    assert plugin["session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    with open(os.path.join(tb.log_dir, "hparams.yaml")) as f:
        assert yaml.safe_load(f) == {"lr": 0.1, "optimizer": "sgd", "net": {"width": 4}}

    assert TensorBoardLogger(tmp_path).version == 1  # the next fit gets the next folder


def test_tensorboard_hands_scalars_to_the_writer_in_batches_with_their_own_times(tmp_path, monkeypatch):
    """Each hand-over wakes the SummaryWriter's thread, which cost 5-10% of a small model's step when done at
    every logging step: scalars wait in memory (at most 2 s) and reach the file by finalize, with true times."""
    pytest.importorskip("tensorboard")
    from ember.loggers import TensorBoardLogger
    from ember.loggers import tensorboard as tb_module

    clock = [1000.0]
    monkeypatch.setattr(tb_module.time, "time", lambda: clock[0])
    logger = TensorBoardLogger(tmp_path, name="", version=0)
    handed = []
    logger.log_metrics({"loss": 1.0}, step=0)  # the first call creates the writer and hands over at once
    writer = logger.experiment
    real_add_scalar = writer.add_scalar
    monkeypatch.setattr(writer, "add_scalar", lambda *a, **k: (handed.append((a, k)), real_add_scalar(*a, **k)))
    for step in range(1, 4):
        clock[0] += 0.5
        logger.log_metrics({"loss": torch.tensor(1.0 / step)}, step=step)
    assert handed == []  # 1.5 s after the last hand-over: still waiting
    clock[0] += 0.6
    logger.log_metrics({"loss": 0.2}, step=4)  # 2.1 s: all four go now, in order
    assert [a[2] for a, _ in handed] == [1, 2, 3, 4]
    assert [k["walltime"] for _, k in handed] == [1000.5, 1001.0, 1001.5, 1002.1]
    clock[0] += 0.1
    logger.log_metrics({"loss": 0.1}, step=5)
    assert len(handed) == 4
    logger.finalize("success")  # the rest is written before the file closes
    events = event_accumulator(logger.log_dir)
    assert [(s.step, round(s.value, 6), s.wall_time) for s in events.Scalars("loss")] == [
        (0, 1.0, 1000.0), (1, 1.0, 1000.5), (2, 0.5, 1001.0), (3, round(1 / 3, 6), 1001.5), (4, 0.2, 1002.1),
        (5, 0.1, 1002.2)]
    with pytest.raises(ValueError, match="TensorBoard scalars are numbers"):
        logger.log_metrics({"bad": "text"}, step=6)  # refused when logged, not at a later hand-over


def test_tensorboard_hp_metric_placeholder_prefix_sub_dir_and_groups(tmp_path):
    pytest.importorskip("tensorboard")
    from ember.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path, name="exp", version="run_a", sub_dir="train", prefix="fold1")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": torch.tensor(0.5), "acc": {"train": 0.25, "val": 0.75}}, step=3)
    logger.finalize("success")
    assert logger.log_dir == os.path.join(tmp_path, "exp", "run_a", "train")
    events = event_accumulator(logger.log_dir)
    assert [(s.step, s.value) for s in events.Scalars("fold1-hp_metric")] == [(0, -1.0)]
    assert [(s.step, s.value) for s in events.Scalars("fold1-loss")] == [(3, 0.5)]
    groups = {os.path.relpath(d, logger.log_dir) for d in glob.glob(os.path.join(logger.log_dir, "fold1-acc_*"))}
    assert groups == {"fold1-acc_train", "fold1-acc_val"}  # add_scalars writes one folder per curve

    quiet = TensorBoardLogger(tmp_path, name="quiet", default_hp_metric=False)
    quiet.log_hyperparams({"lr": 0.1})
    quiet.log_hyperparams({"lr": 0.1}, metrics=0.25)  # a bare number is the hp_metric
    quiet.finalize("failed")
    events = event_accumulator(quiet.log_dir)
    assert [(s.step, s.value) for s in events.Scalars("hp_metric")] == [(0, 0.25)]
    from tensorboard.plugins.hparams import api_pb2

    assert hparams_plugin(events)["session_end_info"].session_end_info.status == api_pb2.STATUS_FAILURE


def test_tensorboard_log_graph_from_example_input_array(tmp_path):
    pytest.importorskip("tensorboard")
    from ember.loggers import TensorBoardLogger

    class DrawGraph(ember.Callback):  # what Lightning's Trainer does right after log_hyperparams
        def on_fit_start(self, trainer, pl_module):
            for logger in trainer.loggers:
                logger.log_graph(pl_module)

    logger = TensorBoardLogger(tmp_path, log_graph=True)
    fit(HParamsModel(), logger, tmp_path, max_epochs=1, callbacks=[DrawGraph()])
    assert event_accumulator(logger.log_dir).Tags()["graph"] is True

    with pytest.warns(UserWarning, match="example_input_array"):
        TensorBoardLogger(tmp_path, log_graph=True).log_graph(BoringModel())
    off = TensorBoardLogger(tmp_path, name="off")
    off.log_graph(HParamsModel())  # log_graph=False (the default): nothing written, no folder made
    assert not os.path.exists(off.root_dir)


# --- MLflow ----------------------------------------------------------------------------------------------
def test_mlflow_fit_logs_metrics_params_and_checkpoints(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = f"file:{tmp_path / 'mlruns'}"
    logger = MLFlowLogger("demo", run_name="first", tracking_uri=uri, tags={"team": "ember"}, log_model=True)
    reference = CSVLogger(tmp_path, name="csv")
    checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=1)
    fit(HParamsModel(net={"width": 4}), [logger, reference], tmp_path, callbacks=[checkpoint])

    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "demo"
    assert run.data.params == {"lr": "0.1", "optimizer": "sgd", "net/width": "4"}
    assert run.data.tags["mlflow.runName"] == "first" and run.data.tags["team"] == "ember"
    for key, points in csv_values(reference).items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in history] == [s for s, _ in points], key
        assert [v for _, v in history] == pytest.approx([v for _, v in points], rel=1e-6), key
    # checkpoints default to the run's folder of the file store, as in Lightning
    assert os.path.dirname(checkpoint.best_model_path) == os.path.join(
        str(tmp_path / "mlruns"), run.info.experiment_id, run.info.run_id, "checkpoints")
    # log_model=True: the best checkpoint, uploaded once at the end, with its metadata
    stem = os.path.splitext(os.path.basename(checkpoint.best_model_path))[0]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [stem]
    files = sorted(a.path for a in client.list_artifacts(run.info.run_id, stem))
    assert files == [f"{stem}/{stem}.ckpt", f"{stem}/metadata.yaml"]
    with open(client.download_artifacts(run.info.run_id, f"{stem}/metadata.yaml", str(tmp_path))) as f:
        metadata = yaml.safe_load(f)
    assert metadata["score"] == pytest.approx(checkpoint.best_model_score.item())
    assert metadata["aliases"] == ["latest", "best"] and metadata["monitor"] == "val_loss"


def test_mlflow_default_local_store_log_model_all_and_failed_status(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    logger = MLFlowLogger(save_dir=tmp_path / "mlruns", log_model="all")
    checkpoint = ModelCheckpoint(save_top_k=1)  # keeps only the latest file, but every save was uploaded
    fit(HParamsModel(), logger, tmp_path, callbacks=[checkpoint])
    assert logger.tracking_uri.startswith(("file:", "sqlite:"))
    assert os.listdir(tmp_path / "mlruns")  # the store is local, under save_dir
    client = MlflowClient(logger.tracking_uri)
    assert client.get_experiment_by_name("lightning_logs").experiment_id == logger.name
    uploaded = sorted(a.path for a in client.list_artifacts(logger.run_id))
    assert uploaded == ["epoch=0-step=4", "epoch=1-step=8"]
    assert client.get_run(logger.run_id).info.status == "FINISHED"

    class Broken(HParamsModel):
        def training_step(self, batch, batch_idx):
            if self.global_step == 2:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    failing = MLFlowLogger(save_dir=tmp_path / "mlruns", run_name="broken")
    with pytest.raises(RuntimeError, match="boom"):
        fit(Broken(), failing, tmp_path)
    run = client.get_run(failing.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(failing.run_id, "train_loss")] == [1]


# --- W&B -------------------------------------------------------------------------------------------------
def read_wandb_records(path: str) -> list:
    """The records of an offline run file: W&B's log format (LevelDB-style 32 KiB blocks after a 7-byte
    header) holding W&B's own protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    records, chunk, pos, block = [], b"", 7, 32 * 1024
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST piece of a record
            records.append(wandb_internal_pb2.Record.FromString(chunk))
            chunk = b""
    return records


def read_finished_wandb_run(path: str, timeout: float = 10.0) -> list:
    """W&B's service writes the file in the background, after ``wandb.finish()`` returns: wait for the
    run's ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = read_wandb_records(path)
            if any(r.HasField("exit") for r in records):
                return records
        except Exception:  # a record half written
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{path} holds no finished run after {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield wandb
    wandb.finish()


def test_wandb_offline_fit_writes_a_run_that_syncs_later(tmp_path, wandb_offline):
    from ember.loggers import WandbLogger

    logger = WandbLogger(save_dir=tmp_path / "runs", project="ember-test", name="first", offline=True,
                         log_model="all")
    reference = CSVLogger(tmp_path, name="csv")
    checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=-1)
    try:
        fit(HParamsModel(net={"width": 4}), [logger, reference], tmp_path, callbacks=[checkpoint])
    except Exception as error:  # pragma: no cover - an install that cannot run offline
        pytest.skip(f"wandb could not run offline here: {error}")
    run_id = logger.version
    assert logger.name == "ember-test"
    assert os.path.dirname(checkpoint.best_model_path) == os.path.join(
        str(tmp_path / "runs"), "ember-test", run_id, "checkpoints")
    wandb_offline.finish()

    files = glob.glob(str(tmp_path / "runs" / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb"))
    assert len(files) == 1
    records = read_finished_wandb_run(files[0])
    history = [{item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                for item in r.history.item} for r in records if r.HasField("history")]
    for key, points in csv_values(reference).items():
        got = [(row["trainer/global_step"], row[key]) for row in history if key in row]
        assert [s for s, _ in got] == [s for s, _ in points], key
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), key
    config = {}
    for record in records:
        source = record.run.config if record.HasField("run") else record.config if record.HasField("config") else None
        for item in source.update if source is not None else ():
            config[item.key] = json.loads(item.value_json)
    assert {k: config[k] for k in ("lr", "optimizer", "net")} == {"lr": 0.1, "optimizer": "sgd", "net": {"width": 4}}
    names = [r.run.display_name for r in records if r.HasField("run")]
    assert names[0] == "first"
    artifacts = [r.artifact for r in records if r.HasField("artifact")]
    assert [a.type for a in artifacts] == ["model", "model"]  # log_model="all": both epochs' saves
    assert {a.name for a in artifacts} == {f"model-{run_id}"}
    scores = [json.loads(a.metadata)["score"] for a in artifacts]
    assert scores == pytest.approx([v for _, v in csv_values(reference)["val_loss"]], rel=1e-6)


# --- all three ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, package", [("TensorBoardLogger", "tensorboard"), ("MLFlowLogger", "mlflow"),
                                           ("WandbLogger", "wandb")])
def test_a_missing_library_says_how_to_install_it(name, package, monkeypatch):
    real_find_spec = importlib.util.find_spec
    hidden = {"tensorboard", "tensorboardX", "mlflow", "wandb"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in hidden else real_find_spec(n, *a))
    logger_class = getattr(ember.loggers, name)
    args = ("logs",) if name == "TensorBoardLogger" else ()
    with pytest.raises(ModuleNotFoundError, match=rf"{name} needs {package}.*`pip install {package}`.*"
                                                  rf"pip install -e '\.\[{package}\]'"):
        logger_class(*args)


def test_importing_the_loggers_loads_none_of_their_libraries():
    code = ("import sys, ember\n"
            "from ember.loggers import TensorBoardLogger, MLFlowLogger, WandbLogger\n"
            "heavy = {'tensorboard', 'tensorboardX', 'mlflow', 'wandb'}\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'torch.utils.tensorboard')\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)
