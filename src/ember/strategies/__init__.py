"""How a model runs: one device, or many processes on torch.distributed (DDP, FSDP).

``Trainer(strategy="auto")`` picks DDP when more than one device (or node) is asked for.
"""
from ember.strategies.ddp import DDPStrategy
from ember.strategies.environment import (ClusterEnvironment, LightningEnvironment, SLURMEnvironment,
                                          TorchElasticEnvironment)
from ember.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["ClusterEnvironment", "DDPStrategy", "FSDPStrategy", "LightningEnvironment", "SingleDeviceStrategy",
           "SLURMEnvironment", "Strategy", "TorchElasticEnvironment"]


def __getattr__(name: str) -> object:
    if name == "FSDPStrategy":  # imports torch.distributed.fsdp (about a second): only when asked for
        from ember.strategies.fsdp import FSDPStrategy

        return FSDPStrategy
    raise AttributeError(f"module 'ember.strategies' has no attribute {name!r}")
