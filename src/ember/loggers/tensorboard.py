"""TensorBoardLogger: event files that ``tensorboard --logdir`` shows, written by torch's ``SummaryWriter``.

This module imports nothing heavy: ``torch.utils.tensorboard`` (or ``tensorboardX``) is imported when the
logger first writes.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Mapping
from typing import Any, Optional, Union

from ember._io import atomic_write_text
from ember.loggers.csv_logs import _VersionedLogger, _yaml_plain
from ember.loggers.logger import _params_to_dict, rank_zero_experiment
from ember.utilities.rank_zero import rank_zero_only

_MISSING = ("TensorBoardLogger needs tensorboard (or tensorboardX), which is not installed. Install it with "
            "`pip install tensorboard`, or `pip install -e '.[tensorboard]'` in ember's source tree; or use "
            "ember.loggers.CSVLogger, which needs nothing extra.")


def _tensorboard_available() -> bool:
    """Whether a ``SummaryWriter`` can be made, checked without importing anything.

    ``Trainer(logger=True)`` uses this to pick TensorBoard over CSV, as Lightning does.
    """
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


class TensorBoardLogger(_VersionedLogger):
    """Write TensorBoard event files to ``{save_dir}/{name}/version_{n}/{sub_dir}``.

    ``log_metrics`` adds one scalar per key at ``step``. ``log_hyperparams`` writes ``hparams.yaml`` and
    the hyperparameters for TensorBoard's HParams tab; with ``default_hp_metric`` it also logs
    ``hp_metric = -1`` at step 0, which your own ``self.log("hp_metric", ...)`` then replaces. The HParams
    tab lists every scalar of the run (``val_loss``, ...) with its final value, for every version side by
    side. ``log_graph=True`` draws the model from ``example_input_array``. Extra keyword arguments go to
    ``SummaryWriter`` (``flush_secs``, ``max_queue``, ...).

    Under several processes only global rank 0 writes; ``experiment`` is a ``DummyExperiment`` elsewhere,
    so ``self.logger.experiment.add_image(...)`` in a LightningModule runs on every rank and writes once.

    >>> import tempfile
    >>> logger = TensorBoardLogger(tempfile.mkdtemp(), name="demo")   # doctest: +SKIP
    >>> logger.log_metrics({"loss": 0.5}, step=0)                      # doctest: +SKIP
    >>> logger.finalize("success")                                     # doctest: +SKIP
    >>> # then: tensorboard --logdir <save_dir>
    """

    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, save_dir: Union[str, os.PathLike], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, log_graph: bool = False,
                 default_hp_metric: bool = True, prefix: str = "", sub_dir: Optional[Union[str, os.PathLike]] = None,
                 **kwargs: Any) -> None:
        if not _tensorboard_available():
            raise ModuleNotFoundError(_MISSING, name="tensorboard")
        self._save_dir = os.path.expanduser(os.path.expandvars(os.fspath(save_dir)))
        self._name = name or ""
        self._version = version
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._sub_dir = None if sub_dir is None else os.path.expanduser(os.path.expandvars(os.fspath(sub_dir)))
        self._kwargs = kwargs
        self._experiment: Any = None
        self._pending: list = []  # scalars not yet handed to the writer: (tag, value or dict, step, wall time)
        self._push_at = 0.0  # time.time() after which the next log_metrics hands them over
        self._session_started = False
        self.hparams: dict[str, Any] = {}

    # --- where the files go: CSVLogger's layout, plus sub_dir ------------------------------------------
    @property
    def log_dir(self) -> str:
        log_dir = super().log_dir
        return os.path.join(log_dir, self._sub_dir) if self._sub_dir else log_dir

    @property
    def sub_dir(self) -> Optional[str]:
        return self._sub_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``SummaryWriter``; creating it creates ``log_dir``. Use it for images, histograms, text...
        (a ``DummyExperiment`` that accepts any call on ranks other than 0)."""
        if self._experiment is None:
            self._experiment = _summary_writer_class()(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    # --- what the Trainer calls -----------------------------------------------------------------------
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """One scalar per key (``add_scalar``); a dict value becomes a group of scalars (``add_scalars``).

        The scalars reach the ``SummaryWriter`` in batches: at most ``_PUSH_SECS`` (2) seconds after they are
        logged, and at ``save()`` and ``finalize()``, each with the wall time of its ``log_metrics`` call. Each
        hand-over wakes the writer's background thread, and on a small model one wake-up per logging step
        cost 5-10% of the training time; the writer itself puts events on disk only every ``flush_secs`` (120 s).
        """
        now = time.time()
        pending = self._pending
        for key, value in metrics.items():
            key = f"{self._prefix}-{key}" if self._prefix else key
            if isinstance(value, Mapping):
                pending.append((key, {k: _scalar(key, v) for k, v in value.items()}, step, now))
            else:
                pending.append((key, _scalar(key, value), step, now))
        if now >= self._push_at:
            self._push()

    def _push(self) -> None:
        """Hand the buffered scalars to the SummaryWriter (see ``log_metrics``)."""
        pending, self._pending = self._pending, []
        self._push_at = time.time() + _PUSH_SECS
        if not pending:
            return
        writer = self.experiment
        for key, value, step, walltime in pending:
            if isinstance(value, dict):
                writer.add_scalars(key, value, step, walltime=walltime)
            else:
                writer.add_scalar(key, value, step, walltime=walltime)

    @rank_zero_only
    def log_hyperparams(self, params: Union[Mapping[str, Any], argparse.Namespace, None] = None,
                        metrics: Union[Mapping[str, Any], float, None] = None, *args: Any, **kwargs: Any) -> None:
        """Record ``params`` in ``hparams.yaml`` and in TensorBoard's HParams tab.

        ``metrics`` (a dict, or one number for ``hp_metric``) are logged as scalars at step 0; by default
        that is ``{"hp_metric": -1}``, a placeholder for the value you log during the run.
        """
        params = _params_to_dict(params)
        self.hparams.update(params)
        os.makedirs(self.log_dir, exist_ok=True)
        self._write_hparams_yaml()
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else {}
        elif not isinstance(metrics, Mapping):
            metrics = {"hp_metric": metrics}
        if metrics:
            self.log_metrics(metrics, 0)
        if params or metrics:
            from ember._hparams import hparams_for_display

            flat = _flatten(hparams_for_display(self.hparams))
            self._write_session_start({k: _tensorboard_hparam(v) for k, v in flat.items()})

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Draw ``model``'s graph from ``input_array`` (default: ``model.example_input_array``); only when
        the logger was made with ``log_graph=True``."""
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            from ember.utilities.rank_zero import rank_zero_warn

            rank_zero_warn("TensorBoardLogger(log_graph=True) could not draw the graph: set "
                           "`self.example_input_array` in your LightningModule, or pass `input_array`.")
            return
        from ember._utils import move_data_to_device

        device = next((p.device for p in model.parameters()), None) if hasattr(model, "parameters") else None
        if device is not None:
            input_array = move_data_to_device(input_array, device)
        self.experiment.add_graph(model, input_array)

    @rank_zero_only
    def save(self) -> None:
        """Flush the event file (``hparams.yaml`` is written when hyperparameters are logged)."""
        self._push()
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Record how the run ended in the HParams tab, then flush and close the event file.

        Logging afterwards (``trainer.test`` after ``fit``) opens a new event file in the same folder.
        """
        self._push()
        if self._experiment is None:
            return
        if self._session_started:
            self._write_session_end(status)
        self._experiment.flush()
        self._experiment.close()

    # --- the HParams plugin ---------------------------------------------------------------------------
    # TensorBoard's plugin reads a per-version "session start" (the hyperparameters) and, unless some run
    # holds an "experiment" summary, builds the table from all runs: every hyperparameter seen in any
    # version, and every scalar tag as a metric column showing its last value. Writing an "experiment"
    # summary per version (as torch's add_hparams does) makes the plugin pick one version's summary and
    # show only its hyperparameters and metrics, so we write the session summaries alone.
    def _write_session_start(self, flat_params: dict[str, Any]) -> None:
        hparams = _summary_hparams_fn()
        _, session_start, _ = hparams(flat_params, {})
        self.experiment._get_file_writer().add_summary(session_start)
        self._session_started = True

    def _write_session_end(self, status: str) -> None:
        # The writer's own hparams() makes a session-end summary marked "success"; we set the real status.
        try:
            from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        except ImportError:  # tensorboardX without tensorboard: the same messages, tensorboardX's copy
            from tensorboardX.proto import api_pb2, plugin_hparams_pb2 as plugin_data_pb2
        _, _, end = _summary_hparams_fn()({}, {})
        plugin_data = end.value[0].metadata.plugin_data
        data = plugin_data_pb2.HParamsPluginData.FromString(plugin_data.content)
        data.session_end_info.status = {"success": api_pb2.STATUS_SUCCESS, "finished": api_pb2.STATUS_SUCCESS,
                                        "failed": api_pb2.STATUS_FAILURE, "interrupted": api_pb2.STATUS_FAILURE,
                                        }.get(status, api_pb2.STATUS_UNKNOWN)
        data.session_end_info.end_time_secs = time.time()
        plugin_data.content = data.SerializeToString()
        self.experiment._get_file_writer().add_summary(end)

    def _write_hparams_yaml(self) -> None:
        import yaml

        path = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        plain = _yaml_plain(self.hparams)
        atomic_write_text(path, lambda f: yaml.safe_dump(plain, f, sort_keys=False))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_experiment"] = None  # a SummaryWriter holds threads and open files; rebuilt on first use
        state["_pending"] = list(self._pending)
        return state


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ModuleNotFoundError(_MISSING, name="tensorboard") from None
    return SummaryWriter


def _summary_hparams_fn() -> Any:
    """``hparams(hparam_dict, metric_dict)`` of the same package as the writer, so the protos match."""
    if _summary_writer_class().__module__.startswith("tensorboardX"):
        from tensorboardX.summary import hparams
    else:
        from torch.utils.tensorboard.summary import hparams
    return hparams


_PUSH_SECS = 2.0


def _scalar(key: str, value: Any) -> float:
    """A logged value as the float TensorBoard stores; a clear error for anything that is not one number."""
    try:
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, str):
            raise TypeError("a string")
        return float(number)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"TensorBoardLogger.log_metrics got {key}={value!r} ({type(value).__name__}); "
                         "TensorBoard scalars are numbers or 0-d tensors. Log a number, or a dict of "
                         "numbers for a group of curves.") from error


def _tensorboard_hparam(value: Any) -> Any:
    """What the HParams tab accepts: numbers, strings, bools; a one-element tensor as its number; else ``str``."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return str(value)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``"outer/inner"`` keys (TensorBoard's and MLflow's flat hyperparameters)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, prefix=f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
