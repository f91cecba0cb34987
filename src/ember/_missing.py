"""Lightning names that ember deliberately does not have: importable, failing clearly when used.

``from pytorch_lightning.strategies import DeepSpeedStrategy`` in a program that never builds one keeps
working after the port; building one raises ``NotInEmberError`` saying why and what to use instead. Every
such name is recorded in ``MISSING`` (Lightning's path -> the message), so tools such as ``ember run`` can list
the Lightning names a program touched that ember lacks.
"""
from __future__ import annotations

from typing import Any, Callable

MISSING: dict[str, str] = {}


class NotInEmberError(NotImplementedError):
    """A Lightning name that ember does not implement was used. The message says why and what to use."""


def _message(lightning_path: str, why: str, use: str) -> str:
    full = lightning_path if lightning_path.startswith("lightning") else f"pytorch_lightning.{lightning_path}"
    return f"`{full}` is not in ember: {why}; use {use}."


def missing_class(lightning_path: str, why: str, use: str) -> type:
    """A class named like Lightning's that can be imported and subclassed (so a program's class definitions
    still load), and raises ``NotInEmberError`` when constructed. ``isinstance`` checks against it are False."""
    message = _message(lightning_path, why, use)
    MISSING[lightning_path] = message

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotInEmberError(message)

    name = lightning_path.rsplit(".", 1)[-1]
    return type(name, (), {"__init__": __init__, "__doc__": message, "__module__": "ember._missing",
                           "_not_in_ember": message})


def missing_function(lightning_path: str, why: str, use: str) -> Callable[..., Any]:
    """A function named like Lightning's that raises ``NotInEmberError`` when called."""
    message = _message(lightning_path, why, use)
    MISSING[lightning_path] = message

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NotInEmberError(message)

    missing.__name__ = missing.__qualname__ = lightning_path.rsplit(".", 1)[-1]
    missing.__doc__ = message
    return missing

