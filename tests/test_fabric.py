"""ember.fabric.Fabric: a loop written with Fabric gives the numbers of the same hand-written loop; save/load
resumes bit-identically; precision, data set-up, collectives, callbacks and loggers behave as Lightning's Fabric;
misuse fails naming the fix; two gloo processes started by `ember run` equal one process on the whole batch."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

import ember
from ember.fabric import Fabric
from ember.loggers import CSVLogger

SRC = Path(__file__).resolve().parent.parent / "src"


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _data(n: int = 64, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True).sin())


def _fabric_steps(fabric: Fabric, model, optimizer, loader, steps: int, start: int = 0) -> int:
    """The loop a Fabric user writes, with clipping; returns the step counter."""
    step = start
    for x, y in loader:
        if step >= steps:
            break
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, max_norm=0.5)
        optimizer.step()
        step += 1
    return step


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_fabric_loop_gives_the_weights_of_the_same_hand_written_loop():
    plain = _model()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    for x, y in DataLoader(_data(), batch_size=8):
        plain_opt.zero_grad()
        torch.nn.functional.mse_loss(plain(x), y).backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
        plain_opt.step()

    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.launch()
    module = _model()
    model, optimizer = fabric.setup(module, torch.optim.AdamW(module.parameters(), lr=1e-2))
    loader = fabric.setup_dataloaders(DataLoader(_data(), batch_size=8))
    assert _fabric_steps(fabric, model, optimizer, loader, steps=100) == len(loader) == 8
    assert _same(model.state_dict(), plain.state_dict())  # exactly, and with the user's own keys
    assert model.module is module and isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.state_dict()["state"][0]["step"] == 8


def test_loss_scaling_is_undone_before_clipping_and_the_step():
    """The '16-mixed' path (a GradScaler) on the CPU: scaling by a power of two and unscaling are exact, so the
    weights equal the unscaled loop's, clipping included (gradients unscaled once, before the clip)."""
    fabric = Fabric(accelerator="cpu")
    fabric._precision.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=4)
    module = _model()
    model, optimizer = fabric.setup(module, torch.optim.AdamW(module.parameters(), lr=1e-2))
    _fabric_steps(fabric, model, optimizer, fabric.setup_dataloaders(DataLoader(_data(), batch_size=8)), steps=8)
    plain = Fabric(accelerator="cpu")
    reference = _model()
    model, optimizer = plain.setup(reference, torch.optim.AdamW(reference.parameters(), lr=1e-2))
    _fabric_steps(plain, model, optimizer, plain.setup_dataloaders(DataLoader(_data(), batch_size=8)), steps=8)
    assert _same(module.state_dict(), reference.state_dict()) and fabric._precision.scaler.get_scale() == 4096  # updated each step


def test_setup_module_then_setup_optimizers_as_for_sharded_models():
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup_module(_model())
    assert len(list(model.parameters())) == 4  # the user's parameters, each once
    first, second = fabric.setup_optimizers(torch.optim.SGD(model.module[0].parameters(), lr=0.1),
                                            torch.optim.SGD(model.module[2].parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    fabric.backward(model(torch.ones(3, 6)).sum())
    first.step(), second.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.custom_flag = True  # attributes set on the wrapper land on the user's module, as in Lightning
    assert model.module.custom_flag and model.training
    model.eval()
    assert not model.module.training


def test_save_then_load_resumes_bit_identically(tmp_path):
    fabric = Fabric(accelerator="cpu")
    module = _model()
    model, optimizer = fabric.setup(module, torch.optim.Adam(module.parameters(), lr=1e-2))
    loader = fabric.setup_dataloaders(DataLoader(_data(), batch_size=8))
    _fabric_steps(fabric, model, optimizer, loader, steps=8)
    straight = copy.deepcopy(module.state_dict())

    first = Fabric(accelerator="cpu")
    module = _model()
    model, optimizer = first.setup(module, torch.optim.Adam(module.parameters(), lr=1e-2))
    loader = first.setup_dataloaders(DataLoader(_data(), batch_size=8))
    step = _fabric_steps(first, model, optimizer, loader, steps=3)
    first.save(tmp_path / "run.ckpt", {"model": model, "optimizer": optimizer, "step": step, "note": "kept"})
    assert not [p for p in os.listdir(tmp_path) if p != "run.ckpt"]  # written atomically: no temporary left

    again = Fabric(accelerator="cpu")
    module = _model(seed=5)  # other weights: all of them must come from the file
    model, optimizer = again.setup(module, torch.optim.Adam(module.parameters(), lr=1e-2))
    state = {"model": model, "optimizer": optimizer, "step": 0}
    remainder = again.load(tmp_path / "run.ckpt", state)
    assert state["step"] == 3 and remainder == {"note": "kept"}  # plain values replaced in place; the rest returned
    loader = again.setup_dataloaders(DataLoader(_data(), batch_size=8))
    batches = iter(loader)
    for _ in range(state["step"]):  # the user skips what was trained, as in their own loop
        next(batches)
    for x, y in batches:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        again.backward(loss)
        again.clip_gradients(model, optimizer, max_norm=0.5)
        optimizer.step()
    assert _same(module.state_dict(), straight)

    whole = again.load(tmp_path / "run.ckpt")  # without state: the file as plain data
    assert set(whole) == {"model", "optimizer", "step", "note"} and whole["step"] == 3
    torch.save(whole["model"], tmp_path / "raw.pt")
    fresh = _model(seed=9)
    again.load_raw(tmp_path / "raw.pt", fresh)
    assert _same(fresh.state_dict(), whole["model"])
    with pytest.raises(KeyError, match=r"asks for \['epoch'\].*strict=False"):
        again.load(tmp_path / "run.ckpt", {"model": model, "epoch": 0})
    assert again.load(tmp_path / "run.ckpt", {"epoch": 0}, strict=False).keys() == whole.keys()


def test_save_filter_and_stateful_objects(tmp_path):
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def state_dict(self) -> dict:
            return {"n": self.n}

        def load_state_dict(self, state: dict) -> None:
            self.n = state["n"]

    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(_model())
    counter = Counter()
    counter.n = 7
    fabric.save(tmp_path / "f.ckpt", {"model": model, "counter": counter},
                filter={"model": lambda name, value: name.endswith("weight")})
    saved = torch.load(tmp_path / "f.ckpt", weights_only=True)
    assert set(saved["model"]) == {"0.weight", "2.weight"} and saved["counter"] == {"n": 7}
    other = Counter()
    fabric.load(tmp_path / "f.ckpt", {"counter": other})
    assert other.n == 7
    with pytest.raises(ValueError, match=r"filter=.*names \['optimizer'\]"):
        fabric.save(tmp_path / "g.ckpt", {"model": model}, filter={"optimizer": lambda n, v: True})


def test_bf16_mixed_runs_the_forward_under_autocast_on_the_cpu():
    seen = {}

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 4)

        def forward(self, x):
            seen["input"] = x.dtype
            out = self.layer(x)
            seen["matmul"] = out.dtype
            return out

    fabric = Fabric(accelerator="cpu", precision="bf16-mixed")
    module = Probe()
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    before = module.layer.weight.detach().clone()
    out = model(torch.randn(8, 4))
    # as Lightning's Fabric: inputs cast to bf16, autocast inside, the output back in float32
    assert (seen["input"], seen["matmul"], out.dtype) == (torch.bfloat16, torch.bfloat16, torch.float32)
    assert module.layer.weight.dtype == torch.float32  # the weights stay float32
    fabric.backward(out.pow(2).mean())
    optimizer.step()
    assert not torch.equal(before, module.layer.weight)
    with fabric.autocast():
        assert torch.nn.functional.linear(torch.randn(2, 4), module.layer.weight).dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="Using `precision='bf16-mixed'` instead"):
        assert Fabric(accelerator="cpu", precision="16-mixed")._precision.name == "bf16-mixed"


def test_true_precision_and_init_module_create_parameters_in_the_dtype():
    fabric = Fabric(accelerator="cpu", precision="bf16-true")
    with fabric.init_module():
        layer = torch.nn.Linear(3, 3)
    assert layer.weight.dtype == torch.bfloat16 and torch.get_default_dtype() == torch.float32
    model = fabric.setup(torch.nn.Linear(3, 3))
    assert model.weight.dtype == torch.bfloat16 and model(torch.randn(2, 3)).dtype == torch.float32
    assert model.dtype == torch.bfloat16 and model.device == fabric.device == torch.device("cpu")
    assert type(fabric.accelerator).__name__ == "CPUAccelerator" and fabric.accelerator.auto_device_count() >= 1

    class Sevens(torch.nn.Linear):
        def reset_parameters(self) -> None:
            torch.nn.init.constant_(self.weight, 7.0)

    with Fabric(accelerator="cpu").init_module(empty_init=True):
        skipped = Sevens(64, 64, bias=False)
    with Fabric(accelerator="cpu").init_module(empty_init=False):
        initialised = Sevens(64, 64, bias=False)
    assert not torch.all(skipped.weight == 7) and torch.all(initialised.weight == 7)


def test_setup_dataloaders_keeps_the_loaders_order_and_sets_the_sampler_epoch():
    class Recording(SequentialSampler):
        epochs: list = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

    data = TensorDataset(torch.arange(10).float())
    fabric = Fabric(accelerator="cpu")
    plain, recorded = fabric.setup_dataloaders(DataLoader(data, batch_size=3, shuffle=False),
                                               DataLoader(data, batch_size=4, sampler=Recording(data)))
    assert [b[0].tolist() for b in plain] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert len(plain) == 4 and plain.batch_size == 3 and plain.device == torch.device("cpu")
    list(recorded), list(recorded)
    assert Recording.epochs == [0, 1]
    untouched = fabric.setup_dataloaders(DataLoader(data, batch_size=5), move_to_device=False)
    assert untouched.device is None and [b[0].tolist() for b in untouched][0] == [0, 1, 2, 3, 4]


def test_collectives_callbacks_and_loggers_in_one_process(tmp_path, capsys):
    calls = []

    class Watcher:
        def on_epoch(self, epoch):  # a hook that takes fewer keyword arguments than passed: they are filtered
            calls.append(("epoch", epoch))

        def on_after_optimizer_step(self, optimizer):
            calls.append(("stepped", type(optimizer).__name__))

        def on_after_setup(self, fabric, module):
            calls.append(("setup", type(module.module).__name__))

    logger = CSVLogger(tmp_path)
    fabric = Fabric(accelerator="cpu", callbacks=[Watcher(), object()], loggers=logger)
    assert (fabric.world_size, fabric.global_rank, fabric.local_rank, fabric.node_rank) == (1, 0, 0, 0)
    assert fabric.is_global_zero and fabric.device == torch.device("cpu") and fabric.logger is logger
    assert fabric.loggers == [logger] and isinstance(fabric.strategy, ember.strategies.SingleDeviceStrategy)
    module = torch.nn.Linear(2, 1)
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(1, 2)).sum())
    optimizer.step()
    fabric.call("on_epoch", epoch=3, unused="dropped")
    assert calls == [("setup", "Linear"), ("stepped", "SGD"), ("epoch", 3)]

    class NotAHook:
        on_epoch = 5

    with pytest.warns(UserWarning, match=r"skips NotAHook\.on_epoch: it is a int, not a method"):
        Fabric(accelerator="cpu", callbacks=NotAHook()).call("on_epoch", epoch=1)

    assert torch.equal(fabric.all_reduce(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))
    assert fabric.all_gather({"n": 3})["n"].item() == 3 and fabric.broadcast("x") == "x"
    with fabric.rank_zero_first():
        fabric.print("first")
    fabric.barrier()
    assert capsys.readouterr().out == "first\n"
    fabric.log("loss", torch.tensor(0.25))
    fabric.log_dict({"acc": 0.5}, step=7)
    logger.finalize("success")
    rows = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    assert rows == ["acc,loss,step", ",0.25,0", "0.5,,7"]
    assert Fabric.seed_everything(3) == 3 and os.environ["PL_SEED_WORKERS"] == "1"  # workers seeded, as Lightning's
    assert fabric.to_device({"x": torch.ones(1)})["x"].device == fabric.device


def test_misuse_fails_naming_the_fix(tmp_path):
    # the checks the Trainer shares name the Fabric call that was wrong
    for wrong, message in [(dict(accelerator="tpu"), r"Fabric\(accelerator='tpu'\) is not supported"),
                           (dict(precision="8-bit"), r"Fabric\(precision='8-bit'\) is not supported"),
                           (dict(strategy="nope"), r"Fabric\(strategy='nope'\) is not a strategy"),
                           (dict(devices=0), r"Fabric\(devices=0\) must be a positive int"),
                           (dict(num_nodes=0), r"Fabric\(num_nodes=0\) must be an int >= 1")]:
        with pytest.raises(ValueError, match=message):
            Fabric(**wrong)
    fabric = Fabric(accelerator="cpu")
    with pytest.raises(RuntimeError, match=r"before any model was set up.*fabric\.setup\(model, optimizer\)"):
        fabric.backward(torch.ones(1, requires_grad=True).sum())
    module = torch.nn.Linear(2, 2)
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"already set up: set each model up once"):
        fabric.setup(model)
    with pytest.raises(ValueError, match=r"optimizer that was already set up"):
        fabric.setup_optimizers(optimizer)
    with pytest.raises(ValueError, match=r"setup_optimizers\(\) got no optimizer"):
        fabric.setup_optimizers()
    with pytest.raises(TypeError, match=r"takes torch DataLoaders; got list"):
        fabric.setup_dataloaders([1, 2])
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*nope\.ckpt.*save one first"):
        fabric.load(tmp_path / "nope.ckpt", {"model": model})
    with pytest.raises(ValueError, match=r"pass exactly one of them"):
        fabric.clip_gradients(model, optimizer)
    with pytest.raises(TypeError, match=r"model returned by fabric\.setup"):
        fabric.no_backward_sync(module)
    with pytest.raises(TypeError, match=r"not its result"):
        fabric.launch(3)
    with pytest.raises(TypeError, match=r"must take the Fabric object"):
        fabric.launch(lambda: None)
    assert fabric.launch(lambda f, n: (f is fabric, n), 4) == (True, 4)
    spawning = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")  # FSDP and ddp_spawn: test_fabric_fsdp.py
    with pytest.raises(TypeError, match=r"starts new processes that run a function: pass it"):
        spawning.launch()
    unlaunched = Fabric(accelerator="cpu", devices=2)  # nothing starts until launch()
    assert unlaunched.world_size == 2
    with pytest.raises(RuntimeError, match=r"fabric\.setup\(\) was called before fabric\.launch\(\)"):
        unlaunched.setup(torch.nn.Linear(2, 2))
    with pytest.raises(IndexError, match=r"no logger.*Fabric\(loggers="):
        fabric.logger


def test_a_subclass_run_method_launches_first():
    class Lite(Fabric):
        def run(self, scale):
            return self._launched, scale * 2

    assert Lite(accelerator="cpu").run(4) == (True, 8)



class _Recorder:
    """A logger that keeps what it is sent."""

    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((dict(metrics), step))


def test_a_lightning_module_under_fabric_logs_steps_and_runs_hooks_through_fabric():
    calls = []

    class Regressor(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _model()

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            self.log("hidden", 1.0, logger=False)  # Fabric has nowhere else to send it: dropped, as in Lightning
            return loss

        def on_train_epoch_start(self):
            calls.append(("epoch_start", self.trainer.world_size, self.trainer.is_global_zero))

    recorder = _Recorder()
    fabric = Fabric(accelerator="cpu", loggers=recorder)
    module = Regressor()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    model, optimizer = fabric.setup(module, opt)
    assert module.fabric is fabric and module.optimizers() is optimizer and module.logger is recorder
    fabric.call("on_train_epoch_start")  # the module is one of Fabric's callbacks now
    assert calls == [("epoch_start", 1, True)]

    plain = _model()
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    for batch_idx, (x, y) in enumerate(DataLoader(_data(), batch_size=8)):
        loss = model.training_step((x, y), batch_idx)
        module.manual_backward(loss)
        module.optimizers().step()
        optimizer.zero_grad()
        plain_opt.zero_grad()
        expected = torch.nn.functional.mse_loss(plain(x), y)
        expected.backward()
        plain_opt.step()
        assert recorder.rows[-1] == ({"train_loss": expected.item()}, None)
    assert len(recorder.rows) == 8
    assert _same(module.net.state_dict(), plain.state_dict())

    with pytest.raises(AttributeError, match="set up by Fabric.*no `max_epochs`"):
        module.trainer.max_epochs
    with pytest.raises(ValueError, match="nested dictionaries"):
        module.log_dict({"a": {"b": 1.0}})



def test_a_lightning_module_under_fabric_clips_through_fabric():
    fabric = Fabric(accelerator="cpu")
    module = ember.LightningModule()
    module.layer = torch.nn.Linear(3, 1)
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    fabric.backward(model.layer(torch.full((4, 3), 10.0)).sum())
    module.clip_gradients(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="value")
    assert module.layer.weight.grad.abs().max().item() == 0.5
    module.clip_gradients(optimizer, gradient_clip_val=0.1)  # by norm, the default
    norm = torch.cat([p.grad.flatten() for p in module.parameters()]).norm()
    assert abs(norm.item() - 0.1) < 1e-5


def test_hooks_on_the_set_up_model_still_run_on_the_direct_path():
    fabric = Fabric(accelerator="cpu")  # '32-true' in one process: the set-up model calls the module directly
    model = fabric.setup(torch.nn.Linear(2, 1))
    seen = []
    handle = model.register_forward_hook(lambda module, args, output: seen.append("wrapper"))
    inner = model.module.register_forward_hook(lambda module, args, output: seen.append("module"))
    model(torch.ones(1, 2))
    handle.remove()
    glob = torch.nn.modules.module.register_module_forward_hook(lambda module, args, output: seen.append("global"))
    model(torch.ones(1, 2))
    glob.remove()
    inner.remove()
    assert seen == ["module", "wrapper", "global", "module", "global"]

IMPORTS_SCRIPT = textwrap.dedent('''
    import lightning as L
    from lightning.fabric import Fabric
    from lightning.fabric.accelerators import CUDAAccelerator
    from lightning.fabric.loggers import CSVLogger, Logger
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.fabric.strategies import DDPStrategy, Strategy
    from lightning.fabric.utilities import rank_zero_only
    from lightning.fabric.utilities.seed import seed_everything
    from lightning.fabric.wrappers import _unwrap_objects, is_wrapped
    from lightning_fabric.utilities.rank_zero import rank_zero_warn
    from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
    from lightning.fabric.utilities.data import AttributeDict, suggested_max_num_workers
    from lightning.fabric.utilities.seed import reset_seed
    from lightning.fabric.utilities.throughput import ThroughputMonitor, measure_flops
    from lightning.fabric.utilities.types import Optimizable
    import ember, torch

    seed_everything(5, verbose=False)
    first = torch.rand(2)
    reset_seed()  # seeds again with what seed_everything set
    assert torch.equal(first, torch.rand(2))
    assert convert_tensors_to_scalars({"a": torch.tensor(1.5)}) == {"a": 1.5}

    assert Fabric is ember.Fabric and DDPStrategy is ember.strategies.DDPStrategy
    assert seed_everything is ember.seed_everything and rank_zero_only is ember.utilities.rank_zero_only
    assert L.fabric.strategies.fsdp.FSDPStrategy is ember.strategies.fsdp.FSDPStrategy  # a submodule by attribute
    logger = CSVLogger(root_dir="logs", name="run")  # Fabric's argument name
    assert isinstance(logger, Logger) and logger.root_dir == "logs"
    fabric = Fabric(accelerator="cpu", loggers=logger)
    module = torch.nn.Linear(2, 1)
    model, opt = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    assert is_wrapped(model) and _unwrap_objects({"m": [model, opt]}) == {"m": [module, opt.optimizer]}
    assert isinstance(opt, Optimizable) and isinstance(opt.optimizer, Optimizable)
    try:
        ThroughputMonitor(fabric)
    except NotImplementedError as error:  # importable, and says what to use when built
        assert "ember.callbacks.ThroughputMonitor" in str(error)
    fabric.log_dict({"a": torch.tensor(1.5)})
    fabric.log("a", 2.5)
    logger.save()
    print(open(logger.log_dir + "/metrics.csv").read().split())
''')


def test_lightning_fabric_import_paths_answer_with_ember_objects(tmp_path):
    (tmp_path / "imports.py").write_text(IMPORTS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "ember", "run", "imports.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "['a,step', '1.5,0', '2.5,1']"
    assert (tmp_path / "logs" / "run" / "version_0" / "metrics.csv").is_file()

DDP_SCRIPT = textwrap.dedent('''
    import sys
    import lightning as L
    import torch
    from lightning.fabric import Fabric
    from torch.utils.data import DataLoader, TensorDataset

    out = sys.argv[1]
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    assert L.Fabric is Fabric
    fabric.launch()
    rank = fabric.global_rank
    class Net(torch.nn.Sequential):
        def training_step(self, batch):  # called on the set-up model: runs through DDP, as forward does
            return torch.nn.functional.mse_loss(self(batch[0]), batch[1])

    torch.manual_seed(0)
    module = Net(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    loader = fabric.setup_dataloaders(DataLoader(TensorDataset(x, x.sum(1, keepdim=True).sin()), batch_size=4))
    assert len(loader) == 8  # each rank: every other sample, in the loader's order
    batches = iter(loader)
    for _ in range(4):  # a step: two micro-batches, the first without the gradient all-reduce
        for micro in range(2):
            xb, yb = next(batches)
            with fabric.no_backward_sync(model, enabled=micro == 0):
                loss = torch.nn.functional.mse_loss(model(xb), yb) if micro == 0 else model.training_step((xb, yb))
                fabric.backward(loss / 2)
        optimizer.step()
        optimizer.zero_grad()
    gathered = fabric.all_gather(torch.tensor([rank]))
    total = fabric.all_reduce(torch.tensor(float(rank + 1)), reduce_op="sum")
    with fabric.rank_zero_first():  # rank 0 writes, the other reads after it: no collective inside
        if rank == 0:
            open(out + "/first.txt", "w").write("rank 0 wrote first")
        order = open(out + "/first.txt").read()
    word = fabric.broadcast("from rank %d" % rank)
    fabric.save(out + "/fabric.ckpt", {"model": model, "optimizer": optimizer, "step": 4})
    torch.save({"weights": module.state_dict(), "gathered": gathered, "sum": total, "word": word,
                "order": order},
               out + "/rank%d.pt" % rank)
''')


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_started_by_ember_run_equal_one_process_on_the_whole_batch(tmp_path):
    (tmp_path / "train.py").write_text(DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("SLURM_", "TORCHELASTIC", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
         "LOCAL_WORLD_SIZE", "PL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "ember", "run", "train.py", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    module = _model()  # one process: each step on the 16 samples both ranks saw, in the loader's order
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for x, y in DataLoader(_data(), batch_size=16):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(module(x), y).backward()
        optimizer.step()
    for result in ranks:
        assert all(torch.allclose(result["weights"][k], v, atol=1e-6, rtol=1e-5)
                   for k, v in module.state_dict().items())
    assert _same(ranks[0]["weights"], ranks[1]["weights"])  # the replicas stay identical
    assert ranks[0]["gathered"].tolist() == [[0], [1]] and ranks[1]["sum"].item() == 3.0
    assert ranks[0]["word"] == ranks[1]["word"] == "from rank 0" and ranks[1]["order"] == "rank 0 wrote first"
    saved = torch.load(tmp_path / "fabric.ckpt", weights_only=True)
    assert _same(saved["model"], ranks[0]["weights"]) and saved["step"] == 4
