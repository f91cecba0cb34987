"""``lightning.pytorch.utilities.model_helpers``: whether a hook is overridden; a torchvision model by name."""
from __future__ import annotations

from typing import Any, Optional

from ember._utils import is_overridden as _is_overridden


def is_overridden(method_name: str, instance: Optional[object] = None, parent: Optional[type] = None) -> bool:
    """Whether ``instance``'s class overrides ``method_name`` of ``parent`` (by default LightningModule,
    LightningDataModule or Callback, whichever ``instance`` is)."""
    if instance is None:
        return False
    if parent is None:
        from ember.callbacks.callback import Callback
        from ember.datamodule import LightningDataModule
        from ember.module import LightningModule

        parent = next((base for base in (LightningModule, LightningDataModule, Callback) if isinstance(instance, base)),
                      None)
        if parent is None:
            raise ValueError(f"is_overridden({method_name!r}, ...) needs `parent=` for a {type(instance).__name__}.")
    return _is_overridden(method_name, instance, parent)



def get_torchvision_model(model_name: str, **kwargs: Any) -> Any:
    """``torchvision.models.get_model(model_name, **kwargs)``, as Lightning's helper (``weights=`` as there)."""
    try:
        from torchvision import models
    except ImportError as e:
        raise ModuleNotFoundError(f"get_torchvision_model({model_name!r}) needs torchvision: "
                                  "`pip install torchvision`.") from e
    return models.get_model(model_name, **kwargs)


__all__ = ["get_torchvision_model", "is_overridden"]
