"""How a model runs: one device, or many processes on torch.distributed (DDP, FSDP).

``Trainer(strategy="auto")`` picks DDP when more than one device (or node) is asked for.
"""
from ember.strategies.ddp import DDPStrategy
from ember.strategies.environment import (ClusterEnvironment, LightningEnvironment, SLURMEnvironment,
                                          TorchElasticEnvironment)
from ember.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["ClusterEnvironment", "DDPStrategy", "LightningEnvironment", "SingleDeviceStrategy", "SLURMEnvironment",
           "Strategy", "TorchElasticEnvironment"]
