"""Helpers users import from ``pytorch_lightning.utilities``: rank-zero functions, ``grad_norm``, AttributeDict...

Submodules follow Lightning's paths: ``types``, ``model_summary``, ``seed``, ``memory``, ``data``, ``exceptions``,
``parsing``, ``enums``, ``warnings``, ``imports``, ``parameter_tying``, ``model_helpers``, ``rank_zero``.
"""
import importlib

# every ember module imports ember.utilities.rank_zero, which runs this file first: keep it light. The other
# names load from their modules on first use.
from ember.utilities.rank_zero import (rank_zero_debug, rank_zero_deprecation, rank_zero_info, rank_zero_only,
                                       rank_zero_warn)

_LAZY = {
    "AttributeDict": "ember._utils",
    "move_data_to_device": "ember._utils",
    "measure_flops": "ember.callbacks.throughput_monitor",
    "CombinedLoader": "ember.utilities.combined_loader",
    "GradClipAlgorithmType": "ember.utilities.enums",
    "LightningEnum": "ember.utilities.enums",
    "grad_norm": "ember.utilities.grads",
    "find_shared_parameters": "ember.utilities.parameter_tying",
    "set_shared_parameters": "ember.utilities.parameter_tying",
    "is_picklable": "ember.utilities.parsing",
    "disable_possible_user_warnings": "ember.utilities.warnings",
    "is_shared_filesystem": "ember.utilities._distributed",
    "suggested_max_num_workers": "ember.utilities._distributed",
}
_EPSILON = {"FLOAT16_EPSILON": "float16", "FLOAT32_EPSILON": "float32", "FLOAT64_EPSILON": "float64"}

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "disable_possible_user_warnings",
    "find_shared_parameters",
    "grad_norm",
    "GradClipAlgorithmType",
    "is_picklable",
    "is_shared_filesystem",
    "LightningEnum",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_debug",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "set_shared_parameters",
    "suggested_max_num_workers",
]



def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _EPSILON:
        import torch

        value = torch.finfo(getattr(torch, _EPSILON[name])).eps
    else:
        raise AttributeError(f"module 'ember.utilities' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value
