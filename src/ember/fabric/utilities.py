"""``lightning.fabric.utilities``: the helpers shared with the Trainer (``ember.utilities``): ``rank_zero_only``,
``rank_zero_warn``, ``move_data_to_device``, ``AttributeDict``, ``measure_flops``...

``from lightning.fabric.utilities import X`` ported to ``from ember.fabric.utilities import X`` gets
``ember.utilities.X`` (the same object). Submodules (``lightning.fabric.utilities.seed``) are ember's
``ember.utilities.seed`` and so on; ``ember run`` maps them, and a program ported by hand imports them from there.
"""
from ember.fabric._shared import attributes_of
from ember.utilities import (rank_zero_debug, rank_zero_deprecation, rank_zero_info,  # noqa: F401
                             rank_zero_only, rank_zero_warn)
from ember.utilities.throughput import Throughput, ThroughputMonitor  # noqa: F401

__all__ = ["AttributeDict", "disable_possible_user_warnings", "is_shared_filesystem", "LightningEnum",
           "measure_flops", "move_data_to_device", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only",
           "rank_zero_warn", "suggested_max_num_workers", "Throughput", "ThroughputMonitor"]


__getattr__ = attributes_of(__name__, "ember.utilities")
