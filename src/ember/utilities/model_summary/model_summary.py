"""The model summary as an object: ``ModelSummary(model, max_depth)``, printed as the table the
``ModelSummary`` callback shows at the start of ``fit``, with the numbers as properties."""
from __future__ import annotations

from typing import Any

from torch import nn

from ember.callbacks.model_summary import _count, _format, _human_count, _shape, summary_data


class LayerSummary:
    """One row of the summary: a submodule, its type, parameter count and mode."""

    def __init__(self, module: nn.Module, in_size: str = "?", out_size: str = "?") -> None:
        self._module = module
        self.in_size = in_size
        self.out_size = out_size

    @property
    def layer_type(self) -> str:
        return type(self._module).__name__

    @property
    def num_parameters(self) -> int:
        return _count(self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


class ModelSummary:
    """The summary of ``model`` down to ``max_depth`` (-1: every level; 0: totals only).

    With ``model.example_input_array`` set, one forward pass fills ``in_sizes`` and ``out_sizes`` (as text,
    e.g. ``"[4, 32]"``; ``"?"`` for a layer the pass did not reach).

    >>> import torch
    >>> summary = ModelSummary(torch.nn.Sequential(torch.nn.Linear(3, 4)), max_depth=1)
    >>> summary.total_parameters, summary.layer_types
    (16, ['Linear'])
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        self._model = model
        self._max_depth = max_depth
        self._columns, self._totals = summary_data(model, max_depth)
        self._layers = [(name, model.get_submodule(name)) for name in self._columns["Name"]]

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def named_modules(self) -> list:
        return list(self._layers)

    @property
    def layer_names(self) -> list:
        return [name for name, _ in self._layers]

    @property
    def layer_types(self) -> list:
        return [type(m).__name__ for _, m in self._layers]

    @property
    def in_sizes(self) -> list:
        return self._columns.get("In sizes", ["?"] * len(self._layers))

    @property
    def out_sizes(self) -> list:
        return self._columns.get("Out sizes", ["?"] * len(self._layers))

    @property
    def param_nums(self) -> list:
        return [_count(m.parameters()) for _, m in self._layers]

    @property
    def training_modes(self) -> list:
        return [m.training for _, m in self._layers]

    @property
    def total_training_modes(self) -> dict:
        modes = [m.training for m in self._model.modules()]
        return {"train": sum(modes), "eval": len(modes) - sum(modes)}

    @property
    def total_parameters(self) -> int:
        return _count(self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return _count(p for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """Estimated size of the parameters in MB."""
        return float(next(value for value, label in self._totals if label.startswith("Total estimated")))

    def summarize(self) -> dict:
        """``{layer name: LayerSummary}``."""
        return {name: LayerSummary(m, i, o) for (name, m), i, o in zip(self._layers, self.in_sizes, self.out_sizes)}

    def __str__(self) -> str:
        return _format(self._columns, self._totals)

    def __repr__(self) -> str:
        return str(self)


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> ModelSummary:
    """The ``ModelSummary`` of ``lightning_module``; ``print`` it for the table."""
    return ModelSummary(lightning_module, max_depth=max_depth)


def get_human_readable_count(number: int) -> str:
    """``123``, ``1.2 K``, ``3.4 M``, ``1.2 B``, ``7.0 T``."""
    return _human_count(number)


def get_formatted_model_size(total_model_size: float) -> str:
    return f"{total_model_size:,.3f}"


def parse_batch_shape(batch: Any) -> Any:
    """The shape of a tensor as a list, nested for lists and tuples of tensors, ``"?"`` when unknown."""
    return _shape(batch)


__all__ = ["LayerSummary", "ModelSummary", "get_formatted_model_size", "get_human_readable_count",
           "parse_batch_shape", "summarize"]
