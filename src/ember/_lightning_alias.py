"""``ember run``: run an unmodified Lightning program on ember by answering its Lightning imports with ember.

``ember run train.py --lr 0.1`` (or ``python -m ember run train.py ...``) puts one import hook first in
``sys.meta_path``, so it wins even where Lightning is installed, then runs ``train.py`` as ``__main__``
with ``sys.argv == ["train.py", "--lr", "0.1"]``, exactly as ``python train.py --lr 0.1`` would. The hook
answers these imports:

- ``pytorch_lightning`` and ``pytorch_lightning.X.Y`` get ``ember`` and ``ember.X.Y``;
- ``lightning.pytorch`` and ``lightning.pytorch.X.Y`` get the same;
- ``lightning`` gets ember's names (``L.LightningModule``, ``L.Trainer``, ``L.seed_everything``, ...);
- ``lightning.fabric...`` and ``lightning_fabric...`` get ``ember.fabric...`` (``L.Fabric`` is ``ember.Fabric``);
  other parts of the ``lightning`` package (``lightning.app``) get a clear error.

The mapping is generic: any ``ember.X.Y`` module answers ``pytorch_lightning.X.Y``. A Lightning module or
name that ember lacks raises an error naming the Lightning name and pointing to docs/migration.md, where it
is asked for: ``import``, ``from ... import`` and attribute access (``pl.Foo``) alike.

Each Lightning name is a small stand-in module whose attributes are read from the ember module it stands
for (the same objects: ``pl.Trainer is ember.Trainer``), so ember's own modules keep their names and specs.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import types
from typing import Optional, Sequence

__all__ = ["LightningNameError", "install", "installed", "relaunch_command", "run_module", "run_path"]

# Lightning package prefix -> the ember package that answers it (checked in this order)
_PREFIXES = (
    ("pytorch_lightning", "ember"),
    ("lightning.pytorch", "ember"),
    # Fabric's parts shared with the Trainer: the same ember packages (``lightning.fabric.utilities.seed`` is
    # ``ember.utilities.seed``), so a class is one object whichever name a program imports it by
    *((f"{root}.{part}", f"ember.{part}") for root in ("lightning.fabric", "lightning_fabric")
      for part in ("strategies", "accelerators", "plugins", "utilities")),
    ("lightning.fabric", "ember.fabric"),
    ("lightning_fabric", "ember.fabric"),
)
_ROOTS = ("pytorch_lightning", "lightning", "lightning_fabric")
_HELP = ("docs/migration.md lists ember's names and each known difference from Lightning: change this use, "
         "or run this program with Lightning")


class LightningNameError(ImportError):
    """A Lightning module or name that ember does not have was imported under ``ember run``."""


def ember_name(lightning_name: str) -> Optional[str]:
    """The ember module that answers a Lightning module name; None when the name is not Lightning's.

    >>> ember_name("pytorch_lightning.callbacks"), ember_name("lightning.pytorch"), ember_name("torch")
    ('ember.callbacks', 'ember', None)
    """
    if lightning_name == "lightning":
        return "ember"
    for prefix, target in _PREFIXES:
        if lightning_name == prefix or lightning_name.startswith(prefix + "."):
            return target + lightning_name[len(prefix):]
    return None


def _missing(lightning_name: str, looked_for: Optional[str], detail: str = "") -> str:
    found = (f"ember has no `{looked_for}`" if looked_for else "ember stands in for lightning.pytorch and "
             "lightning.fabric, not this part of the lightning package") + (f" ({detail})" if detail else "")
    return (f"`{lightning_name}` is a Lightning name that ember does not have: {found}. "
            f"This program runs on ember through `ember run`, which answers Lightning imports with ember's "
            f"modules. {_HELP}.")


class _LightningModule(types.ModuleType):
    """Stands in for one Lightning module: attributes come from the ember module it names."""

    def __init__(self, name: str, target: types.ModuleType) -> None:
        super().__init__(name, target.__doc__)
        self.__dict__["__ember_module__"] = target

    def __getattr__(self, attr: str):
        target = self.__dict__["__ember_module__"]
        try:
            value = getattr(target, attr)
        except AttributeError as e:
            if attr.startswith("__"):  # probes such as __wrapped__ or __all__: plain answers, no advice
                raise
            if self.__name__ == "lightning" and attr in ("pytorch", "fabric"):
                return importlib.import_module(f"lightning.{attr}")
            if hasattr(target, "__path__") and importlib.util.find_spec(f"{target.__name__}.{attr}") is not None:
                return importlib.import_module(f"{self.__name__}.{attr}")  # a submodule not imported yet (Lightning's
                # packages import theirs, so `L.fabric.strategies.fsdp.FSDPStrategy` works there)
            detail = "" if "has no attribute" in str(e) else str(e)
            raise AttributeError(_missing(f"{self.__name__}.{attr}", f"{target.__name__}.{attr}", detail)) from None
        if isinstance(value, types.ModuleType) and value.__name__ == f"{target.__name__}.{attr}":
            return importlib.import_module(f"{self.__name__}.{attr}")  # submodules keep their Lightning names
        return value

    def __dir__(self) -> list:
        return sorted(set(dir(self.__dict__["__ember_module__"])) | set(self.__dict__))

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} (ember run: answered by {self.__dict__['__ember_module__'].__name__!r})>"


class _LightningFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The import hook: finds every Lightning module name and loads its ember stand-in."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if ember_name(fullname) is None and not fullname.startswith("lightning."):  # lightning.app etc: refused
            return None
        # is_package: `from pytorch_lightning.x import Name` then asks this hook for a missing Name, so the error
        # names the Lightning name instead of Python's generic "cannot import name"
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = ember_name(spec.name)
        if target is None:
            raise LightningNameError(_missing(spec.name, None), name=spec.name)
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if not e.name or not (target == e.name or target.startswith(e.name + ".")):
                raise  # an ember module needs something that is not installed: its own message says what
            parent, _, last = target.rpartition(".")
            detail = ""
            if parent and parent in sys.modules:  # `from pkg import Name` where ember's pkg explains Name itself
                try:
                    getattr(sys.modules[parent], last)
                except (AttributeError, ImportError) as missing:
                    detail = "" if "has no attribute" in str(missing) else str(missing)
            raise LightningNameError(_missing(spec.name, e.name, detail), name=spec.name) from e
        return _LightningModule(spec.name, module)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the ember module was imported in create_module."""


_finder = _LightningFinder()
_started_as: list = []  # what `ember run` ran: [script path] or ["-m", module]


def relaunch_command() -> Optional[list]:
    """The command that starts this program again under ``ember run`` with the current ``sys.argv[1:]``, for
    launchers that re-run the program (DDP's other ranks); None when the program was not started by ``ember run``."""
    return [sys.executable, "-m", "ember", "run", *_started_as, *sys.argv[1:]] if _started_as else None


def installed() -> bool:
    """Whether Lightning imports are answered by ember in this process."""
    return _finder in sys.meta_path


def install() -> None:
    """Answer Lightning imports with ember from now on (idempotent).

    Raises RuntimeError if Lightning itself was already imported: the program would mix both.
    """
    if installed():
        return
    loaded = sorted({name.split(".")[0] for name, module in list(sys.modules.items())
                     if name.split(".")[0] in _ROOTS and not isinstance(module, _LightningModule)})
    if loaded:
        raise RuntimeError(f"ember cannot stand in for Lightning here: Lightning is already imported in this "
                           f"process ({', '.join(loaded)}). Start the program with `ember run train.py` so that "
                           "ember's import hook is in place before anything imports Lightning.")
    sys.meta_path.insert(0, _finder)


def run_path(path: str, argv: Sequence[str] = ()) -> None:
    """Run the script at ``path`` as ``python path *argv`` would, with Lightning imports answered by ember."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ember run: no script {path!r}. Usage: ember run train.py [args...] "
                                "(or ember run -m package.module [args...]).")
    install()
    _started_as[:] = [os.path.abspath(path)]
    sys.argv = [path, *argv]
    sys.path[0] = os.path.dirname(os.path.abspath(path))  # python puts the script's folder first
    runpy.run_path(path, run_name="__main__")


def run_module(name: str, argv: Sequence[str] = ()) -> None:
    """Run module ``name`` as ``python -m name *argv`` would, with Lightning imports answered by ember."""
    install()
    _started_as[:] = ["-m", name]
    sys.argv = [name, *argv]  # runpy replaces argv[0] with the module's file, as python -m does
    sys.path[0] = os.getcwd()  # python -m puts the current folder first
    runpy.run_module(name, run_name="__main__", alter_sys=True)
