"""Fabric under FSDP (FSDP2 ``fully_shard``, CPU and gloo) and under ddp_spawn.

One two-process FSDP script (``Fabric(strategy=FSDPStrategy(...), devices=2)``; ``fabric.launch()`` starts rank 1
by running the script again) plays every scenario in order and writes what it saw; each test reads one behaviour
from it: the same weights as one process on the whole batch, a full checkpoint that loads in one process with
``torch.load(weights_only=True)``, sharded and full checkpoints that resume bit-identically, and misuse messages.
One ddp_spawn script runs ``fabric.launch(train, model)`` in two spawned processes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ember.fabric import Fabric

try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401
except ImportError:
    fully_shard = None

SRC = Path(__file__).resolve().parent.parent / "src"
LR, MAX_NORM, STEPS, MICRO = 0.05, 0.5, 4, 2  # 4 steps of 2 micro-batches of 4 samples on each of 2 ranks

COMMON = textwrap.dedent('''
    import os, sys
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from ember.fabric import Fabric

    out = sys.argv[1]
    LR, MAX_NORM, STEPS, MICRO = 0.05, 0.5, 4, 2


    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            return x + torch.tanh(self.lin(x))


    class Net(torch.nn.Sequential):
        def by_hand(self, x):  # submodules called directly: FSDP gathers the root's own parameters only if marked
            for layer in self:
                x = layer(x)
            return x


    def make_model():
        torch.manual_seed(0)
        return Net(torch.nn.Linear(4, 8), Block(), Block(), torch.nn.Linear(8, 1))


    def data():
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
        return TensorDataset(x, x.sum(1, keepdim=True).sin())
''')

FSDP_SCRIPT = COMMON + textwrap.dedent('''
    from ember.strategies.fsdp import FSDPStrategy


    def steps(fabric, model, optimizer, batches, first, last):
        """Steps first..last-1: MICRO micro-batches each (the first without the gradient reduce), clipping."""
        for step in range(first, last):
            for micro in range(MICRO):
                x, y = batches[step * MICRO + micro]
                with fabric.no_backward_sync(model, enabled=micro < MICRO - 1):
                    fabric.backward(torch.nn.functional.mse_loss(model(x), y) / MICRO)
            norm = fabric.clip_gradients(model, optimizer, max_norm=MAX_NORM)
            optimizer.step()
            optimizer.zero_grad()
        return norm


    def message(fn):
        try:
            fn()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return "no error"


    if __name__ == "__main__":
        fabric = Fabric(accelerator="cpu", devices=2, strategy=FSDPStrategy(auto_wrap_policy={Block}))
        fabric.launch()
        default_type = fabric.strategy.state_dict_type
        batches = list(fabric.setup_dataloaders(DataLoader(data(), batch_size=4)))
        # joint set-up with an optimizer created before sharding: it follows the sharded parameters
        module = make_model()
        model, optimizer = fabric.setup(module, torch.optim.Adam(module.parameters(), lr=LR))
        marked = message(lambda: model.mark_forward_method("by_hand"))
        with torch.no_grad():
            same_by_hand = torch.equal(model.by_hand(batches[0][0]), model(batches[0][0]))
        steps(fabric, model, optimizer, batches, 0, 2)
        fabric.save(out + "/sharded.ckpt", {"model": model, "optimizer": optimizer, "step": 2})
        fabric.strategy.state_dict_type = "full"
        fabric.save(out + "/full.ckpt", {"model": model, "optimizer": optimizer, "step": 2})
        norm = steps(fabric, model, optimizer, batches, 2, STEPS)
        fabric.save(out + "/final.ckpt", {"model": model, "optimizer": optimizer, "step": STEPS})
        shard = tuple(module[1].lin.weight.to_local().shape)

        # resumed from the sharded folder, into a model created without memory and a fresh optimizer
        fabric.strategy.state_dict_type = "sharded"
        with fabric.init_module(empty_init=True):
            empty = make_model()
        was_meta = empty[0].weight.is_meta
        early_load = message(lambda: fabric.load(out + "/sharded.ckpt", {"model": empty}))
        model2 = fabric.setup_module(empty)
        optimizer2 = fabric.setup_optimizers(torch.optim.Adam(model2.parameters(), lr=LR))
        state = {"model": model2, "optimizer": optimizer2, "step": 0}
        remainder = fabric.load(out + "/sharded.ckpt", state)
        steps(fabric, model2, optimizer2, batches, state["step"], STEPS)
        fabric.strategy.state_dict_type = "full"
        fabric.save(out + "/resumed_sharded.ckpt", {"model": model2, "optimizer": optimizer2})

        # resumed from the full file
        module3 = make_model()
        model3, optimizer3 = fabric.setup(module3, torch.optim.Adam(module3.parameters(), lr=LR))
        state3 = {"model": model3, "optimizer": optimizer3, "step": 0}
        fabric.load(out + "/full.ckpt", state3)
        steps(fabric, model3, optimizer3, batches, state3["step"], STEPS)
        fabric.save(out + "/resumed_full.ckpt", {"model": model3, "optimizer": optimizer3})

        # misuse
        stepped = make_model()
        stepped_opt = torch.optim.Adam(stepped.parameters(), lr=LR)
        stepped(batches[0][0]).sum().backward()
        stepped_opt.step()
        fabric.strategy.state_dict_type = "sharded"
        os.makedirs(out + "/notes", exist_ok=True)
        open(out + "/notes/todo.txt", "w").close()
        fabric.save(out + "/heads.ckpt", {"model": model2}, filter={"model": lambda name, value: "3." in name})
        errors = {
            "into_a_folder": message(lambda: fabric.save(out + "/notes", {"model": model2})),
            "filtered_strict": message(lambda: fabric.load(out + "/heads.ckpt", {"model": model3})),
            "stepped_optimizer": message(lambda: fabric.setup(stepped, stepped_opt)),
            "load_folder_without_state": message(lambda: fabric.load(out + "/sharded.ckpt")),
            "load_into_meta_model": early_load,
            "missing_key": message(lambda: fabric.load(out + "/sharded.ckpt", {"model": model2, "epoch": 0})),
        }
        if fabric.global_rank == 0:
            torch.save({"default_type": default_type, "marked": marked, "same_by_hand": same_by_hand,
                        "norm_type": type(norm).__name__, "shard": shard, "was_meta": was_meta,
                        "step": state["step"], "remainder": remainder, "errors": errors}, out + "/result.pt")
        open(out + f"/done{fabric.global_rank}", "w").close()
''')

SPAWN_SCRIPT = COMMON + textwrap.dedent('''
    from ember.strategies import DDPStrategy


    def train(fabric, module, scale):
        first_draw = torch.rand(1)  # this process starts with the launching process's generator state
        model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=LR))
        loader = fabric.setup_dataloaders(DataLoader(data(), batch_size=4))
        for step, (x, y) in enumerate(loader):
            if step == STEPS:
                break
            fabric.backward(torch.nn.functional.mse_loss(model(x), y))
            optimizer.step()
            optimizer.zero_grad()
        ranks = fabric.all_gather(torch.tensor(fabric.global_rank))
        return {"rank": fabric.global_rank, "ranks": ranks, "scale": scale, "draw": first_draw,
                "weights": module.state_dict()}


    class Lite(Fabric):
        def run(self, x):
            return self.global_rank, self.world_size, x * 2


    if __name__ == "__main__":
        fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
        module = make_model()
        before = {k: v.clone() for k, v in module.state_dict().items()}
        torch.manual_seed(7)
        result = fabric.launch(train, module, scale=3)
        lite = Lite(accelerator="cpu", devices=2, strategy=DDPStrategy(start_method="fork")).run(5)
        torch.save({"result": result, "draw_here": torch.rand(1), "lite": lite,
                    "unchanged_here": all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())},
                   out + "/spawn.pt")
''')


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("SLURM_", "TORCHELASTIC", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
         "LOCAL_WORLD_SIZE", "PL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _run(out: Path, name: str, script: str) -> None:
    (out / name).write_text(script)
    done = subprocess.run([sys.executable, name, str(out)], cwd=out, env=_clean_env(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def _script_namespace() -> dict:
    namespace: dict = {}
    exec(COMMON.replace("out = sys.argv[1]", ""), namespace)
    return namespace


def _one_process_reference() -> tuple:
    """The same steps in one process, each on the 16 samples both ranks saw (rank r holds samples r, r+2, ...)."""
    ns = _script_namespace()
    model = ns["make_model"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = ns["data"]().tensors
    per_step = 2 * MICRO * 4
    for step in range(STEPS):
        xb, yb = x[step * per_step:(step + 1) * per_step], y[step * per_step:(step + 1) * per_step]
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
        optimizer.step()
    return ns["make_model"], model, optimizer


needs_fsdp = pytest.mark.skipif(fully_shard is None or not torch.distributed.is_available(),
                                reason=f"torch {torch.__version__} has no FSDP2 (torch.distributed.fsdp.fully_shard)")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fabric_fsdp")
    _run(out, "fsdp_train.py", FSDP_SCRIPT)
    return out


def _assert_same(expected: dict, actual: dict) -> None:
    assert list(expected) == list(actual)
    for key in expected:
        if isinstance(expected[key], dict):
            _assert_same(expected[key], actual[key])
        elif isinstance(expected[key], list):
            assert len(expected[key]) == len(actual[key]) and all(
                _assert_same({"v": a}, {"v": b}) is None for a, b in zip(expected[key], actual[key]))
        elif isinstance(expected[key], torch.Tensor):
            assert torch.equal(expected[key], actual[key]), key
        else:
            assert expected[key] == actual[key], key


@needs_fsdp
def test_fsdp_loop_trains_the_weights_of_one_process_on_the_whole_batch(fsdp_run):
    assert (fsdp_run / "done0").exists() and (fsdp_run / "done1").exists()
    result = torch.load(fsdp_run / "result.pt", weights_only=True)
    assert result["default_type"] == "sharded"  # Lightning's Fabric default under FSDP
    assert result["shard"] == (4, 8)  # each rank holds half of every (8, 8) weight
    assert result["norm_type"] == "Tensor"  # clip_gradients returns a plain tensor, not a DTensor
    _, reference, _ = _one_process_reference()  # the optimizer was created before sharding: it followed
    final = torch.load(fsdp_run / "final.ckpt", weights_only=True)
    assert final["step"] == STEPS
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=1e-6)


@needs_fsdp
def test_full_checkpoint_is_one_file_that_loads_in_one_process(fsdp_run):
    make_model, reference, reference_optimizer = _one_process_reference()
    checkpoint = torch.load(fsdp_run / "final.ckpt", weights_only=True)
    model = make_model()
    model.load_state_dict(checkpoint["model"])  # the plain module's keys, full shapes
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    optimizer.load_state_dict(checkpoint["optimizer"])  # torch's numbered layout
    assert int(optimizer.state[model[1].lin.weight]["step"]) == STEPS
    expected = reference_optimizer.state[reference[1].lin.weight]["exp_avg_sq"]
    torch.testing.assert_close(optimizer.state[model[1].lin.weight]["exp_avg_sq"], expected, rtol=1e-4, atol=1e-9)
    assert not [p.name for p in fsdp_run.iterdir() if p.name.startswith(".")]  # no temporary file left


@needs_fsdp
def test_sharded_checkpoint_folder_resumes_bit_identically(fsdp_run):
    folder = fsdp_run / "sharded.ckpt"
    assert folder.is_dir() and (folder / ".metadata").is_file()
    assert torch.load(folder / "meta.pt", weights_only=True) == {"step": 2}  # the rest of the state, plain data
    result = torch.load(fsdp_run / "result.pt", weights_only=True)
    assert result["was_meta"] and result["step"] == 2 and result["remainder"] == {}
    final = torch.load(fsdp_run / "final.ckpt", weights_only=True)
    resumed = torch.load(fsdp_run / "resumed_sharded.ckpt", weights_only=True)
    _assert_same(final["model"], resumed["model"])
    _assert_same(final["optimizer"], resumed["optimizer"])


@needs_fsdp
def test_a_sharded_folder_outside_fsdp_names_the_way_to_one_file(fsdp_run, tmp_path):
    folder = fsdp_run / "sharded.ckpt"
    with pytest.raises(IsADirectoryError, match=r"sharded FSDP checkpoint.*SingleDeviceStrategy.*dcp_to_torch_save"):
        Fabric(accelerator="cpu").load(folder)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder, tmp_path / "one.pt")  # the conversion the message names, in one process
    weights = torch.load(tmp_path / "one.pt", weights_only=True)["model"]
    _assert_same(torch.load(fsdp_run / "full.ckpt", weights_only=True)["model"], weights)  # both after step 2


@needs_fsdp
def test_full_checkpoint_resumes_bit_identically(fsdp_run):
    final = torch.load(fsdp_run / "final.ckpt", weights_only=True)
    resumed = torch.load(fsdp_run / "resumed_full.ckpt", weights_only=True)
    _assert_same(final["model"], resumed["model"])
    _assert_same(final["optimizer"], resumed["optimizer"])


@needs_fsdp
def test_fsdp_methods_and_misuse_name_the_fix(fsdp_run):
    result = torch.load(fsdp_run / "result.pt", weights_only=True)
    assert result["marked"] == "no error" and result["same_by_hand"]  # mark_forward_method gathers like forward
    errors = result["errors"]
    assert errors["stepped_optimizer"].startswith("ValueError: fabric.setup(): under FSDP the optimizer already "
                                                  "holds state for 8 of the model's parameters")
    assert "fabric.setup_optimizers(torch.optim.AdamW(model.parameters()))" in errors["stepped_optimizer"]
    assert errors["load_folder_without_state"].startswith("ValueError: fabric.load(") and \
        "fabric.load(path, {'model': model, 'optimizer': optimizer})" in errors["load_folder_without_state"]
    assert errors["load_into_meta_model"].startswith("RuntimeError: fabric.load: the model under 'model' is on the "
                                                     "meta device") and "setup_module" in errors["load_into_meta_model"]
    assert errors["missing_key"].startswith("KeyError") and "['epoch']" in errors["missing_key"]
    assert errors["into_a_folder"].startswith("IsADirectoryError: Cannot write the sharded checkpoint") and \
        (fsdp_run / "notes" / "todo.txt").is_file()  # a folder that is not a checkpoint is never replaced
    assert "lacks 6 entries of the state to restore: model.0.weight, model.0.bias" in errors["filtered_strict"] and \
        "strict=False" in errors["filtered_strict"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_spawn_launch_runs_the_function_in_new_processes_and_returns_rank_zeros_result(tmp_path):
    _run(tmp_path, "spawn_train.py", SPAWN_SCRIPT)
    saved = torch.load(tmp_path / "spawn.pt", weights_only=False)
    result = saved["result"]
    assert result["rank"] == 0 and result["ranks"].tolist() == [0, 1] and result["scale"] == 3
    assert torch.equal(result["draw"], saved["draw_here"])  # the generators were the launching process's
    assert saved["unchanged_here"]  # the model passed in was copied to each process; this one is untouched
    assert saved["lite"] == (0, 2, 10)  # a subclass's run() is launched in new processes too (here forked)

    ns = _script_namespace()
    model = ns["make_model"]()  # one process, each step on the 8 samples both ranks saw
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = ns["data"]().tensors
    for step in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[step * 8:(step + 1) * 8]), y[step * 8:(step + 1) * 8]).backward()
        optimizer.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(result["weights"][key], value, rtol=0, atol=1e-6)


def test_ddp_spawn_launch_needs_a_function():
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    with pytest.raises(TypeError, match=r"start_method='spawn'.*pass it, `fabric\.launch\(train\)`"):
        fabric.launch()
    with pytest.raises(RuntimeError, match=r"in the process that starts the others.*fabric\.launch\(train\)"):
        fabric.setup(torch.nn.Linear(2, 2))
