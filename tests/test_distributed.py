"""DDP on CPU with gloo and two real processes (tests/ddp_train.py): launched by ember from a plain
``python`` script, by ``torchrun``, and as two one-process "nodes" on loopback."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ember
from ember.strategies import DDPStrategy, SingleDeviceStrategy
from ember.strategies.environment import find_free_port, first_slurm_host

SCRIPT = Path(__file__).resolve().parent / "ddp_train.py"
N_TRAIN, N_VAL = 64, 37
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC", "MASTER_", "RANK",
                                                                     "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK",
                                                                     "GROUP_RANK", "LOCAL_WORLD_SIZE", "PL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPT.parent.parent / "src"), env.get("PYTHONPATH")]))
    return env


def run(out: Path, *args: str, launcher: tuple = (), expect: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, *launcher, str(SCRIPT), "--out", str(out), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def results(out: Path, world: int = 2) -> list:
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def close_weights(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> list:
    """Two ranks started by ember from `python ddp_train.py` (devices=2), loaders not shuffled."""
    out = tmp_path_factory.mktemp("ddp")
    run(out)
    return results(out) + [out]


def test_each_rank_trains_on_its_half_and_replicas_stay_identical(baseline):
    r0, r1, out = baseline
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    for epoch in (0, 1):  # the loader does not shuffle: DistributedSampler(shuffle=False) deals indices in turn
        assert r0["seen"][epoch] == list(range(0, N_TRAIN, 2))
        assert r1["seen"][epoch] == list(range(1, N_TRAIN, 2))
    assert r0["train_batches"] == r1["train_batches"] == N_TRAIN // 2 // 4
    assert same_weights(r0["state_dict"], r1["state_dict"])


def test_two_ranks_on_half_batches_match_one_process_on_whole_batches(baseline, tmp_path):
    run(tmp_path, "--devices", "1", "--batch-size", "8")
    (single,) = results(tmp_path, world=1)
    assert single["world_size"] == 1
    assert close_weights(baseline[0]["state_dict"], single["state_dict"])


def test_sync_dist_gives_the_exact_mean_over_the_whole_validation_set(baseline):
    r0, r1, _ = baseline
    assert r0["metrics"]["val_loss"] == r1["metrics"]["val_loss"]
    assert r0["metrics"]["val_samples"] == r1["metrics"]["val_samples"] == N_VAL  # 19 + 18: no padding counted
    assert r0["metrics"]["val_loss_local"] != r1["metrics"]["val_loss_local"]  # without sync_dist: each its own
    # the final validation ran on the final weights: recompute the data set's mean squared error
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from ddp_train import Indexed, Net
    finally:
        sys.path.pop(0)
    net = Net()
    net.load_state_dict(r0["state_dict"])
    data = Indexed(N_VAL, 1)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(net.net(data.x), data.y).item()
    assert r0["metrics"]["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_collectives_and_saving_on_rank_zero_alone(baseline):
    r0, r1, out = baseline
    assert r0["all_gather"].tolist() == r1["all_gather"].tolist() == [[0.0], [1.0]]
    assert r0["broadcast"] == r1["broadcast"] == "from rank 0"
    assert r0["any"] and r1["any"] and not r0["all"] and not r1["all"]
    # trainer.save_checkpoint called on rank 0 only returned (no rank waited for another) and loads safely
    for name in ("rank0_only.ckpt", "ckpts/last.ckpt"):
        ckpt = torch.load(out / name, weights_only=True)
        assert same_weights(ckpt["state_dict"], r0["state_dict"])


def test_a_shuffled_loader_is_reshuffled_each_epoch_and_an_unshuffled_one_is_not(tmp_path, baseline):
    run(tmp_path, "--shuffle")
    r0, r1 = results(tmp_path)
    for epoch in (0, 1):
        assert sorted(r0["seen"][epoch] + r1["seen"][epoch]) == list(range(N_TRAIN))
    assert r0["seen"][0] != r0["seen"][1]  # set_epoch reshuffles
    assert r0["seen"][0] != sorted(r0["seen"][0])
    assert baseline[0]["seen"][0] == sorted(baseline[0]["seen"][0])  # what the user wrote: no shuffling


def test_accumulation_under_ddp_matches_one_process(tmp_path):
    run(tmp_path / "ddp", "--accumulate", "2")
    run(tmp_path / "one", "--accumulate", "2", "--devices", "1", "--batch-size", "8")
    ddp, one = results(tmp_path / "ddp")[0], results(tmp_path / "one", world=1)[0]
    assert close_weights(ddp["state_dict"], one["state_dict"])


def test_torchrun_launch_gives_the_same_run(tmp_path, baseline):
    run(tmp_path, launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    r0, r1 = results(tmp_path)
    assert (r0["world_size"], r1["local_rank"]) == (2, 1)
    assert same_weights(r0["state_dict"], baseline[0]["state_dict"])


def test_two_nodes_of_one_process_on_loopback(tmp_path, baseline):
    port = str(find_free_port())
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}",
         "--master_addr=127.0.0.1", f"--master_port={port}", str(SCRIPT), "--out", str(tmp_path),
         "--devices", "1", "--num-nodes", "2"], env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for node in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-4000:]
    r0, r1 = results(tmp_path)
    assert (r0["node_rank"], r1["node_rank"], r1["local_rank"], r1["world_size"]) == (0, 1, 0, 2)
    assert same_weights(r0["state_dict"], baseline[0]["state_dict"])


def test_sigterm_to_one_rank_stops_both_at_the_same_step_and_resume_is_exact(tmp_path):
    args = ("--shuffle", "--dropout", "0.3")
    run(tmp_path / "whole", *args)
    proc = run(tmp_path / "cut", *args, "--sigterm-at", "5", expect=128 + signal.SIGTERM)
    # both processes print to one pipe, so lines can interleave: find the records, not the lines
    steps = {r: [int(step) for rank, step in re.findall(r"STEP (\d) (\d+)", proc.stdout) if int(rank) == r]
             for r in (0, 1)}
    assert steps[0] == steps[1]  # both ranks ran the same steps: the vote stopped them together
    assert proc.stdout.count("received SIGTERM") == 1  # rank 0 reports the checkpoint it wrote
    assert (tmp_path / "cut" / "ckpts" / "last.ckpt").is_file()
    run(tmp_path / "cut", *args, "--ckpt", "last")
    for whole, resumed in zip(results(tmp_path / "whole"), results(tmp_path / "cut")):
        assert same_weights(whole["state_dict"], resumed["state_dict"])
        assert whole["metrics"] == resumed["metrics"]


def test_a_rank_that_dies_ends_the_job_instead_of_hanging(tmp_path):
    start = time.monotonic()
    proc = run(tmp_path, "--die-at", "3", expect=1, timeout=120)
    assert time.monotonic() - start < 100
    assert "Connection closed by peer" in proc.stderr or "remote worker" in proc.stderr


# --- early errors and choices, in this process ---------------------------------------------------------------
def test_auto_picks_ddp_for_many_devices_and_single_device_for_one():
    assert isinstance(ember.Trainer(accelerator="cpu", devices=2).strategy, DDPStrategy)
    assert isinstance(ember.Trainer(accelerator="cpu").strategy, SingleDeviceStrategy)
    trainer = ember.Trainer(accelerator="cpu", devices=2, num_nodes=3)
    assert (trainer.world_size, trainer.num_nodes, trainer.num_devices, trainer.global_rank) == (6, 3, 2, 0)


def test_torchrun_and_trainer_disagreeing_fails_early(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), "--out",
         str(tmp_path), "--devices", "3"], capture_output=True, text=True, timeout=120, env=_clean_env())
    assert proc.returncode != 0
    assert "Trainer(devices=3, num_nodes=1) expects 3 processes, but torchrun started 2" in proc.stderr
    assert "--nproc_per_node=3" in proc.stderr


def test_ddp_from_an_interactive_session_says_how_to_launch(tmp_path):
    code = ("import torch, ember\nfrom torch.utils.data import DataLoader, TensorDataset\n"
            "class M(ember.LightningModule):\n"
            "    def __init__(self):\n        super().__init__(); self.l = torch.nn.Linear(2, 1)\n"
            "    def training_step(self, b, i):\n        return self.l(b[0]).sum()\n"
            "    def configure_optimizers(self):\n        return torch.optim.SGD(self.parameters(), lr=0.1)\n"
            "t = ember.Trainer(accelerator='cpu', devices=2, max_steps=1, logger=False, enable_progress_bar=False,"
            f" default_root_dir={str(tmp_path)!r})\n"
            "t.fit(M(), DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_clean_env())
    assert proc.returncode != 0
    assert "not started from a script file" in proc.stderr and "torchrun --nproc_per_node=N" in proc.stderr


def test_sync_batchnorm_on_cpu_is_refused_with_the_reason():
    strategy = DDPStrategy()
    strategy._configure("cpu", [0, 0], 1, True)
    strategy.sync_batchnorm = True
    with pytest.raises(ValueError, match=r"sync_batchnorm=True\) needs GPUs.*SyncBatchNorm only runs on CUDA"):
        strategy.setup_module(torch.nn.Linear(2, 2), lambda *a: None)


def test_slurm_environment_is_read(monkeypatch):
    from ember.strategies.environment import SLURMEnvironment, detect_environment

    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NODEID", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_NODELIST", "gpu[003-006],cpu1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    env = detect_environment(2, 4)
    assert isinstance(env, SLURMEnvironment)
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (8, 5, 1, 2)
    assert (env.main_address, env.main_port) == ("gpu003", 13456)
    trainer = ember.Trainer(accelerator="cpu", devices=2, num_nodes=4)
    assert (trainer.global_rank, trainer.local_rank, trainer.world_size, trainer.is_global_zero) == (5, 1, 8, False)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation is not an srun launch
    assert not SLURMEnvironment.detect()


def test_first_slurm_host():
    assert first_slurm_host("node1") == "node1"
    assert first_slurm_host("gpu[3,5-7]") == "gpu3"
    assert first_slurm_host("a[01-02],b[1-2]") == "a01"


SPAWN_SCRIPT = '''
import sys, torch, ember
from torch.utils.data import DataLoader, TensorDataset

class M(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 1)
    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.l(x), y)
        self.log("loss", loss, sync_dist=True)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

if __name__ == "__main__":
    ember.seed_everything(0)
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    trainer = ember.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=sys.argv[1])
    model = M()
    before = model.l.weight.clone()
    trainer.fit(model, data)
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert torch.equal(ckpt["state_dict"]["l.weight"], model.l.weight), "weights not brought back"
    assert not torch.equal(before, model.l.weight)
    assert (trainer.global_step, trainer.current_epoch, trainer.state.status) == (8, 2, "finished"), trainer.state
    assert "loss" in trainer.callback_metrics
    print("SPAWN OK", flush=True)
'''


def test_ddp_spawn_trains_in_new_processes_and_brings_the_weights_back(tmp_path):
    script = tmp_path / "spawn_train.py"
    script.write_text(SPAWN_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=180, env=_clean_env())
    assert proc.returncode == 0 and "SPAWN OK" in proc.stdout, proc.stderr[-4000:]


REQUEUE_SCRIPT = '''
import os, signal, sys, torch, ember
from torch.utils.data import DataLoader, TensorDataset

class M(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 1)
    def training_step(self, batch, i):
        if self.global_step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's warning before the time limit
        return self.l(batch[0]).pow(2).mean()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

plugins = [] if sys.argv[2] == "on" else [ember.strategies.SLURMEnvironment(auto_requeue=False)]
trainer = ember.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=sys.argv[1], plugins=plugins)
trainer.fit(M(), DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=8))
'''


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
@pytest.mark.parametrize("requeue", ["on", "off"])
def test_sigusr1_under_slurm_saves_and_requeues_the_job(tmp_path, requeue):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"  # records how it was called, as the real one would requeue
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'scontrol.txt'}\n")
    fake.chmod(0o755)
    script = tmp_path / "train.py"
    script.write_text(REQUEUE_SCRIPT)
    env = dict(_clean_env(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242",
               SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_NAME="train")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), requeue], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 128 + signal.SIGUSR1, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    if requeue == "on":
        assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
        assert "requeued SLURM job 4242" in proc.stdout
    else:
        assert not (tmp_path / "scontrol.txt").exists()
