"""CSVLogger: metrics in ``metrics.csv`` and hyperparameters in ``hparams.yaml``, readable anywhere."""
from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping
from typing import Any, Optional, TextIO, Union

from ember._io import atomic_write_text, claim_numbered_folder, next_number
from ember.loggers.logger import Logger, _params_to_dict, rank_zero_experiment
from ember.utilities.rank_zero import rank_zero_only


class _VersionedLogger(Logger):
    """A logger that writes under ``{save_dir}/{name}/version_{n}`` (CSV, TensorBoard); subclasses set
    ``_save_dir``, ``_name`` (may be "") and ``_version`` (None: the next free number, claimed on first access).

    Claiming creates the ``version_{n}`` folder with ``os.mkdir`` on global rank 0, so two runs started at the same
    moment in one folder get two versions; the other ranks only compute the number, and the Trainer gives them
    rank 0's (``loggers.logger.agree_on_logger_versions``). A version given by the user is used as it is.
    """

    _save_dir: str
    _name: str
    _version: Optional[Union[int, str]]

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> Union[int, str]:
        """The version, fixed on first access: the next free ``version_{n}`` unless one was given. On global rank 0
        the first access creates that folder (atomically: a run started at the same moment takes the next number);
        other ranks create nothing and are given rank 0's number by the Trainer."""
        if self._version is None:
            if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
                try:
                    self._version = claim_numbered_folder(self._versions_dir, "version_")
                except OSError as error:
                    raise type(error)(error.errno, (
                        f"{type(self).__name__} could not create a version_N folder in {self._versions_dir} "
                        f"({error.strerror}: {error.filename}); choose a save_dir (and name) where folders can be "
                        "created, or pass version= to use an existing folder.")) from error
            else:
                self._version = next_number(self._versions_dir, "version_")
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return self._versions_dir

    @property
    def _versions_dir(self) -> str:  # where the version_{n} folders are (Fabric's loggers name root_dir otherwise)
        return os.path.join(self._save_dir, self._name) if self._name else self._save_dir

    @property
    def log_dir(self) -> str:
        version = self.version
        return os.path.join(self._versions_dir, version if isinstance(version, str) else f"version_{version}")


class CSVLogger(_VersionedLogger):
    """Write ``{save_dir}/{name}/version_{n}/metrics.csv`` and ``hparams.yaml``.

    Each ``log_metrics`` call is one row; the columns are every key seen so far, sorted, with
    ``step`` among them, and a cell is empty when that row has no value for the column. Rows
    are buffered and written every ``flush_logs_every_n_steps`` rows and on ``save()``; the
    file is appended to, and rewritten (atomically) only when a new column appears.

    ``version=None`` takes the next free ``version_{n}`` when first needed, creating its folder at
    once so that a run started at the same moment in the same folder takes another number; a given
    ``int`` or ``str`` version is used as the folder name. A folder whose ``metrics.csv`` already
    exists is continued. Files get the permissions of a plain ``open()`` (``0644`` under umask ``022``).

    Under several processes only global rank 0 writes; ``experiment`` is a ``DummyExperiment`` elsewhere.

    >>> import csv, os, tempfile
    >>> logger = CSVLogger(tempfile.mkdtemp(), name="demo")
    >>> logger.log_metrics({"loss": 0.5}, step=0)
    >>> logger.log_metrics({"loss": 0.25, "acc": 0.9}, step=1)
    >>> logger.save()
    >>> with open(os.path.join(logger.log_dir, "metrics.csv")) as f:
    ...     list(csv.DictReader(f))
    [{'acc': '', 'loss': '0.5', 'step': '0'}, {'acc': '0.9', 'loss': '0.25', 'step': '1'}]
    """

    def __init__(self, save_dir: Union[str, os.PathLike], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, prefix: str = "",
                 flush_logs_every_n_steps: int = 100) -> None:
        if flush_logs_every_n_steps < 1:
            raise ValueError(f"CSVLogger(flush_logs_every_n_steps={flush_logs_every_n_steps}): it must be at least "
                             "1 (write every row).")
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._experiment: Optional[_CSVWriter] = None

    @property
    @rank_zero_experiment
    def experiment(self) -> _CSVWriter:
        """The writer that owns the files; creating it creates ``log_dir`` (on global rank 0 only)."""
        if self._experiment is None:
            self._experiment = _CSVWriter(self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Buffer one row. Values are numbers (0-d tensors are read with ``.item()``)."""
        writer = self.experiment
        if self._prefix:
            metrics = {f"{self._prefix}-{k}": v for k, v in metrics.items()}
        writer.log_metrics(metrics, step)
        if len(writer.metrics) >= self._flush_every:
            writer.save()

    @rank_zero_only
    def log_hyperparams(self, params: Union[Mapping[str, Any], argparse.Namespace, None] = None,
                        *args: Any, **kwargs: Any) -> None:
        """Merge ``params`` into ``hparams.yaml`` and write it now."""
        writer = self.experiment
        writer.hparams.update(_params_to_dict(params))
        writer.save_hparams()

    @rank_zero_only
    def save(self) -> None:
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:  # a logger that never logged leaves no empty folders behind
            self.save()


class _CSVWriter:
    """The files of one CSVLogger version: buffered metric rows and the hyperparameters.

    ``metrics`` holds the rows not yet written; ``hparams`` everything logged so far.
    """

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, "metrics.csv")
        self.hparams_file_path = os.path.join(log_dir, "hparams.yaml")
        self.metrics: list[dict[str, Any]] = []
        self.hparams: dict[str, Any] = {}
        self._columns = _read_header(self.metrics_file_path)  # None until the file has a header
        self._rows_logged = 0
        os.makedirs(log_dir, exist_ok=True)

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row["step"] = self._rows_logged if step is None else step
        self.metrics.append(row)
        self._rows_logged += 1

    def save(self) -> None:
        """Write the buffered rows and ``hparams.yaml``."""
        self.save_hparams()
        if not self.metrics:
            return
        rows, self.metrics = self.metrics, []
        keys = {k for row in rows for k in row}
        if self._columns is not None and keys.issubset(self._columns):
            with open(self.metrics_file_path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self._columns, restval="").writerows(rows)
            return
        # A new column: rewrite the whole file under the new header. The old rows are read back
        # from disk, so memory stays flat however long the run.
        columns = sorted(keys.union(self._columns or ()))

        def write(f: TextIO) -> None:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            if self._columns is not None:
                with open(self.metrics_file_path, newline="", encoding="utf-8") as old:
                    writer.writerows(csv.DictReader(old))
            writer.writerows(rows)

        atomic_write_text(self.metrics_file_path, write)
        self._columns = columns

    def save_hparams(self) -> None:
        import yaml  # only loaded when a CSVLogger writes

        plain = _yaml_plain(self.hparams)
        atomic_write_text(self.hparams_file_path, lambda f: yaml.safe_dump(plain, f, sort_keys=False))


def _read_header(path: str) -> Optional[list[str]]:
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None)


def _yaml_plain(params: Any) -> Any:
    """Hyperparameters as data ``yaml.safe_dump`` writes and ``yaml.safe_load`` reads: tensors as lists, and an
    object (a class, a ``functools.partial``, a module...) as a readable description of plain data, e.g.
    ``{_ember_object_: partial, target: torch.optim.adam.Adam, args: [], kwargs: {lr: 0.001}}``."""
    from ember._hparams import hparams_for_yaml

    return hparams_for_yaml(params)
