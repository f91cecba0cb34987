"""WandbLogger: metrics, config and checkpoints in a Weights & Biases run (offline works without network).

This module imports nothing heavy: ``wandb`` is imported when the logger first talks to its run.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ember.loggers.logger import Logger, _params_to_dict, rank_zero_experiment
from ember.loggers.mlflow import _checkpoints_to_upload  # shared helper; imports no mlflow
from ember.utilities.rank_zero import rank_zero_only

_MISSING = ("WandbLogger needs wandb, which is not installed. Install it with `pip install wandb`, or "
            "`pip install -e '.[wandb]'` in ember's source tree.")


class WandbLogger(Logger):
    """Log to a W&B run: metrics against ``trainer/global_step``, hyperparameters in the run's config,
    checkpoints as ``model`` artifacts.

    ``offline=True`` (or ``WANDB_MODE=offline``) writes the run under ``{save_dir}/wandb/offline-run-*``
    with no network or login; ``wandb sync <that folder>`` uploads it later, checkpoints included.
    ``version`` (or ``id``) continues a run with that id. ``log_model=True`` uploads ``ModelCheckpoint``'s
    files when a fit succeeds (at every save when ``save_top_k=-1``), ``"all"`` at every save. Other keyword
    arguments go to ``wandb.init`` (``entity``, ``group``, ``tags``, ``config``, ...).

    The run stays open after ``fit`` so ``trainer.test`` can log to it; ``wandb.finish()`` ends it (W&B
    also ends it when the process exits).

    Under several processes only global rank 0 starts the run and writes to it; on other ranks
    ``experiment`` is a ``DummyExperiment`` (``experiment.config.update(...)`` is a no-op there) and
    ``version`` is the id given, or None.

    >>> logger = WandbLogger(project="demo", offline=True)   # doctest: +SKIP
    >>> trainer = Trainer(logger=logger)                     # doctest: +SKIP
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, name: Optional[str] = None, save_dir: Union[str, os.PathLike] = ".",
                 version: Optional[str] = None, offline: bool = False, dir: Optional[Union[str, os.PathLike]] = None,
                 id: Optional[str] = None, anonymous: Optional[bool] = None, project: Optional[str] = None,
                 log_model: Union[bool, Literal["all"]] = False, experiment: Any = None, prefix: str = "",
                 checkpoint_name: Optional[str] = None, add_file_policy: Literal["mutable", "immutable"] = "mutable",
                 **kwargs: Any) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ModuleNotFoundError(_MISSING, name="wandb")
        if log_model not in (False, True, "all"):
            raise ValueError(f"WandbLogger(log_model={log_model!r}): use False, True (upload checkpoints when "
                             "the fit succeeds) or 'all' (upload every checkpoint when it is saved).")
        save_dir = os.fspath(save_dir) if save_dir is not None else None
        init: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": save_dir or (os.fspath(dir) if dir is not None else None),
            "id": version or id,
            "resume": "allow",
        }
        if anonymous is not None:
            init["anonymous"] = "allow" if anonymous else "never"
        if offline:
            init["mode"] = "offline"  # for this run only; the process's WANDB_MODE is left alone
        init.update(kwargs)
        self._wandb_init = init
        self._offline = offline
        self._project = init["project"]
        self._save_dir = init["dir"]
        self._name = init["name"]
        self._id = init["id"]
        self._log_model = log_model
        self._prefix = prefix
        self._checkpoint_name = checkpoint_name
        self._add_file_policy = add_file_policy
        self._experiment = experiment
        self._checkpoint_callbacks: dict[int, Any] = {}
        self._logged_checkpoints: dict[str, float] = {}  # path -> mtime when uploaded
        if experiment is not None:
            self._define_step_metric(experiment)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``wandb`` run, started on first use (or the run already in progress in this process); a
        ``DummyExperiment`` on ranks other than 0."""
        if self._experiment is None:
            import wandb

            if self._save_dir is not None:
                os.makedirs(self._save_dir, exist_ok=True)
            if wandb.run is not None:
                from ember.utilities.rank_zero import rank_zero_warn

                rank_zero_warn("WandbLogger is reusing the wandb run already in progress in this process "
                               f"({wandb.run.id}). Call `wandb.finish()` before creating the logger to start a new run.")
                self._experiment = wandb.run
            else:
                self._experiment = wandb.init(**self._wandb_init)
            self._define_step_metric(self._experiment)
        return self._experiment

    @staticmethod
    def _define_step_metric(run: Any) -> None:
        # Every metric is plotted against the trainer's step, not W&B's own count of log() calls.
        if getattr(run, "define_metric", None) is not None:
            run.define_metric("trainer/global_step")
            run.define_metric("*", step_metric="trainer/global_step", step_sync=True)

    @property
    def name(self) -> Optional[str]:
        """The project name (the folder of the default checkpoint path)."""
        return self._experiment.project if self._experiment is not None else self._project

    @property
    def version(self) -> Optional[str]:
        """The run id: the one asked for, else that of the run (started here if need be, so that
        ``ModelCheckpoint`` can name its folder after it). On ranks other than 0: the id given, or None."""
        if self._experiment is None and (self._id is not None or rank_zero_only.rank > 0):
            return self._id
        return self.experiment.id

    @property
    def save_dir(self) -> Optional[str]:
        return self._save_dir

    # --- what the Trainer calls -----------------------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Union[Mapping[str, Any], argparse.Namespace, None] = None,
                        *args: Any, **kwargs: Any) -> None:
        """Merge ``params`` into the run's config (nested dicts stay nested; a class, function or
        ``functools.partial`` as its import path, e.g. ``functools.partial(torch.optim.adam.Adam, lr=0.1)``)."""
        from ember._hparams import hparams_for_display

        params = hparams_for_display(_params_to_dict(params))
        self.experiment.config.update(params, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}" if self._prefix else k: v for k, v in metrics.items()}
        if step is not None:
            metrics["trainer/global_step"] = step
        self.experiment.log(metrics)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and getattr(checkpoint_callback, "save_top_k", 1) == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload pending checkpoints when the fit succeeded (none are uploaded from a failed one)."""
        if status != "success" or self._experiment is None:
            return
        for checkpoint_callback in self._checkpoint_callbacks.values():
            self._log_checkpoints(checkpoint_callback)

    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        import wandb

        run = self.experiment
        for path, mtime, score in _checkpoints_to_upload(checkpoint_callback, self._logged_checkpoints):
            metadata = {"score": score, "original_filename": Path(path).name,
                        "monitor": getattr(checkpoint_callback, "monitor", None),
                        "mode": getattr(checkpoint_callback, "mode", None),
                        "save_top_k": getattr(checkpoint_callback, "save_top_k", None)}
            artifact = wandb.Artifact(name=self._checkpoint_name or f"model-{run.id}", type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self._add_file_policy)
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            run.log_artifact(artifact, aliases=aliases)
            self._logged_checkpoints[path] = mtime

