"""ModelSummary: the table of submodules and parameter counts printed when ``fit`` starts."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ember._utils import move_data_to_device
from ember.callbacks.callback import Callback

_UNKNOWN_SIZE = "?"


class ModelSummary(Callback):
    """Print ``summarize(pl_module, max_depth)`` at the start of ``fit`` (on global rank 0 only).

    As in Lightning, every rank computes the summary (with ``example_input_array`` that is a forward pass,
    which a sharded model can only run on all ranks together) and rank 0 alone prints it.

    Args:
        max_depth: how deep to list submodules: 1 lists the children, -1 every level, 0 prints nothing.

    >>> import ember
    >>> trainer = ember.Trainer(callbacks=[ModelSummary(max_depth=2)])  # doctest: +SKIP
    """

    def __init__(self, max_depth: int = 1) -> None:
        _check_depth(max_depth)
        self._max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._max_depth == 0:
            return
        with trainer.precision_plugin.forward_context():  # the sizes forward runs in the model's training precision
            columns, totals = summary_data(pl_module, self._max_depth)  # on every rank: see the class docstring
        if trainer.is_global_zero:
            print(_format(columns, totals))


def summarize(module: nn.Module, max_depth: int = 1) -> str:
    """The summary table of ``module``: one row per submodule down to ``max_depth``, then totals.

    When ``module.example_input_array`` is set, one forward pass (eval mode, no gradients)
    fills the ``In sizes`` and ``Out sizes`` columns; each module's train/eval mode is restored.

    >>> import torch
    >>> print(summarize(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())))
      | Name | Type   | Params | Mode
    ----------------------------------
    0 | 0    | Linear | 16     | train
    1 | 1    | ReLU   | 0      | train
    ----------------------------------
    16        Trainable params
    0         Non-trainable params
    16        Total params
    0.000     Total estimated model params size (MB)
    3         Modules in train mode
    0         Modules in eval mode
    """
    return _format(*summary_data(module, max_depth))


def _format(columns: dict[str, list[str]], totals: list[tuple[str, str]]) -> str:
    return "\n".join(_table(columns) + [f"{value:<9} {label}" for value, label in totals])


def summary_data(module: nn.Module, max_depth: int = 1) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The data of ``ember.callbacks.model_summary.summarize``: its columns, and ``(value, label)`` totals."""
    _check_depth(max_depth)
    rows = [(name, m) for name, m in module.named_modules()
            if name and (max_depth == -1 or name.count(".") < max_depth)]
    columns: dict[str, list[str]] = {
        "": [str(i) for i in range(len(rows))],
        "Name": [name for name, _ in rows],
        "Type": [type(m).__name__ for _, m in rows],
        "Params": [_human_count(_count(m.parameters())) for _, m in rows],
        "Mode": ["train" if m.training else "eval" for _, m in rows],
    }
    example = getattr(module, "example_input_array", None)
    if example is not None and rows:
        columns["In sizes"], columns["Out sizes"] = _record_sizes(module, [m for _, m in rows], example)
    params = list(module.parameters())
    trainable = _count(p for p in params if p.requires_grad)
    total = _count(params)
    size_mb = sum(p.numel() * p.element_size() for p in params if not _uninitialized(p)) / 1e6
    modes = [m.training for m in module.modules()]
    return columns, [
        (_human_count(trainable), "Trainable params"),
        (_human_count(total - trainable), "Non-trainable params"),
        (_human_count(total), "Total params"),
        (f"{size_mb:.3f}", "Total estimated model params size (MB)"),
        (str(sum(modes)), "Modules in train mode"),
        (str(len(modes) - sum(modes)), "Modules in eval mode"),
    ]


def _check_depth(max_depth: int) -> None:
    if not isinstance(max_depth, int) or max_depth < -1:
        raise ValueError(f"ModelSummary(max_depth={max_depth!r}): use -1 (every level), 0 (no summary) or a "
                         "positive depth.")


def _table(columns: dict[str, list[str]]) -> list[str]:
    widths = [max([len(header)] + [len(v) for v in values]) for header, values in columns.items()]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
    body = [line(list(cells)) for cells in zip(*columns.values())]
    return [line(list(columns)), rule, *body, rule]


def _record_sizes(module: nn.Module, targets: list[nn.Module], example: Any) -> tuple[list[str], list[str]]:
    """Run one forward on ``example`` and record each target's input and output shapes."""
    sizes: dict[nn.Module, tuple[str, str]] = {}

    def record(m: nn.Module, args: tuple, output: Any) -> None:
        sizes.setdefault(m, (_shape(args[0] if len(args) == 1 else list(args)), _shape(output)))

    handles = [m.register_forward_hook(record) for m in targets]
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        example = move_data_to_device(example, next(module.parameters(), torch.empty(0)).device)
        with torch.no_grad():
            if isinstance(example, (list, tuple)):
                module(*example)
            elif isinstance(example, dict):
                module(**example)
            else:
                module(example)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    unknown = (_UNKNOWN_SIZE, _UNKNOWN_SIZE)
    return [sizes.get(m, unknown)[0] for m in targets], [sizes.get(m, unknown)[1] for m in targets]


def _shape(value: Any) -> str:
    def dims(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return list(v.shape)
        if isinstance(v, (list, tuple)):
            return [dims(x) for x in v]
        return _UNKNOWN_SIZE

    shape = dims(value)
    return str(shape) if shape != _UNKNOWN_SIZE else _UNKNOWN_SIZE


def _uninitialized(p: nn.Parameter) -> bool:
    return isinstance(p, nn.parameter.UninitializedParameter)  # a lazy module before its first forward


def _count(params: Any) -> int:
    return sum(p.numel() for p in params if not _uninitialized(p))


def _human_count(n: int) -> str:
    """``999``, ``1.2 K``, ``50.4 K``, ``101 K``, ``3.4 M``, ``1.2 B``, ``7.0 T``."""
    if n < 1000:
        return str(n)
    value = float(n)
    for unit in ("K", "M", "B", "T"):
        value /= 1000
        if value < 999.95 or unit == "T":
            break
    return f"{value:.1f} {unit}" if value < 99.95 else f"{value:.0f} {unit}"
