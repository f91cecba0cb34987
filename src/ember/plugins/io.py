"""``lightning.pytorch.plugins.io``: ember writes checkpoints itself, with no pluggable checkpoint I/O.

Every file is written atomically (a temporary file renamed into place) and loads with
``torch.load(weights_only=True)``; sharded FSDP checkpoints are folders written with torch.distributed.checkpoint.
"""
from ember._missing import missing_class

_WHY = "ember writes every checkpoint itself (atomic torch.save, loadable with torch.load(weights_only=True))"
_USE = ("trainer.save_checkpoint(path) and LightningModule.on_save_checkpoint / on_load_checkpoint to change "
        "what a checkpoint holds")
CheckpointIO = missing_class("plugins.io.CheckpointIO", _WHY, _USE)
TorchCheckpointIO = missing_class("plugins.io.TorchCheckpointIO", _WHY + "; it is what this plugin does", _USE)
AsyncCheckpointIO = missing_class("plugins.io.AsyncCheckpointIO", _WHY + ", in the training process", _USE)
XLACheckpointIO = missing_class("plugins.io.XLACheckpointIO", "ember does not run on TPUs (XLA)", _USE)

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO"]
