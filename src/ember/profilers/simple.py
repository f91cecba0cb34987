"""``SimpleProfiler``: wall-clock time per action, as a table."""
from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Optional, Union

from ember.profilers.profiler import Profiler


class SimpleProfiler(Profiler):
    """Wall-clock time per action: mean duration, number of calls, total time and share of the run.

    Args:
        dirpath, filename: see ``Profiler``.
        extended: with False, report only the mean and total duration of each action.

    >>> p = SimpleProfiler()
    >>> with p.profile("load"):
    ...     pass
    >>> p.recorded_durations["load"][0] >= 0
    True
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None,
                 extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.extended = extended
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.start_time = time.perf_counter()

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"SimpleProfiler: attempted to start {action_name!r}, which has already started. "
                             "Stop it first, or give the nested block another name.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        begin = self.current_actions.pop(action_name, None)
        if begin is None:
            raise ValueError(f"SimpleProfiler: attempted to stop {action_name!r}, which was never started.")
        self.recorded_durations[action_name].append(end - begin)

    def summary(self) -> str:
        stats = [(name, sum(d) / len(d), len(d), sum(d)) for name, d in self.recorded_durations.items() if d]
        stats.sort(key=lambda s: s[3], reverse=True)
        total = time.perf_counter() - self.start_time
        headers = ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
        rows = [[name, f"{mean:.5g}", str(n), f"{tot:.5g}", f"{100 * tot / total:.5g}"] for name, mean, n, tot in stats]
        top = [["Total", "-", str(sum(s[2] for s in stats)), f"{total:.5g}", "100 %"]]
        if not self.extended:  # only the mean and total duration of each action
            headers, rows, top = [headers[0], headers[1], headers[3]], [[r[0], r[1], r[3]] for r in rows], []
        return "\n".join([self._header(), "", *_format_table(headers, top, rows)])


def _format_table(headers: list[str], top: list[list[str]], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *top, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "|  " + "  |  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  |"

    rule = "-" * len(line(headers))
    out = [rule, line(headers), rule]
    for block in (top, rows):  # the total row, then the actions; each under a rule when present
        if block:
            out += [line(r) for r in block] + [rule]
    return out
