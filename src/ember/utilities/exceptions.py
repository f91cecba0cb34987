"""``lightning.pytorch.utilities.exceptions``: the exceptions programs catch by name."""
from __future__ import annotations


class MisconfigurationException(ValueError):
    """An argument or combination of arguments that cannot work. ember mostly raises ``ValueError`` or
    ``TypeError`` for these; this class (a ``ValueError``) exists so that ``except MisconfigurationException``
    in ported code keeps its meaning where ember raises it (ModelPruning)."""


class SIGTERMException(SystemExit):
    """Lightning raises this when a run receives SIGTERM. ember stops a run on SIGTERM after saving
    ``last.ckpt`` and raises ``SystemExit(128 + signal)`` (see ``ember.trainer.signals``)."""


__all__ = ["MisconfigurationException", "SIGTERMException"]
