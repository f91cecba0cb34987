"""``lightning.pytorch.utilities.imports``: whether optional packages are installed (checked without importing
them)."""
from __future__ import annotations

from importlib.util import find_spec


def package_available(name: str) -> bool:
    """True when ``name`` can be imported (found on the path; not imported here)."""
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_OMEGACONF_AVAILABLE = package_available("omegaconf")
_TORCHVISION_AVAILABLE = package_available("torchvision")
_RICH_AVAILABLE = package_available("rich")
_TORCHMETRICS_AVAILABLE = package_available("torchmetrics")
_MATPLOTLIB_AVAILABLE = package_available("matplotlib")
_TENSORBOARD_AVAILABLE = package_available("tensorboard")
_TENSORBOARDX_AVAILABLE = package_available("tensorboardX")
_ONNX_AVAILABLE = package_available("onnx")

__all__ = ["package_available"]
