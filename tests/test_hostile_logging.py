"""Loggers under hostile conditions (issue 14): runs started at the same moment in one folder, a folder that
appears between the listing and the claim, other ranks, and the permissions of the files a logger writes."""
from __future__ import annotations

import csv
import multiprocessing
import os
import stat

import pytest
import torch

import ember._io
from ember.loggers import CSVLogger
from ember.utilities.rank_zero import rank_zero_only


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _rows(log_dir) -> list:
    with open(os.path.join(log_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _context():
    # fork starts a child in milliseconds (spawn would import torch again in each); the race is the same
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _racing_run(kind: str, save_dir: str, run: int, barrier, results) -> None:
    barrier.wait()  # every process reaches this line, then all choose a version at the same moment
    if kind == "csv":
        logger = CSVLogger(save_dir)
    else:
        from ember.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir, default_hp_metric=False)
    logger.version  # choose it; a version chosen from a folder listing alone would be 0 in every process,
    barrier.wait()  # as nobody writes anything before every process has chosen
    logger.log_hyperparams({"run": run})
    if kind == "csv":
        for step in range(3):
            logger.log_metrics({"run": run, "value": step}, step=step)
    logger.finalize("success")
    results.put((run, logger.version, logger.log_dir))


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_runs_started_at_the_same_moment_get_their_own_versions(tmp_path, kind):
    if kind == "tensorboard":
        pytest.importorskip("tensorboard")
        from ember.loggers.tensorboard import _summary_writer_class

        _summary_writer_class()  # imported once here, not by each child while the others wait
    ctx = _context()
    runs = 6
    barrier, results = ctx.Barrier(runs), ctx.Queue()
    procs = [ctx.Process(target=_racing_run, args=(kind, str(tmp_path), run, barrier, results)) for run in range(runs)]
    for p in procs:
        p.start()
    found = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    versions = sorted(version for _, version, _ in found)
    assert versions == list(range(runs))  # each run its own folder, numbered as Lightning numbers them
    import yaml

    for run, _, log_dir in found:
        with open(os.path.join(log_dir, "hparams.yaml")) as f:
            assert yaml.safe_load(f) == {"run": run}
        if kind == "csv":  # this run's rows, and no other run's
            assert [(r["run"], r["value"]) for r in _rows(log_dir)] == [(str(run), str(s)) for s in range(3)]
        else:
            assert len([f for f in os.listdir(log_dir) if f.startswith("events.out.tfevents")]) == 1


def test_a_version_folder_made_between_listing_and_claim_is_left_to_its_owner(tmp_path, monkeypatch):
    root = tmp_path / "lightning_logs"
    (root / "version_0").mkdir(parents=True)
    (root / "version_3").mkdir()
    listed = ember._io.next_number

    def other_run_claims_after_listing(folder, prefix="version_"):
        number = listed(folder, prefix)
        os.mkdir(os.path.join(folder, f"{prefix}{number}"))  # another run takes that number right then
        with open(os.path.join(folder, f"{prefix}{number}", "metrics.csv"), "w") as f:
            f.write("other,step\n1,0\n")
        return number

    monkeypatch.setattr(ember._io, "next_number", other_run_claims_after_listing)
    logger = CSVLogger(tmp_path)
    assert logger.version == 5  # version_4 went to the other run between our listing and our mkdir
    logger.log_metrics({"mine": 1.0}, step=0)
    logger.save()
    assert (root / "version_4" / "metrics.csv").read_text() == "other,step\n1,0\n"
    assert _rows(logger.log_dir) == [{"mine": "1.0", "step": "0"}]
    monkeypatch.undo()

    again = CSVLogger(tmp_path, version=5)  # a version given by the user: its folder is continued, as Lightning
    again.log_metrics({"mine": 2.0}, step=1)
    again.save()
    assert again.log_dir == logger.log_dir and [r["mine"] for r in _rows(logger.log_dir)] == ["1.0", "2.0"]
    assert CSVLogger(tmp_path).version == 6


def test_a_rank_other_than_zero_claims_no_version_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path)
    assert logger.version == 0 and not os.path.exists(tmp_path / "lightning_logs")  # the Trainer gives it rank 0's
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert CSVLogger(tmp_path).version == 0 and os.path.isdir(tmp_path / "lightning_logs" / "version_0")


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_logger_files_get_the_permissions_the_umask_allows(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        logger = CSVLogger(tmp_path)
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"loss": 1.0}, step=0)
        logger.save()
        logger.log_metrics({"loss": 0.5, "acc": 0.9}, step=1)  # a new column: the file is rewritten
        logger.save()
        files = [os.path.join(logger.log_dir, name) for name in ("metrics.csv", "hparams.yaml")]
        try:
            from ember.loggers import TensorBoardLogger

            tensorboard = TensorBoardLogger(tmp_path, name="tb")
            tensorboard.log_hyperparams({"lr": 0.1})
            tensorboard.finalize("success")
            files.append(os.path.join(tensorboard.log_dir, "hparams.yaml"))
        except ModuleNotFoundError:
            pass
        from ember._checkpoint_io import atomic_save

        atomic_save({"w": torch.zeros(1)}, os.path.join(tmp_path, "model.ckpt"))  # a checkpoint: the same rule
        files.append(os.path.join(tmp_path, "model.ckpt"))
    finally:
        os.umask(old)
    assert {os.path.basename(f) + oct(_mode(f)) for f in files} == {os.path.basename(f) + oct(expected) for f in files}
    assert [name for name in os.listdir(logger.log_dir) if name.endswith(".tmp")] == []


def _racing_mlflow_run(save_dir: str, run: int, barrier, results) -> None:
    from ember.loggers import MLFlowLogger

    logger = MLFlowLogger("race", save_dir=save_dir, synchronous=True)
    barrier.wait()  # both reach the new store at the same moment: its tables and the experiment do not exist yet
    logger.log_metrics({"run": run}, step=0)
    logger.finalize("success")
    results.put((logger.experiment_id, logger.run_id))


def test_mlflow_runs_started_at_the_same_moment_on_a_new_local_store_both_run(tmp_path):
    pytest.importorskip("mlflow")
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  imported once here, not in each child
    from mlflow.tracking import MlflowClient

    ctx = _context()
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racing_mlflow_run, args=(str(tmp_path), run, barrier, results)) for run in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0  # without the lock one of them fails: "table ... already exists"
    found = [results.get(timeout=5) for _ in procs]
    assert len({experiment for experiment, _ in found}) == 1 and len({run for _, run in found}) == 2
    from ember.loggers.mlflow import _local_store_uri

    client = MlflowClient(_local_store_uri(str(tmp_path)))
    assert sorted(client.get_run(run).data.metrics["run"] for _, run in found) == [0.0, 1.0]


def test_mlflow_experiment_created_by_another_run_first_is_joined(monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

    from ember.loggers.mlflow import _create_experiment

    class RemoteStore:  # the other run created "shared" between our look-up and our create_experiment
        def create_experiment(self, name, artifact_location=None):
            raise MlflowException(f"Experiment(name={name}) already exists.", RESOURCE_ALREADY_EXISTS)

        def get_experiment_by_name(self, name):
            return type("Experiment", (), {"experiment_id": "7"})()

    assert _create_experiment(RemoteStore(), "shared", None) == "7"


def test_a_save_dir_that_is_a_file_is_named_in_the_error(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the logs should go")
    with pytest.raises(OSError, match=r"CSVLogger could not create a version_N folder in .*logs.*choose a save_dir"):
        CSVLogger(blocker).version
    assert blocker.read_text() == "a file where the logs should go"
