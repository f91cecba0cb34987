"""MLFlowLogger: metrics, parameters and checkpoints in an MLflow tracking store (a local one by default).

This module imports nothing heavy: ``mlflow`` is imported when the logger first talks to its store.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ember._io import exclusive_lock
from ember.loggers.logger import Logger, _params_to_dict, rank_zero_experiment
from ember.loggers.tensorboard import _flatten  # shared helper; imports no tensorboard
from ember.utilities.rank_zero import rank_zero_only

_MISSING = ("MLFlowLogger needs mlflow, which is not installed. Install it with `pip install mlflow`, or "
            "`pip install -e '.[mlflow]'` in ember's source tree.")
_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
           "killed": "KILLED"}


class MLFlowLogger(Logger):
    """Log to an MLflow run: metrics with their step, hyperparameters as params, checkpoints as artifacts.

    Without ``tracking_uri`` (and no ``MLFLOW_TRACKING_URI`` in the environment) the store is local, under
    ``save_dir``: the ``file:`` store Lightning uses, or, with MLflow versions that keep that store behind
    ``MLFLOW_ALLOW_FILE_STORE``, an SQLite database ``{save_dir}/mlflow.db`` with artifacts beside it. Open
    it with ``mlflow ui --backend-store-uri <the same URI>`` (``logger.tracking_uri``).

    ``name`` is the experiment id and ``version`` the run id. ``log_model=True`` uploads the checkpoints of
    ``ModelCheckpoint`` when the run ends (at every save when ``save_top_k=-1``), ``"all"`` at every save;
    each under ``{checkpoint_path_prefix}/{file stem}/`` with a ``metadata.yaml`` (score, monitor, ...).
    ``finalize`` ends the run as FINISHED, FAILED or KILLED.

    ``synchronous`` (as in Lightning; needs mlflow >= 2.8.0) goes to every ``log_batch`` call: ``True`` waits
    for each write, ``False`` queues it for MLflow's background threads, and ``None`` (the default) lets
    MLflow decide (``MLFLOW_ENABLE_ASYNC_LOGGING``; synchronous unless set). Either way ``save()`` and
    ``finalize`` return only once everything logged is in the store, so after ``trainer.fit`` every metric
    can be read with ``MlflowClient``; a write that failed in the background is raised there (a warning
    when the run itself failed).

    Cost: with the local SQLite store one MLflow write takes about 22 ms (two SQLite commits, mostly waiting
    for the disk, and 5-7 ms of CPU), whatever the number of metrics in it. So with ``synchronous=None`` ember
    holds metrics back and sends them in one ``log_batch`` at most every 5 seconds (and at ``save()`` and
    ``finalize``), each metric with the time it was logged; Lightning writes at every call, which at
    ``log_every_n_steps=50`` made the 240 µs step of ``benchmarks/loggers.py``'s tiny MLP 3.4 times as long.
    ``synchronous=True`` writes at every call, as asked. With ``synchronous=False`` a call returns in about
    0.2 ms, but MLflow's threads still spend the CPU (+200 µs a step on that model, 2 cores) and ending the run
    waits up to 1 s for MLflow's queue.

    Under several processes only global rank 0 creates the run and writes to it; on other ranks
    ``experiment`` is a ``DummyExperiment`` and ``run_id``/``version`` are None unless ``run_id`` was given.

    >>> logger = MLFlowLogger(experiment_name="demo", save_dir="./mlruns")   # doctest: +SKIP
    >>> trainer = Trainer(logger=logger)                                     # doctest: +SKIP
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, experiment_name: str = "lightning_logs", run_name: Optional[str] = None,
                 tracking_uri: Optional[str] = None, tags: Optional[dict[str, Any]] = None,
                 save_dir: Optional[Union[str, os.PathLike]] = "./mlruns",
                 log_model: Union[bool, Literal["all"]] = False, prefix: str = "",
                 artifact_location: Optional[str] = None, run_id: Optional[str] = None,
                 checkpoint_path_prefix: str = "", synchronous: Optional[bool] = None) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ModuleNotFoundError(_MISSING, name="mlflow")
        if synchronous is not None and not isinstance(synchronous, bool):
            raise ValueError(f"MLFlowLogger(synchronous={synchronous!r}): use True (wait for every write), False "
                             "(write in MLflow's background threads) or None (MLflow's default).")
        if synchronous is not None:
            _check_synchronous_supported(synchronous)
        if log_model not in (False, True, "all"):
            raise ValueError(f"MLFlowLogger(log_model={log_model!r}): use False, True (upload checkpoints when "
                             "the run ends) or 'all' (upload every checkpoint when it is saved).")
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self._local_default = self._tracking_uri is None  # the store under save_dir, chosen when first used
        if self._local_default and self._save_dir is None:
            raise ValueError("MLFlowLogger needs a tracking_uri or a save_dir to keep the runs in.")
        if self._tracking_uri is not None and self._tracking_uri.startswith("file:"):
            self._save_dir = self._tracking_uri[len("file:"):]
        self.tags = dict(tags or {})
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: Optional[str] = None
        self._checkpoint_path_prefix = checkpoint_path_prefix
        self._client: Any = None
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: dict[str, float] = {}  # path -> mtime when uploaded
        self._log_batch_kwargs: dict[str, bool] = {} if synchronous is None else {"synchronous": synchronous}
        self._pending: list = []  # RunOperations of writes MLflow still runs in the background
        self._unsent: list = []  # synchronous=None: metrics held back, sent every _SEND_SECS (see log_metrics)
        self._send_at = 0.0  # time.monotonic() after which log_metrics sends them

    # --- the run --------------------------------------------------------------------------------------
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``mlflow.tracking.MlflowClient``; the experiment and the run exist once this is read (on
        global rank 0; other ranks get a ``DummyExperiment``)."""
        if self._client is not None:
            return self._client
        from mlflow.tracking import MlflowClient

        local = self._local_default or self.tracking_uri.startswith("file:")
        if local:
            os.makedirs(self._save_dir, exist_ok=True)  # the store's folder (and SQLite database's) must exist
        # Runs started at the same moment on one local store would each create its tables (all but one then fail
        # with "table ... already exists") and each create the experiment: one process at a time does that part.
        with exclusive_lock(os.path.join(self._save_dir, _LOCK_FILE)) if local else contextlib.nullcontext():
            return self._connect(MlflowClient(self.tracking_uri))

    def _connect(self, client: Any) -> Any:
        """Find or create the experiment and the run (``experiment`` holds the store's lock meanwhile)."""
        if self._run_id is not None:  # continue an existing run
            self._experiment_id = client.get_run(self._run_id).info.experiment_id
            self._client = client
            return client
        experiment = client.get_experiment_by_name(self._experiment_name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise ValueError(f"MLFlowLogger(experiment_name={self._experiment_name!r}): that experiment was deleted "
                             f"in {self.tracking_uri}. Restore it (MlflowClient().restore_experiment("
                             f"{experiment.experiment_id!r})), remove it for good (`mlflow gc`), or pick another name.")
        if experiment is None:
            artifact_location = self._artifact_location
            if artifact_location is None and self._tracking_uri.startswith("sqlite:") and self._local_default:
                artifact_location = Path(self._save_dir).resolve().as_uri()  # artifacts next to the database
            self._experiment_id = _create_experiment(client, self._experiment_name, artifact_location)
        else:
            self._experiment_id = experiment.experiment_id
        tags = dict(self.tags)
        if self._run_name is not None:
            tags["mlflow.runName"] = self._run_name
        try:
            from mlflow.tracking.context.registry import resolve_tags  # adds user, source file, git commit

            tags = resolve_tags(tags)
        except ImportError:
            pass
        self._run_id = client.create_run(experiment_id=self._experiment_id, tags=tags).info.run_id
        self._client = client
        return client

    @property
    def tracking_uri(self) -> str:
        """The store's URI; for the local default, decided here (see the class docstring)."""
        if self._tracking_uri is None:
            self._tracking_uri = _local_store_uri(self._save_dir)
        return self._tracking_uri

    @property
    def run_id(self) -> Optional[str]:
        """The run's id (None on ranks other than 0 unless ``run_id`` was given)."""
        self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> Optional[str]:
        self.experiment
        return self._experiment_id

    @property
    def name(self) -> Optional[str]:
        """The experiment id (a folder name of the ``file:`` store)."""
        return self.experiment_id

    @property
    def version(self) -> Optional[str]:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> Optional[str]:
        """The local folder of the store, or None for a remote one."""
        return self._save_dir if self._local_default or (self._tracking_uri or "").startswith("file:") else None

    # --- what the Trainer calls -----------------------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Union[Mapping[str, Any], argparse.Namespace, None] = None,
                        *args: Any, **kwargs: Any) -> None:
        """Log ``params`` as run params: nested dicts flattened to ``"a/b"`` keys, values as strings (a class,
        function or partial by its import path: ``functools.partial(torch.optim.adam.Adam, lr=0.1)``).

        MLflow params cannot change: logging a key again with another value is an error of MLflow's.
        """
        from ember._hparams import hparams_for_display

        flat = _flatten(hparams_for_display(_params_to_dict(params)))
        if not flat:
            return
        from mlflow.entities import Param

        try:
            from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
        except ImportError:
            MAX_PARAM_VAL_LENGTH = 250
        items = [Param(key=k, value=str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in flat.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._track(self.experiment.log_batch(run_id=self.run_id, params=items[start:start + 100],
                                                  **self._log_batch_kwargs))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Log numbers at ``step`` in one batch. Characters MLflow forbids in names are dropped (with a warning)."""
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            key = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key
            if isinstance(value, str):
                from ember.utilities.rank_zero import rank_zero_warn

                rank_zero_warn(f"MLFlowLogger dropped metric {key}={value!r}: MLflow metrics are numbers.")
                continue
            clean = re.sub(r"[^a-zA-Z0-9_/. \-]+", "", key)
            if clean != key:
                from ember.utilities.rank_zero import rank_zero_warn

                rank_zero_warn(f"MLFlowLogger renamed metric {key!r} to {clean!r}: MLflow names may hold letters, "
                               "digits and the characters _ - . / and space.", RuntimeWarning)
            batch.append(Metric(key=clean, value=float(value.item() if hasattr(value, "item") else value),
                                timestamp=timestamp_ms, step=step or 0))
        if not batch:
            return
        if self._log_batch_kwargs:  # synchronous=True/False: each call is MLflow's, as asked
            self._track(self.experiment.log_batch(run_id=self.run_id, metrics=batch, **self._log_batch_kwargs))
            return
        self._unsent.extend(batch)
        if time.monotonic() >= self._send_at:
            self._send()

    def _send(self) -> None:
        """The metrics held back (``synchronous=None``) in ``log_batch`` calls of at most 1000, MLflow's limit."""
        unsent, self._unsent = self._unsent, []
        self._send_at = time.monotonic() + _SEND_SECS
        for start in range(0, len(unsent), 1000):
            self._track(self.experiment.log_batch(run_id=self.run_id, metrics=unsent[start:start + 1000]))

    def _track(self, operations: Any) -> None:
        """Keep the ``RunOperations`` of a write MLflow runs in the background (None when it ran here), so
        that ``save``/``finalize`` can wait for it; the finished ones are dropped now and then."""
        if operations is None:
            return
        pending = self._pending
        pending.append(operations)
        if len(pending) >= 64:
            pending[:] = [ops for ops in pending if not _finished(ops)]

    def _flush(self) -> Optional[Exception]:
        """Send the metrics held back, then wait for every background write; the MLflow error of those that
        failed, if any."""
        if self._unsent:
            self._send()
        pending, self._pending = self._pending, []
        errors = []
        for ops in pending:
            try:
                ops.wait()
            except Exception as error:  # MlflowException listing the failed writes
                errors.append(error)
        if not errors:
            return None
        return errors[0] if len(errors) == 1 else RuntimeError("; ".join(str(e) for e in errors))

    @rank_zero_only
    def save(self) -> None:
        """Send the metrics held back and wait until everything logged so far is in the store."""
        error = self._flush()
        if error is not None:
            raise RuntimeError(f"MLFlowLogger: MLflow failed to write some logged values: {error}") from error

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and getattr(checkpoint_callback, "save_top_k", 1) == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback  # uploaded once, when the run ends

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload pending checkpoints and end the run: "success" -> FINISHED, "failed" -> FAILED."""
        if self._client is None:  # never logged: no run to end
            return
        error = self._flush()  # the background writes (synchronous=False) are in the store before the run ends
        if self._checkpoint_callback is not None:
            self._log_checkpoints(self._checkpoint_callback)
        self._client.set_terminated(self._run_id, _STATUS.get(status, str(status).upper()))
        if error is not None:
            message = f"MLFlowLogger: MLflow failed to write some logged values: {error}"
            if status in ("success", "finished"):
                raise RuntimeError(message) from error
            from ember.utilities.rank_zero import rank_zero_warn

            rank_zero_warn(message, RuntimeWarning)  # the run failed already: do not hide its exception

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pending"] = []  # futures of this process's background writes: not picklable, waited for here
        state["_unsent"] = list(self._unsent)
        return state

    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        import yaml

        for path, mtime, score in _checkpoints_to_upload(checkpoint_callback, self._logged_checkpoints):
            artifact_path = str(Path(self._checkpoint_path_prefix) / Path(path).stem)
            self.experiment.log_artifact(self.run_id, path, artifact_path)
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            metadata = {"score": score, "original_filename": Path(path).name, "aliases": aliases,
                        "monitor": getattr(checkpoint_callback, "monitor", None),
                        "mode": getattr(checkpoint_callback, "mode", None),
                        "save_top_k": getattr(checkpoint_callback, "save_top_k", None)}
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "metadata.yaml"), "w") as f:
                    yaml.safe_dump(metadata, f, sort_keys=False)
                self.experiment.log_artifact(self.run_id, os.path.join(tmp, "metadata.yaml"), artifact_path)
            self._logged_checkpoints[path] = mtime


_LOCK_FILE = ".ember-mlflow.lock"  # in a local store's folder: MLflow lists only the folders there


def _create_experiment(client: Any, name: str, artifact_location: Optional[str]) -> str:
    """The id of a new experiment ``name``; if another run created it first (a remote store, where no lock of ours
    reaches), that one's."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as error:
        if getattr(error, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


_SYNCHRONOUS_SINCE = (2, 8)
_SEND_SECS = 5.0  # with synchronous=None, metrics go to MLflow at most this often (one write costs ~20 ms)


def _mlflow_version() -> Optional[str]:
    """The installed mlflow's version (``mlflow`` or ``mlflow-skinny``), read without importing it."""
    from importlib import metadata

    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def _check_synchronous_supported(synchronous: bool) -> None:
    version = _mlflow_version()
    if version is None:  # a source checkout without metadata: let MLflow itself decide
        return
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and tuple(int(n) for n in match.groups()) < _SYNCHRONOUS_SINCE:
        raise ModuleNotFoundError(
            f"MLFlowLogger(synchronous={synchronous}) needs mlflow >= 2.8.0 (its log_batch gained `synchronous` "
            f"there); this environment has mlflow {version}. Upgrade it (`pip install -U 'mlflow>=2.8'`) or leave "
            "synchronous=None.", name="mlflow")


def _finished(operations: Any) -> bool:
    """Whether every write of a ``RunOperations`` is done (unknown layout: not known to be, so kept)."""
    futures = getattr(operations, "_operation_futures", None)
    return futures is not None and all(future.done() for future in futures)


def _local_store_uri(save_dir: str) -> str:
    """``file:{save_dir}`` where this MLflow accepts it, else ``sqlite:///{save_dir}/mlflow.db``."""
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:  # MLflow before the file store was set aside
        return f"file:{save_dir}"
    if MLFLOW_ALLOW_FILE_STORE.get():
        return f"file:{save_dir}"
    return f"sqlite:///{os.path.abspath(os.path.join(save_dir, 'mlflow.db'))}"


def _checkpoints_to_upload(checkpoint_callback: Any, uploaded: dict[str, float]) -> list[tuple[str, float, Any]]:
    """``(path, mtime, score)`` of the callback's checkpoints not uploaded since they were last written,
    oldest first. Shared by the loggers that upload checkpoints (MLflow, W&B)."""
    scores: dict[str, Any] = dict(getattr(checkpoint_callback, "best_k_models", {}) or {})
    best = getattr(checkpoint_callback, "best_model_path", "")
    if best and best not in scores:
        scores[best] = getattr(checkpoint_callback, "best_model_score", None)
    last = getattr(checkpoint_callback, "last_model_path", "")
    if last and last not in scores:
        scores[last] = getattr(checkpoint_callback, "current_score", None)
    found = []
    for path, score in scores.items():
        if not path or not os.path.isfile(path):
            continue
        mtime = os.path.getmtime(path)
        if uploaded.get(path) != mtime:
            found.append((path, mtime, score.item() if hasattr(score, "item") else score))
    return sorted(found, key=lambda item: item[1])
