"""``lightning.pytorch.core.saving``: hyperparameters to and from a YAML file (``hparams.yaml``)."""
from __future__ import annotations

import argparse
import os
from typing import Any, Union

from ember.utilities.rank_zero import rank_zero_warn


def load_hparams_from_yaml(config_yaml: Union[str, os.PathLike], use_omegaconf: bool = True) -> dict:
    """The dict in ``config_yaml`` (read with ``yaml.safe_load``); ``{}`` with a warning when the file is missing.

    ``use_omegaconf`` is accepted for Lightning's signature; ember always returns plain Python data.
    """
    if not os.path.isfile(config_yaml):
        rank_zero_warn(f"Missing hyperparameters file {os.fspath(config_yaml)!r}: no hyperparameters loaded.")
        return {}
    import yaml

    with open(config_yaml, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def save_hparams_to_yaml(config_yaml: Union[str, os.PathLike], hparams: Any, use_omegaconf: bool = True) -> None:
    """Write ``hparams`` (a dict or an argparse Namespace) to ``config_yaml``; values YAML cannot hold as plain
    data are written as their ``repr`` text, with a warning, rather than failing the save."""
    import yaml

    folder = os.path.dirname(os.fspath(config_yaml)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_hparams_to_yaml: the folder {folder!r} does not exist; create it first.")
    if isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    if not isinstance(hparams, dict):
        raise TypeError(f"save_hparams_to_yaml expects a dict or argparse.Namespace, got {type(hparams).__name__}.")
    plain = {}
    for key, value in hparams.items():
        try:
            yaml.safe_dump(value)
            plain[key] = value
        except yaml.representer.RepresenterError:
            rank_zero_warn(f"save_hparams_to_yaml: {key!r} ({type(value).__name__}) is not plain data; "
                           "written as its repr text.")
            plain[key] = repr(value)
    tmp = f"{os.fspath(config_yaml)}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(plain, f)
    os.replace(tmp, config_yaml)  # never a half-written file under the final name


__all__ = ["load_hparams_from_yaml", "save_hparams_to_yaml"]
