"""``lightning.pytorch.core.hooks``: Lightning splits LightningModule's hooks into mixins; ember does not."""
from ember._missing import missing_class

_WHY = "ember's LightningModule and LightningDataModule define their hooks themselves, without hook mixins"
ModelHooks = missing_class("core.hooks.ModelHooks", _WHY, "ember.LightningModule (override the hook there)")
DataHooks = missing_class("core.hooks.DataHooks", _WHY,
                          "ember.LightningModule or ember.LightningDataModule (override the hook there)")
CheckpointHooks = missing_class("core.hooks.CheckpointHooks", _WHY,
                                "ember.LightningModule.on_save_checkpoint / on_load_checkpoint")

__all__ = ["CheckpointHooks", "DataHooks", "ModelHooks"]
