"""``lightning.pytorch.utilities.parsing``: AttributeDict and the picklability check."""
from __future__ import annotations

import pickle
from typing import Any

from ember._utils import AttributeDict


def is_picklable(obj: object) -> bool:
    """Whether ``pickle.dumps(obj)`` works."""
    try:
        pickle.dumps(obj)
        return True
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False


def lightning_hasattr(model: Any, attribute: str) -> bool:
    """Whether ``attribute`` is on the model, in its ``hparams``, or on its datamodule (where the tuner looks)."""
    return _holder(model, attribute) is not None


def lightning_getattr(model: Any, attribute: str) -> Any:
    holder = _holder(model, attribute)
    if holder is None:
        raise AttributeError(f"{attribute!r} is neither an attribute of the model, nor in model.hparams, nor an "
                             "attribute of the datamodule.")
    return holder[attribute] if isinstance(holder, dict) else getattr(holder, attribute)


def lightning_setattr(model: Any, attribute: str, value: Any) -> None:
    holder = _holder(model, attribute)
    if holder is None:
        raise AttributeError(f"{attribute!r} is neither an attribute of the model, nor in model.hparams, nor an "
                             "attribute of the datamodule.")
    if isinstance(holder, dict):
        holder[attribute] = value
    else:
        setattr(holder, attribute, value)


def _holder(model: Any, attribute: str) -> Any:
    if attribute in model.__dict__ or hasattr(type(model), attribute):
        return model
    hparams = getattr(model, "hparams", None)
    if isinstance(hparams, dict) and attribute in hparams:
        return hparams
    trainer = getattr(model, "_trainer", None) or model.__dict__.get("trainer")
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and hasattr(datamodule, attribute):
        return datamodule
    return None


__all__ = ["AttributeDict", "is_picklable", "lightning_getattr", "lightning_hasattr", "lightning_setattr"]
