"""FSDPStrategy (FSDP2 ``fully_shard``) on CPU with gloo.

One two-process run (``Trainer(devices=2, strategy=FSDPStrategy(...))``; ember starts rank 1 itself) plays every
scenario in order and writes what it saw; each test reads one behaviour from it. The run takes about 10 s.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ember

try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401
except ImportError:
    pytest.skip(f"torch {torch.__version__} has no FSDP2 (torch.distributed.fsdp.fully_shard)",
                allow_module_level=True)

from ember.strategies.fsdp import FSDPStrategy

SCRIPT = r'''
import os, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard
import ember
from ember.callbacks import ModelCheckpoint
from ember.strategies.fsdp import FSDPStrategy


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x):
        return x + torch.tanh(self.lin(x))


class Model(ember.LightningModule):
    def __init__(self, shard_in_configure_model=False):
        super().__init__()
        self.save_hyperparameters()
        self.inp = self.blocks = self.head = None
        if not shard_in_configure_model:
            self._build()

    def _build(self):
        torch.manual_seed(1)
        self.inp = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.Sequential(Block(), Block())
        self.head = torch.nn.Linear(8, 1)

    def configure_model(self):
        if self.blocks is None:  # sharded initialisation: the module shards its blocks itself
            self._build()
            for block in self.blocks:
                fully_shard(block, mesh=self.trainer.strategy.device_mesh)
            self.user_states = [block._get_fsdp_state() for block in self.blocks]

    def forward(self, x):
        return self.head(self.blocks(self.inp(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch  # submodules called directly: the root's parameters must be gathered around the step
        loss = torch.nn.functional.mse_loss(self.head(self.blocks(self.inp(x))), y)
        self.log("loss", loss, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.head(self.blocks(self.inp(x))), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
Y = X.sum(1, keepdim=True) / 2
PROBE = torch.linspace(-1, 1, 20).reshape(5, 4)


def fit(name, epochs, state_dict_type="full", ckpt_path=None, strategy=None, **model_kwargs):
    out = sys.argv[1]
    ckpt = ModelCheckpoint(dirpath=os.path.join(out, name), save_top_k=-1)
    strategy = strategy or FSDPStrategy(auto_wrap_policy={Block}, state_dict_type=state_dict_type)
    trainer = ember.Trainer(accelerator="cpu", devices=2, max_epochs=epochs, accumulate_grad_batches=2,
                            gradient_clip_val=0.5, strategy=strategy, callbacks=[ckpt], logger=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
    model = Model(**model_kwargs)
    loader = DataLoader(TensorDataset(X, Y), batch_size=8)
    trainer.fit(model, loader, loader, ckpt_path=ckpt_path and os.path.join(out, ckpt_path))
    return trainer, model


def loss_on_data(model):
    with torch.no_grad():  # a sharded model: every rank runs it
        return torch.nn.functional.mse_loss(model(X), Y).item()


def save(trainer, obj, name):
    if trainer.is_global_zero:
        torch.save(obj, os.path.join(sys.argv[1], name))


def full_weights(model):
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


if __name__ == "__main__":
    # uninterrupted: 3 epochs, a sharded checkpoint folder after each
    before = loss_on_data(Model())
    trainer, model = fit("sharded", 3, "sharded")
    val = trainer.validate(model, DataLoader(TensorDataset(X, Y), batch_size=8), verbose=False)
    trainer.save_checkpoint(os.path.join(sys.argv[1], "after_fit_sharded.ckpt"))
    save(trainer, {"weights": full_weights(model), "loss_before": before, "loss_after": loss_on_data(model),
                   "val": val, "shard_shape": tuple(model.blocks[0].lin.weight.to_local().shape),
                   "units": [isinstance(m, FSDPModule) for m in (model, *model.blocks, model.inp)]}, "uninterrupted.pt")
    # the same run under DDP
    trainer, model = fit("ddp", 3, strategy="ddp")
    save(trainer, model.state_dict(), "ddp.pt")
    # resumed from the first sharded folder
    trainer, model = fit("resumed_sharded", 3, "sharded", ckpt_path="sharded/epoch=0-step=2.ckpt")
    save(trainer, full_weights(model), "resumed_sharded.pt")
    # one epoch with full checkpoints; the sharded model's outputs; then resumed from the full file
    trainer, model = fit("full", 1)
    with torch.no_grad():
        probe = model(PROBE)
    save(trainer, probe, "full_probe.pt")
    trainer.save_checkpoint(os.path.join(sys.argv[1], "after_fit.ckpt"))  # every rank calls it: it gathers
    trainer, model = fit("resumed_full", 3, ckpt_path="full/epoch=0-step=2.ckpt")
    save(trainer, full_weights(model), "resumed_full.pt")
    # the blocks sharded by configure_model
    trainer, model = fit("configured", 3, shard_in_configure_model=True)
    kept = all(block._get_fsdp_state() is state for block, state in zip(model.blocks, model.user_states))
    save(trainer, {"weights": full_weights(model), "kept": kept}, "configured.pt")
    open(os.path.join(sys.argv[1], f"done_rank{trainer.global_rank}"), "w").close()
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    script = out / "fsdp_script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=240,
                          cwd=out, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def _script_module(out: Path):
    spec = importlib.util.spec_from_file_location("fsdp_script", out / "fsdp_script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_same_weights(expected: dict, actual: dict) -> None:
    assert list(expected) == list(actual)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_fsdp_trains_sharded_on_both_ranks(run):
    assert (run / "done_rank0").exists() and (run / "done_rank1").exists()
    result = torch.load(run / "uninterrupted.pt", weights_only=True)
    assert result["units"] == [True, True, True, False]  # root and each Block; inp belongs to the root's unit
    assert result["shard_shape"] == (4, 8)  # each rank holds half of every (8, 8) weight
    assert result["loss_after"] < 0.5 * result["loss_before"]
    assert result["val"][0]["val_loss"] < 0.5 * result["loss_before"]  # validate() after fit runs the sharded model


def test_fsdp_trains_the_same_weights_as_ddp(run):
    fsdp = torch.load(run / "uninterrupted.pt", weights_only=True)["weights"]  # accumulation and clipping included
    ddp = torch.load(run / "ddp.pt", weights_only=True)
    assert list(fsdp) == list(ddp)
    for key in ddp:
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=0, atol=1e-6)


def test_full_checkpoint_loads_in_one_process_without_fsdp(run):
    path = run / "after_fit.ckpt"  # trainer.save_checkpoint() after fit; the same as ModelCheckpoint's last file
    checkpoint = torch.load(path, weights_only=True)
    assert sorted(checkpoint["state_dict"]) == ["blocks.0.lin.bias", "blocks.0.lin.weight", "blocks.1.lin.bias",
                                                "blocks.1.lin.weight", "head.bias", "head.weight", "inp.bias",
                                                "inp.weight"]
    assert checkpoint["state_dict"]["blocks.0.lin.weight"].shape == (8, 8)  # gathered, not a shard
    Model = _script_module(run).Model
    model = Model.load_from_checkpoint(path)
    with torch.no_grad():
        assert torch.allclose(model(_script_module(run).PROBE), torch.load(run / "full_probe.pt"), atol=1e-6)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])  # torch's usual numbered layout
    assert int(optimizer.state[model.inp.weight]["step"]) == 2


def test_sharded_checkpoint_folder_resumes_exactly(run):
    for folder in (run / "sharded" / "epoch=0-step=2.ckpt", run / "after_fit_sharded.ckpt"):
        assert folder.is_dir() and (folder / "meta.pt").is_file() and (folder / ".metadata").is_file()
    assert not list((run / "sharded").glob(".*tmp"))  # written to a temporary folder, then renamed
    expected = torch.load(run / "uninterrupted.pt", weights_only=True)["weights"]
    _assert_same_weights(expected, torch.load(run / "resumed_sharded.pt", weights_only=True))


def test_full_checkpoint_resumes_exactly(run):
    expected = torch.load(run / "uninterrupted.pt", weights_only=True)["weights"]
    _assert_same_weights(expected, torch.load(run / "resumed_full.pt", weights_only=True))


def test_blocks_sharded_in_configure_model_are_kept(run):
    result = torch.load(run / "configured.pt", weights_only=True)
    assert result["kept"]  # FSDPStrategy did not shard them again
    _assert_same_weights(torch.load(run / "uninterrupted.pt", weights_only=True)["weights"], result["weights"])


def test_trainer_fsdp_name_and_arguments():
    trainer = ember.Trainer(strategy="fsdp", accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size == 2
    with pytest.raises(ValueError, match=r"forward_prefetch=.*FSDP1 argument.*set_modules_to_forward_prefetch"):
        FSDPStrategy(forward_prefetch=True)
    with pytest.raises(ValueError, match=r"NO_SHARD.*strategy='ddp'"):
        FSDPStrategy(sharding_strategy="NO_SHARD")
    with pytest.raises(ValueError, match=r"state_dict_type='local'.*'full'.*'sharded'"):
        FSDPStrategy(state_dict_type="local")
    with pytest.raises(ValueError, match=r"unknown argument 'reshard'.*reshard_after_forward"):
        FSDPStrategy(reshard=True)
    with pytest.raises(TypeError, match=r"auto_wrap_policy=.*module classes.*not its name.*'Block'"):
        FSDPStrategy(auto_wrap_policy={"Block"})
