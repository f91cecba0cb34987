"""``lightning.pytorch.plugins.layer_sync``: ember turns on synchronised batch norm with one Trainer flag."""
from ember._missing import missing_class

_WHY = "ember converts BatchNorm layers with Trainer(sync_batchnorm=True), not with a plugin object"
LayerSync = missing_class("plugins.layer_sync.LayerSync", _WHY, "Trainer(sync_batchnorm=True)")
TorchSyncBatchNorm = missing_class("plugins.layer_sync.TorchSyncBatchNorm", _WHY, "Trainer(sync_batchnorm=True)")

__all__ = ["LayerSync", "TorchSyncBatchNorm"]
