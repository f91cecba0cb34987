"""Where the processes of a run come from, read from the environment: torchrun (TorchElastic), SLURM, or
ember itself (``LightningEnvironment``: one machine, ember starts the other processes, or each node is
started by hand with ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK``).

Each environment answers the same questions: how many processes in all, which one is this, on which node,
and where rank 0 listens. The names are Lightning's (``pytorch_lightning.plugins.environments``).
"""
from __future__ import annotations

import os
import re
import socket
from typing import Optional


class ClusterEnvironment:
    """The base: a run of ``world_size`` processes, this one being ``global_rank``."""

    creates_processes_externally = True  # False: ember starts the other processes itself

    def __init__(self, num_devices: int = 1, num_nodes: int = 1) -> None:
        self.num_devices = num_devices
        self.num_nodes = num_nodes

    @staticmethod
    def detect() -> bool:
        return False

    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", self.num_devices * self.num_nodes))

    def global_rank(self) -> int:
        return int(os.environ.get("RANK", 0))

    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))

    def node_rank(self) -> int:
        return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        return int(os.environ.get("MASTER_PORT", 0))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(world_size={self.world_size()}, global_rank={self.global_rank()}, "
                f"local_rank={self.local_rank()}, node_rank={self.node_rank()})")


class TorchElasticEnvironment(ClusterEnvironment):
    """Processes started by ``torchrun`` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
    and MASTER_PORT)."""

    @staticmethod
    def detect() -> bool:
        return "TORCHELASTIC_RUN_ID" in os.environ or all(
            v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def local_world_size(self) -> int:
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size() // max(self.num_nodes, 1)))

    def node_rank(self) -> int:
        if "GROUP_RANK" in os.environ:
            return int(os.environ["GROUP_RANK"])
        return self.global_rank() // max(self.local_world_size(), 1)


class SLURMEnvironment(ClusterEnvironment):
    """Processes started by ``srun``: one task per device (``--ntasks-per-node`` = ``devices``)."""

    def __init__(self, num_devices: int = 1, num_nodes: int = 1, auto_requeue: bool = True) -> None:
        super().__init__(num_devices, num_nodes)
        self.auto_requeue = auto_requeue

    @staticmethod
    def detect() -> bool:
        # an interactive allocation (salloc, then `python train.py`) is not an srun launch
        return "SLURM_NTASKS" in os.environ and "SLURM_PROCID" in os.environ and \
            os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")

    def world_size(self) -> int:
        return int(os.environ["SLURM_NTASKS"])

    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])

    def local_rank(self) -> int:
        return int(os.environ.get("SLURM_LOCALID", 0))

    def node_rank(self) -> int:
        return int(os.environ.get("SLURM_NODEID", 0))

    def tasks_per_node(self) -> int:
        spec = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE", "")
        match = re.match(r"\d+", spec)
        return int(match.group()) if match else self.world_size() // max(self.num_nodes, 1)

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" in os.environ:
            return os.environ["MASTER_ADDR"]
        nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "127.0.0.1")
        return first_slurm_host(nodes)

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        job_id = os.environ.get("SLURM_JOB_ID", "0")
        return 10000 + int(job_id[-4:])  # every task of the job computes the same port


class LightningEnvironment(ClusterEnvironment):
    """One machine where ember starts the other processes itself (``python train.py`` with ``devices=N``), or
    nodes started by hand, each with ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK`` set."""

    @property
    def creates_processes_externally(self) -> bool:  # type: ignore[override]
        return "LOCAL_RANK" in os.environ  # set for the processes ember started

    def global_rank(self) -> int:
        return self.node_rank() * self.num_devices + self.local_rank()

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" not in os.environ:
            os.environ["MASTER_PORT"] = str(find_free_port())  # the processes ember starts inherit it
        return int(os.environ["MASTER_PORT"])


def detect_environment(num_devices: int, num_nodes: int) -> ClusterEnvironment:
    for env in (TorchElasticEnvironment, SLURMEnvironment):
        if env.detect():
            return env(num_devices, num_nodes)
    return LightningEnvironment(num_devices, num_nodes)


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[003-005,9],cpu1' -> 'gpu003'."""
    head = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    match = re.match(r"([^\[]*)\[([^\]]*)\]", head)
    if not match:
        return head
    prefix, ranges = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0]


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_environment(env: ClusterEnvironment, num_devices: Optional[int], num_nodes: int) -> None:
    """Fail early when Trainer(devices, num_nodes) and the launcher disagree on the number of processes."""
    world = env.world_size()
    name = {TorchElasticEnvironment: "torchrun", SLURMEnvironment: "SLURM"}.get(type(env))
    if name is None:
        if num_nodes > 1 and "NODE_RANK" not in os.environ and "LOCAL_RANK" not in os.environ:
            raise RuntimeError(
                f"Trainer(num_nodes={num_nodes}) needs a launcher that starts the processes on every node: run the "
                f"script with `torchrun --nnodes={num_nodes} --nproc_per_node={num_devices} ...`, or `srun` under "
                "SLURM, or set MASTER_ADDR, MASTER_PORT and NODE_RANK on each node.")
        return
    expected = None if num_devices is None else num_devices * num_nodes
    if expected is not None and world != expected:
        per_node = env.local_world_size() if isinstance(env, TorchElasticEnvironment) else env.tasks_per_node()
        fix = (f"torchrun --nnodes={num_nodes} --nproc_per_node={num_devices}" if name == "torchrun" else
               f"#SBATCH --nodes={num_nodes} --ntasks-per-node={num_devices}")
        raise RuntimeError(
            f"Trainer(devices={num_devices}, num_nodes={num_nodes}) expects {expected} processes, but {name} started "
            f"{world} ({per_node} per node). Make them agree: launch with `{fix}`, or set Trainer(devices={per_node}, "
            f"num_nodes={max(world // max(per_node, 1), 1)}).")
