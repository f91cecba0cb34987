"""Lightning's Fabric (``lightning.fabric``): devices, precision, distributed processes and checkpoints for a training
loop you write yourself, on the same strategies, precision and checkpoint code as ``ember.Trainer``.

>>> from ember.fabric import Fabric
>>> Fabric(accelerator="cpu").world_size
1
"""
from ember.fabric.fabric import Fabric
from ember.seed import seed_everything

__all__ = ["Fabric", "seed_everything"]
