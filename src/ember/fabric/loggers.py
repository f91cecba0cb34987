"""``lightning.fabric.loggers``: the Trainer's CSV and TensorBoard loggers, constructed as Fabric's are.

Fabric's loggers take ``root_dir`` where the Trainer's take ``save_dir``; both write under
``{root_dir}/{name}/version_{n}``, so ``Fabric(loggers=CSVLogger("logs"))`` and ``Trainer(logger=CSVLogger("logs"))``
fill the same kind of folder. ``logger.root_dir`` is the folder given, as in Lightning's Fabric.

>>> import tempfile
>>> logger = CSVLogger(root_dir=tempfile.mkdtemp(), name="demo")
>>> logger.log_metrics({"loss": 0.5})   # no step: the row number, as Fabric's CSVLogger does
>>> logger.save()
>>> logger.log_dir.endswith("demo/version_0"), logger.root_dir == logger.save_dir
(True, True)
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

from ember.loggers import csv_logs as _csv
from ember.loggers.logger import Logger

__all__ = ["CSVLogger", "Logger", "TensorBoardLogger"]


class CSVLogger(_csv.CSVLogger):
    """``metrics.csv`` (and ``hparams.yaml``) under ``{root_dir}/{name}/version_{n}``."""

    def __init__(self, root_dir: Union[str, os.PathLike], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, prefix: str = "",
                 flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(root_dir, name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    def root_dir(self) -> str:
        return self._save_dir


def __getattr__(name: str) -> Any:
    if name == "TensorBoardLogger":  # imports tensorboard's writer: only when asked for
        from ember.loggers.tensorboard import TensorBoardLogger as _Trainers

        class TensorBoardLogger(_Trainers):
            """TensorBoard event files under ``{root_dir}/{name}/version_{n}[/{sub_dir}]``."""

            def __init__(self, root_dir: Union[str, os.PathLike], name: Optional[str] = "lightning_logs",
                         version: Optional[Union[int, str]] = None, default_hp_metric: bool = True,
                         prefix: str = "", sub_dir: Optional[Union[str, os.PathLike]] = None, **kwargs: Any) -> None:
                super().__init__(root_dir, name=name, version=version, default_hp_metric=default_hp_metric,
                                 prefix=prefix, sub_dir=sub_dir, **kwargs)

            @property
            def root_dir(self) -> str:
                return self._save_dir

        TensorBoardLogger.__module__ = __name__
        globals()["TensorBoardLogger"] = TensorBoardLogger
        return TensorBoardLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
