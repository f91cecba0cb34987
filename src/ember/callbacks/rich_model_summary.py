"""RichModelSummary: ``ModelSummary``'s table drawn with ``rich`` (an optional dependency: ``pip install rich``)."""
from __future__ import annotations

from typing import Any, Optional

from torch import nn

from ember.callbacks.model_summary import ModelSummary, summary_data
from ember.callbacks.rich_progress import _require_rich


class RichModelSummary(ModelSummary):
    """Print the model summary as a rich table at the start of ``fit`` (on global rank 0 only).

    Args:
        max_depth: how deep to list submodules: 1 lists the children, -1 every level, 0 prints nothing.
        header_style: the rich style of the table's header row.
        console_kwargs: arguments of the ``rich.console.Console`` it prints on (e.g. ``record=True``).

    >>> import ember
    >>> trainer = ember.Trainer(callbacks=[RichModelSummary(max_depth=2)])  # doctest: +SKIP
    """

    def __init__(self, max_depth: int = 1, header_style: str = "bold magenta",
                 console_kwargs: Optional[dict[str, Any]] = None) -> None:
        _require_rich("RichModelSummary")
        super().__init__(max_depth)
        self.header_style = header_style
        self._console_kwargs = dict(console_kwargs or {})
        self.console: Any = None  # the console of the last summary printed

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._max_depth == 0:
            return
        with trainer.precision_plugin.forward_context():  # the sizes forward runs in the model's training precision
            data = summary_data(pl_module, self._max_depth)  # on every rank, as ModelSummary
        if not trainer.is_global_zero:
            return
        from rich.console import Console

        self.console = Console(**self._console_kwargs)
        for r in self._renderables(*data):
            self.console.print(r)

    def render(self, module: nn.Module) -> list:
        """The rich renderables: the table of submodules, then the totals."""
        return self._renderables(*summary_data(module, self._max_depth))

    def _renderables(self, columns: dict, totals: list) -> list:
        from rich.table import Table
        from rich.text import Text

        table = Table(header_style=self.header_style)
        for header in columns:
            table.add_column(header, justify="right" if header == "Params" else "left",
                             style="dim" if header == "" else None)
        for row in zip(*columns.values()):
            table.add_row(*row)
        grid = Table.grid()
        for value, label in totals:
            grid.add_row(Text.assemble((label, "bold"), f": {value}"))
        return [table, grid]
