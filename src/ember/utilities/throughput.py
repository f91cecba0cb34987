"""``lightning.fabric.utilities.throughput``: ``measure_flops`` and ``get_available_flops`` (shared with ember's
``ThroughputMonitor`` callback). Fabric's own ``Throughput``/``ThroughputMonitor`` counters are not in ember: they
import, and raise naming what to use when constructed.
"""
from ember._missing import missing_class
from ember.callbacks.throughput_monitor import get_available_flops, measure_flops

_WHY = "Fabric's throughput counters are not in ember"
_USE = "ember.callbacks.ThroughputMonitor with the Trainer, or time your loop with time.perf_counter()"
Throughput = missing_class("lightning.fabric.utilities.throughput.Throughput", _WHY, _USE)
ThroughputMonitor = missing_class("lightning.fabric.utilities.throughput.ThroughputMonitor", _WHY, _USE)

__all__ = ["Throughput", "ThroughputMonitor", "get_available_flops", "measure_flops"]
