"""``lightning.pytorch.utilities.parameter_tying``: find parameters shared between submodules, and re-tie them
(moving a model to some devices unties them)."""
from __future__ import annotations

from torch import nn


def find_shared_parameters(module: nn.Module) -> list:
    """Lists of the names under which one parameter appears more than once, e.g. ``[["layer.weight",
    "head.weight"]]`` for a tied embedding.

    >>> m = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
    >>> m["b"].weight = m["a"].weight
    >>> find_shared_parameters(m)
    [['a.weight', 'b.weight']]
    """
    names: dict = {}
    for sub_name, sub in module.named_modules(remove_duplicate=False):
        for name, param in sub._parameters.items():
            if param is not None:
                full = f"{sub_name}.{name}" if sub_name else name
                if full not in names.setdefault(param, []):
                    names[param].append(full)
    return [group for group in names.values() if len(group) > 1]


def set_shared_parameters(module: nn.Module, shared_params: list) -> nn.Module:
    """Make every name of each group in ``shared_params`` (as found by ``find_shared_parameters``) refer to the
    parameter of the group's first name."""
    for group in shared_params:
        first = module.get_parameter(group[0])
        for path in group[1:]:
            owner, _, name = path.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, name, first)
    return module


__all__ = ["find_shared_parameters", "set_shared_parameters"]
