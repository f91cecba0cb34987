"""``PassThroughProfiler``: the profiler of a run that asked for none."""
from ember.profilers.profiler import Profiler


class PassThroughProfiler(Profiler):
    """Records nothing: what ``trainer.profiler`` is when no profiler was asked for. The Trainer does not
    instrument anything for it, so it costs nothing per step; ``profile()`` blocks in user code still work."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def summary(self) -> str:
        return ""
