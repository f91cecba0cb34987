"""``lightning.pytorch.core.saving``: hyperparameters to and from a YAML file (``hparams.yaml``).

The file is the one the loggers write: plain data, with each object as ember's description of it (see
``ember/_hparams.py``), so it reads back with ``yaml.safe_load`` and ``Model.load_from_checkpoint(path,
hparams_file=...)`` takes it.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Union

from ember.utilities.rank_zero import rank_zero_warn


def load_hparams_from_yaml(config_yaml: Union[str, os.PathLike], use_omegaconf: bool = True) -> dict:
    """The dict in ``config_yaml`` (read with ``yaml.safe_load``: plain data, descriptions stay dicts);
    ``{}`` with a warning when the file is missing.

    ``use_omegaconf`` is accepted for Lightning's signature; ember always returns plain Python data.
    """
    if not os.path.isfile(config_yaml):
        rank_zero_warn(f"Missing hyperparameters file {os.fspath(config_yaml)!r}: no hyperparameters loaded.")
        return {}
    from ember._hparams import read_hparams_yaml

    return read_hparams_yaml(config_yaml, f"load_hparams_from_yaml: {os.fspath(config_yaml)!r}")


def save_hparams_to_yaml(config_yaml: Union[str, os.PathLike], hparams: Any, use_omegaconf: bool = True) -> None:
    """Write ``hparams`` (a dict or an argparse Namespace) to ``config_yaml`` as the loggers write
    ``hparams.yaml``: plain data as it is, each object as its description (a class, function or partial: its
    import path and plain arguments; an object the CLI built: its config). Written atomically."""
    import yaml

    from ember._hparams import hparams_for_yaml

    folder = os.path.dirname(os.fspath(config_yaml)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_hparams_to_yaml: the folder {folder!r} does not exist; create it first.")
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    if not isinstance(hparams, dict):
        raise TypeError(f"save_hparams_to_yaml expects a dict or argparse.Namespace, got {type(hparams).__name__}.")
    text = yaml.safe_dump(hparams_for_yaml(hparams), sort_keys=False)
    tmp = f"{os.fspath(config_yaml)}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, config_yaml)  # never a half-written file under the final name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


__all__ = ["load_hparams_from_yaml", "save_hparams_to_yaml"]
