"""What the loggers do to keep their cost off the training step, and that nothing logged is lost for it:
MLFlowLogger(synchronous=...) as in Lightning (MLflow's background writes are all in the store when ``save``
and ``finalize`` return), and the logger-cost benchmark's smoke run."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ember
from conftest import BoringModel, random_loader
from test_loggers_extra import csv_values  # what the other logger must agree with
from ember.loggers import CSVLogger

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def fit(loggers, tmp_path, max_epochs=2):
    trainer = ember.Trainer(max_epochs=max_epochs, logger=loggers, log_every_n_steps=2, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                            default_root_dir=tmp_path)
    trainer.fit(HParamsModel(), random_loader(32), random_loader(16))
    return trainer


class HParamsModel(BoringModel):
    def __init__(self, lr: float = 0.1, optimizer: str = "sgd") -> None:
        super().__init__()
        self.save_hyperparameters()


def spy_log_batch(logger, calls: list) -> None:
    """Record the keyword arguments of every ``log_batch`` the logger's client gets (the client is made here)."""
    client = logger.experiment
    real = client.log_batch

    def log_batch(*args, **kwargs):
        calls.append({k: v for k, v in kwargs.items() if k == "synchronous"})
        return real(*args, **kwargs)

    client.log_batch = log_batch


@pytest.fixture
def mlflow_file_store(tmp_path, monkeypatch):
    """A ``file:`` store under tmp_path (quicker to make than SQLite's); MLflow 3 keeps it behind a switch."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_ENABLE_ASYNC_LOGGING", raising=False)
    return f"file:{tmp_path / 'mlruns'}"


def slow_store_writes(monkeypatch, seconds: float, fail_on: str = "") -> None:
    """Every batch the store writes takes ``seconds`` (and one with a metric named ``fail_on`` fails), so a
    background write is still running when the logger returns. Patched on the store classes before any
    store of the test's URI exists (MLflow's async queue keeps the store's bound ``log_batch``)."""
    from mlflow.store.tracking.file_store import FileStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for cls in (FileStore, SqlAlchemyStore):
        real = cls.log_batch

        def log_batch(self, run_id, metrics, params, tags, _real=real):
            time.sleep(seconds)
            if fail_on and any(m.key == fail_on for m in metrics):
                raise ValueError(f"refusing {fail_on}")
            return _real(self, run_id, metrics, params, tags)

        monkeypatch.setattr(cls, "log_batch", log_batch)


def test_mlflow_synchronous_false_fit_leaves_every_metric_readable(tmp_path, monkeypatch):
    """The default local store (SQLite): after fit, MlflowClient reads the same values as a CSVLogger's."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ASYNC_LOGGING", raising=False)
    logger = MLFlowLogger("async", save_dir=tmp_path / "mlruns", synchronous=False)
    calls: list = []
    spy_log_batch(logger, calls)
    reference = CSVLogger(tmp_path, name="csv")
    fit([logger, reference], tmp_path)

    assert calls and all(c == {"synchronous": False} for c in calls)  # params and every metrics batch
    assert logger._pending == []
    client = MlflowClient(logger.tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1", "optimizer": "sgd"}
    expected = csv_values(reference)
    assert set(run.data.metrics) == set(expected) == {"train_loss", "val_loss", "epoch"}
    for key, points in expected.items():
        # MLflow's store keeps one row per (key, step, value, millisecond): the same epoch number logged twice at
        # one step (at validation's end and the training epoch's end) within a millisecond is one point there
        history = sorted({(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)})
        points = sorted(set(points))
        assert [s for s, _ in history] == [s for s, _ in points], key
        assert [v for _, v in history] == pytest.approx([v for _, v in points], rel=1e-6), key


@pytest.mark.parametrize("synchronous, expected", [(None, {}), (True, {"synchronous": True}),
                                                   (False, {"synchronous": False})])
def test_mlflow_synchronous_goes_to_every_log_batch_as_in_lightning(mlflow_file_store, synchronous, expected):
    """None passes nothing (MLflow decides, from MLFLOW_ENABLE_ASYNC_LOGGING); True/False are passed on."""
    from ember.loggers import MLFlowLogger

    logger = MLFlowLogger("sync", tracking_uri=mlflow_file_store, synchronous=synchronous)
    calls: list = []
    spy_log_batch(logger, calls)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=3)
    logger.finalize("success")
    assert calls == [expected, expected]


def test_mlflow_default_holds_metrics_back_and_sends_them_in_few_writes(mlflow_file_store, monkeypatch):
    """synchronous=None: one write per 5 s (each costs ~20 ms on SQLite), every value kept with its own time."""
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger
    from ember.loggers import mlflow as mlflow_module

    clock = [100.0]
    monkeypatch.setattr(mlflow_module.time, "monotonic", lambda: clock[0])
    logger = MLFlowLogger("held", tracking_uri=mlflow_file_store)
    sizes: list = []
    client = logger.experiment
    real = client.log_batch
    monkeypatch.setattr(client, "log_batch", lambda *a, **k: (sizes.append(len(k.get("metrics") or ())),
                                                              real(*a, **k))[1])
    for step in range(2500):  # more than MLflow's 1000 metrics per batch
        clock[0] += 0.001
        logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    assert sizes == [1]  # the first at once; 2.5 s later the rest still waits
    clock[0] += 3.0
    logger.log_metrics({"loss": 0.0}, step=2500)  # 5.5 s after the first write: sent, in batches of 1000
    assert sizes == [1, 1000, 1000, 500]
    logger.log_metrics({"loss": 0.5}, step=2501)
    logger.finalize("success")
    assert sizes == [1, 1000, 1000, 500, 1]
    history = MlflowClient(mlflow_file_store).get_metric_history(logger.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2502))


def test_mlflow_save_and_finalize_wait_for_the_background_writes(mlflow_file_store, monkeypatch):
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    slow_store_writes(monkeypatch, 0.3)
    logger = MLFlowLogger("slow", tracking_uri=mlflow_file_store, synchronous=False)
    logger.experiment
    client = MlflowClient(mlflow_file_store)
    start = time.perf_counter()
    logger.log_metrics({"loss": 1.0}, step=0)
    assert time.perf_counter() - start < 0.2  # queued, not written: the store takes 0.3 s
    assert client.get_metric_history(logger.run_id, "loss") == []
    logger.save()  # e.g. on a preemption signal: what was logged is in the store when save returns
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "loss")] == [(0, 1.0)]

    for step in range(1, 4):
        logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    assert len(pickle.loads(pickle.dumps(logger))._pending) == 0  # the copy does not carry this process's futures
    logger.finalize("success")
    assert sorted(m.step for m in client.get_metric_history(logger.run_id, "loss")) == [0, 1, 2, 3]
    assert client.get_run(logger.run_id).info.status == "FINISHED"


def test_mlflow_a_failed_background_write_is_raised_at_finalize(mlflow_file_store, monkeypatch):
    """With synchronous=False MLflow only logs a failed write: finalize raises it (the run is ended first),
    or warns when the fit failed already (its own exception is the one to see)."""
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    slow_store_writes(monkeypatch, 0.0, fail_on="bad")
    client = MlflowClient(mlflow_file_store)
    logger = MLFlowLogger("fails", tracking_uri=mlflow_file_store, synchronous=False)
    logger.log_metrics({"good": 1.0}, step=0)
    logger.log_metrics({"bad": 2.0}, step=1)
    with pytest.raises(RuntimeError, match="MLflow failed to write some logged values.*refusing bad"):
        logger.finalize("success")
    assert client.get_run(logger.run_id).info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(logger.run_id, "good")] == [1.0]

    failed = MLFlowLogger("fails", tracking_uri=mlflow_file_store, synchronous=False)
    failed.log_metrics({"bad": 2.0}, step=0)
    with pytest.warns(RuntimeWarning, match="refusing bad"):
        failed.finalize("failed")
    assert client.get_run(failed.run_id).info.status == "FAILED"


def test_mlflow_synchronous_bad_value_and_too_old_mlflow(mlflow_file_store, monkeypatch):
    from ember.loggers import MLFlowLogger
    from ember.loggers import mlflow as mlflow_module

    with pytest.raises(ValueError, match=r"synchronous='yes'.*True.*False.*None"):
        MLFlowLogger(tracking_uri=mlflow_file_store, synchronous="yes")
    with pytest.raises(ValueError, match="synchronous=1"):
        MLFlowLogger(tracking_uri=mlflow_file_store, synchronous=1)
    monkeypatch.setattr(mlflow_module, "_mlflow_version", lambda: "2.7.1")
    with pytest.raises(ModuleNotFoundError, match=r"synchronous=False\) needs mlflow >= 2.8.0.*mlflow 2.7.1"):
        MLFlowLogger(tracking_uri=mlflow_file_store, synchronous=False)
    MLFlowLogger(tracking_uri=mlflow_file_store)  # None: any mlflow
    monkeypatch.setattr(mlflow_module, "_mlflow_version", lambda: "2.8.0rc1")
    MLFlowLogger(tracking_uri=mlflow_file_store, synchronous=True)


def test_logger_cost_benchmark_quick_prints_a_row_per_logger(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONWARNINGS="ignore")
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "loggers.py"), "--quick", "--loggers", "csv,mlflow-async",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")}
    mlflow = importlib.util.find_spec("mlflow") is not None
    assert {"none", "csv"} | ({"mlflow-async"} if mlflow else set()) <= rows, done.stdout
    assert ("synchronous=False:" in done.stdout) == mlflow, done.stdout  # the per-call MLflow timings
    with open(out) as f:
        assert {row["row"] for row in json.load(f)} == {"csv"} | ({"mlflow-async"} if mlflow else set())
