"""``lightning.pytorch.plugins``: what ember takes as ``Trainer(plugins=[...])`` and Lightning's other plugins.

ember accepts cluster environments as plugins (``SLURMEnvironment(auto_requeue=False)``...). Precision,
checkpoint-I/O and layer-sync plugins are importable and raise when constructed, naming the Trainer argument
that does the same in ember (``precision=``, ``sync_batchnorm=``).
"""
from ember.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO, XLACheckpointIO
from ember.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from ember.plugins.precision import (BitsandbytesPrecision, DeepSpeedPrecision, DoublePrecision, FSDPPrecision,
                                     HalfPrecision, MixedPrecision, Precision, TransformerEnginePrecision,
                                     XLAPrecision)
from ember.strategies.environment import ClusterEnvironment

__all__ = [
    "AsyncCheckpointIO",
    "CheckpointIO",
    "TorchCheckpointIO",
    "XLACheckpointIO",
    "BitsandbytesPrecision",
    "DeepSpeedPrecision",
    "DoublePrecision",
    "HalfPrecision",
    "MixedPrecision",
    "Precision",
    "TransformerEnginePrecision",
    "FSDPPrecision",
    "XLAPrecision",
    "LayerSync",
    "TorchSyncBatchNorm",
]
