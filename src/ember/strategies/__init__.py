"""How a model runs: one device, or many processes on torch.distributed (DDP, FSDP).

``Trainer(strategy="auto")`` picks DDP when more than one device (or node) is asked for. Lightning's DeepSpeed,
ModelParallel and XLA strategies are importable here and raise when constructed, naming what to use instead.
"""
from ember._missing import missing_class
from ember.strategies.ddp import DDPStrategy
from ember.strategies.environment import (ClusterEnvironment, LightningEnvironment, SLURMEnvironment,
                                          TorchElasticEnvironment)
from ember.strategies.parallel import ParallelStrategy
from ember.strategies.strategy import SingleDeviceStrategy, Strategy

DeepSpeedStrategy = missing_class("strategies.DeepSpeedStrategy", "ember has no DeepSpeed integration",
                                  "Trainer(strategy='fsdp') to shard parameters, gradients and optimizer state")
ModelParallelStrategy = missing_class("strategies.ModelParallelStrategy",
                                      "ember has no tensor-parallel (DTensor device mesh) strategy",
                                      "Trainer(strategy='fsdp'), or apply torch.distributed.tensor.parallel in "
                                      "configure_model")
XLAStrategy = missing_class("strategies.XLAStrategy", "ember does not run on TPUs (XLA)",
                            "Trainer(accelerator='gpu', strategy='ddp')")
SingleDeviceXLAStrategy = missing_class("strategies.SingleDeviceXLAStrategy", "ember does not run on TPUs (XLA)",
                                        "Trainer(accelerator='gpu', devices=1)")

__all__ = ["ClusterEnvironment", "DDPStrategy", "DeepSpeedStrategy", "FSDPStrategy", "LightningEnvironment",
           "ModelParallelStrategy", "ParallelStrategy", "SingleDeviceStrategy", "SLURMEnvironment", "Strategy",
           "TorchElasticEnvironment"]


def __getattr__(name: str) -> object:
    if name == "FSDPStrategy":  # imports torch.distributed.fsdp (about a second): only when asked for
        from ember.strategies.fsdp import FSDPStrategy

        return FSDPStrategy
    raise AttributeError(f"module 'ember.strategies' has no attribute {name!r}")
