"""``lightning.pytorch.plugins.environments``: where the processes of a distributed run come from.

``Trainer(plugins=[SLURMEnvironment(auto_requeue=False)])`` works as in Lightning. The launchers ember does not
support are importable and fail clearly when constructed.
"""
from ember._missing import missing_class
from ember.strategies.environment import (ClusterEnvironment, LightningEnvironment, SLURMEnvironment,
                                          TorchElasticEnvironment)

_USE = "torchrun (TorchElasticEnvironment, detected automatically), SLURM's srun (SLURMEnvironment) or " \
       "MASTER_ADDR/MASTER_PORT/NODE_RANK set by hand (LightningEnvironment)"
KubeflowEnvironment = missing_class("plugins.environments.KubeflowEnvironment",
                                    "ember does not read Kubeflow's PyTorchJob variables", _USE)
LSFEnvironment = missing_class("plugins.environments.LSFEnvironment", "ember does not read IBM LSF's variables", _USE)
MPIEnvironment = missing_class("plugins.environments.MPIEnvironment", "ember does not start or read MPI jobs", _USE)
XLAEnvironment = missing_class("plugins.environments.XLAEnvironment", "ember does not run on TPUs (XLA)", _USE)

__all__ = ["ClusterEnvironment", "KubeflowEnvironment", "LSFEnvironment", "LightningEnvironment", "MPIEnvironment",
           "SLURMEnvironment", "TorchElasticEnvironment", "XLAEnvironment"]
