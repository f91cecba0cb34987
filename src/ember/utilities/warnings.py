"""``lightning.pytorch.utilities.warnings``: ``PossibleUserWarning`` and the switch that silences it."""
from __future__ import annotations

import warnings


class PossibleUserWarning(UserWarning):
    """A warning about something that may be intended (few batches, no validation loader...)."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore ``PossibleUserWarning``s (from ``module`` only, when given), as Lightning's function does."""
    warnings.filterwarnings("ignore", module=module, category=PossibleUserWarning)


__all__ = ["PossibleUserWarning", "disable_possible_user_warnings"]
