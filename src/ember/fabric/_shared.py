"""The module ``__getattr__`` of Fabric's modules that stand for the Trainer's (``ember.fabric.strategies`` holds
``ember.strategies``' objects, and so on): a name of the shared module, or one of its submodules."""
import importlib
from typing import Any, Callable


def attributes_of(module_name: str, shared_name: str) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        shared = importlib.import_module(shared_name)
        if hasattr(shared, name):  # also the names the shared module loads lazily (FSDPStrategy)
            return getattr(shared, name)
        try:
            return importlib.import_module(f"{shared_name}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}") from None

    return __getattr__
