"""``AdvancedProfiler``: ``cProfile`` statistics per action."""
from __future__ import annotations

import io
import os
from typing import Any, Optional, Union

from ember.profilers.profiler import Profiler


class AdvancedProfiler(Profiler):
    """``cProfile`` per action: the functions each action spends its time in, as ``pstats`` prints them.

    Args:
        dirpath, filename: see ``Profiler``.
        line_count_restriction: how many lines of each action's stats to show: a fraction (0.1 = the top 10%)
            or a number of lines.

    When actions nest (a hook that runs inside another), the outer action's profile pauses while the inner
    one runs: Python allows one active profiler, and each function's time is counted once.
    """

    def __init__(self, dirpath: Union[str, os.PathLike, None] = None, filename: Optional[str] = None,
                 line_count_restriction: float = 1.0) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.line_count_restriction = line_count_restriction
        self.profiled_actions: dict[str, Any] = {}
        self._active: list[tuple[str, Any]] = []

    def start(self, action_name: str) -> None:
        import cProfile

        profiler = self.profiled_actions.get(action_name)
        if profiler is None:
            profiler = self.profiled_actions[action_name] = cProfile.Profile()
        if self._active:
            self._active[-1][1].disable()
        self._active.append((action_name, profiler))
        profiler.enable()

    def stop(self, action_name: str) -> None:
        if not self._active or self._active[-1][0] != action_name:
            raise ValueError(f"AdvancedProfiler: attempted to stop {action_name!r}, which is not the action "
                             f"running now ({self._active[-1][0] if self._active else 'none'!r}).")
        _, profiler = self._active.pop()
        profiler.disable()
        if self._active:
            self._active[-1][1].enable()

    def summary(self) -> str:
        import pstats

        parts = [self._header()]
        for name, profiler in self.profiled_actions.items():
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction)
            parts.append(f"Profile stats for: {name}\n{stream.getvalue()}")
        return "\n".join(parts)

    def teardown(self, stage: Optional[str]) -> None:
        for _, profiler in reversed(self._active):
            profiler.disable()
        self._active = []
