"""Profilers: Trainer(profiler=...) reports per-action times; with no profiler nothing is instrumented."""
from __future__ import annotations

import json
import os

import pytest
import torch

import ember
from conftest import BoringModel, random_loader
from ember.profilers import (
    AdvancedProfiler, PassThroughProfiler, PyTorchProfiler, SimpleProfiler, resolve_profiler,
)

STEP = "[Strategy]SingleDeviceStrategy.training_step"
VAL_STEP = "[Strategy]SingleDeviceStrategy.validation_step"
BACKWARD = "[Strategy]SingleDeviceStrategy.backward"
FETCH = "[_TrainingEpochLoop].train_dataloader_next"




def _fit(trainer_kwargs, profiler, model=None, batches=8, epochs=1, **kwargs):
    model = model or BoringModel()
    trainer = ember.Trainer(max_epochs=epochs, limit_val_batches=2, num_sanity_val_steps=0, profiler=profiler,
                            **{**trainer_kwargs, **kwargs})
    trainer.fit(model, random_loader(n=8 * batches), random_loader(n=16))
    return trainer, model


def _calls(profiler: SimpleProfiler, suffix: str) -> int:
    found = [len(d) for name, d in profiler.recorded_durations.items() if name.endswith(suffix)]
    assert len(found) == 1, f"{suffix!r} in {sorted(profiler.recorded_durations)}"
    return found[0]


# --- a profiled run: each part built already timed, nothing patched ------------------------------------------
def test_a_profiled_run_times_the_loop_and_patches_nothing(trainer_kwargs):
    profiler = SimpleProfiler()
    seen = {}

    class Check(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["module"] = set(vars(pl_module)) & {"training_step", "backward", "optimizer_zero_grad"}
            seen["opt"] = "step" in vars(trainer.optimizers[0])

    model = BoringModel()
    trainer = ember.Trainer(max_epochs=2, limit_val_batches=2, num_sanity_val_steps=0, callbacks=[Check()],
                            profiler=profiler, **trainer_kwargs)
    trainer.fit(model, random_loader(n=48), random_loader(n=16))  # 6 batches per epoch
    assert _calls(profiler, STEP) == 12
    assert _calls(profiler, BACKWARD) == 12
    assert _calls(profiler, "BoringModel.optimizer_step") == 12
    assert _calls(profiler, "BoringModel.optimizer_zero_grad") == 12
    assert _calls(profiler, VAL_STEP) == 4
    assert _calls(profiler, FETCH) in (12, 14)  # the fetch that ends an epoch is timed too
    assert _calls(profiler, "[Callback]Check.on_train_batch_end") == 12
    # no instance attribute shadows a method of the module or the optimizer, during the run or after it
    assert seen == {"module": set(), "opt": False}
    assert not {"backward", "optimizer_zero_grad", "validation_step", "training_step"} & set(vars(model))
    assert "step" not in vars(trainer.optimizers[0])


def test_no_profiler_leaves_the_hot_path_alone(trainer_kwargs):
    seen = {}

    class Check(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["module"] = set(vars(pl_module)) & {"training_step", "backward", "optimizer_zero_grad"}
            seen["step"] = trainer._training_step
            seen["opt"] = "step" in vars(trainer.optimizers[0])
            seen["loader"] = type(trainer.data.train_loader_for_epoch(trainer.current_epoch))

    model = BoringModel()
    trainer = ember.Trainer(max_epochs=1, callbacks=[Check()], **trainer_kwargs)
    trainer.fit(model, random_loader(n=16))
    assert seen["module"] == set() and not seen["opt"]
    assert seen["step"] == model.training_step  # the bound method itself, not a wrapper
    assert seen["loader"] is torch.utils.data.DataLoader
    assert model.training_step.__func__ is BoringModel.training_step


# --- choosing a profiler ---------------------------------------------------------------------------------------
def test_resolve_profiler():
    assert isinstance(resolve_profiler(None), PassThroughProfiler)
    assert isinstance(resolve_profiler("simple"), SimpleProfiler)
    assert isinstance(resolve_profiler("Advanced"), AdvancedProfiler)
    assert isinstance(resolve_profiler("pytorch"), PyTorchProfiler)
    mine = SimpleProfiler(extended=False)
    assert resolve_profiler(mine) is mine
    with pytest.raises(ValueError, match=r"profiler='fancy'.*'simple', 'advanced' or 'pytorch'"):
        resolve_profiler("fancy")
    with pytest.raises(TypeError, match="got a int"):
        resolve_profiler(3)


def test_simple_profiler_start_stop_rules():
    p = SimpleProfiler()
    p.start("a")
    with pytest.raises(ValueError, match="'a', which has already started"):
        p.start("a")
    p.stop("a")
    with pytest.raises(ValueError, match="'b', which was never started"):
        p.stop("b")
    with p.profile("b"):
        pass
    assert [len(p.recorded_durations[k]) for k in ("a", "b")] == [1, 1]
    lines = p.summary().splitlines()
    assert lines[0] == "Profiler Report"
    assert [c.strip() for c in lines[3].strip("|").split("|")] == [
        "Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
    assert lines[5].split("|")[3].strip() == "2"  # Total: number of calls
    short = SimpleProfiler(extended=False)
    with short.profile("x"):
        pass
    assert "Num calls" not in short.summary() and "Mean duration (s)" in short.summary()


def test_advanced_profiler_nested_actions():
    p = AdvancedProfiler(line_count_restriction=5)
    p.start("outer")
    with p.profile("inner"):
        sum(range(1000))
    p.stop("outer")
    with pytest.raises(ValueError, match="not the action running now"):
        p.stop("outer")
    text = p.summary()
    assert "Profile stats for: outer" in text and "Profile stats for: inner" in text


def test_pytorch_profiler_rejects_unknown_sort_key():
    with pytest.raises(ValueError, match="sort_by_key='wall'.*cpu_time_total"):
        PyTorchProfiler(sort_by_key="wall")


# --- through the Trainer ---------------------------------------------------------------------------------
def test_trainer_rejects_unknown_profiler_name():
    with pytest.raises(ValueError, match="'simple', 'advanced' or 'pytorch'"):
        ember.Trainer(profiler="fancy")


def test_trainer_default_profiler_is_passthrough(trainer_kwargs):
    trainer, model = _fit(trainer_kwargs, None)
    assert isinstance(trainer.profiler, PassThroughProfiler)
    assert "training_step" not in vars(model) and "backward" not in vars(model)


def test_simple_profiler_fit_counts_and_prints(trainer_kwargs, capsys):
    trainer, model = _fit(trainer_kwargs, "simple", batches=8)
    p = trainer.profiler
    assert isinstance(p, SimpleProfiler)
    assert _calls(p, STEP) == 8
    assert _calls(p, BACKWARD) == 8
    assert _calls(p, "[LightningModule]BoringModel.optimizer_step") == 8
    assert _calls(p, VAL_STEP) == 2
    assert _calls(p, FETCH) in (8, 9)
    out = capsys.readouterr().out
    assert "FIT Profiler Report" in out and STEP in out and "optimizer_step" in out
    assert "backward" not in vars(model) and "step" not in vars(trainer.optimizers[0])  # undone after the run


def test_hooks_are_named_like_lightning(trainer_kwargs):
    class Counter(ember.Callback):
        def __init__(self):
            self.n = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.n += 1

    class Model(BoringModel):
        def on_train_epoch_start(self):
            self.log("marker", 1.0)  # self.log still knows which hook is running

    counter = Counter()
    trainer, _ = _fit(trainer_kwargs, "simple", model=Model(), batches=4, epochs=2, callbacks=[counter])
    p = trainer.profiler
    assert counter.n == 8
    assert len(p.recorded_durations["[Callback]Counter.on_train_batch_end"]) == 8
    assert len(p.recorded_durations["[LightningModule]Model.on_train_epoch_start"]) == 2


def test_profile_blocks_in_user_code(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            with self.trainer.profiler.profile("my_forward"):
                return super().training_step(batch, batch_idx)

    trainer, _ = _fit(trainer_kwargs, "simple", model=Model(), batches=3)
    assert len(trainer.profiler.recorded_durations["my_forward"]) == 3
    _fit(trainer_kwargs, None, model=Model(), batches=2)  # PassThroughProfiler: the block just runs


@pytest.mark.parametrize("variant", ["manual", "custom_optimizer_step"])
def test_optimizer_step_counted_in_other_optimisation_paths(trainer_kwargs, variant):
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(self._loss(batch))
            opt.step()

    class Custom(BoringModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer.step(closure=optimizer_closure)

    trainer, _ = _fit(trainer_kwargs, "simple", model=Manual() if variant == "manual" else Custom(), batches=5)
    p = trainer.profiler
    assert _calls(p, ".optimizer_step") == 5
    assert _calls(p, BACKWARD) == 5


def test_simple_profiler_writes_files_per_stage(trainer_kwargs, tmp_path):
    profiler = SimpleProfiler(dirpath=tmp_path / "prof", filename="perf_logs")
    trainer, model = _fit(trainer_kwargs, profiler, batches=4)
    trainer.test(model, random_loader(n=16), verbose=False)
    fit_text = (tmp_path / "prof" / "fit-perf_logs.txt").read_text()
    assert fit_text.startswith("FIT Profiler Report") and STEP in fit_text
    assert "[Strategy]SingleDeviceStrategy.test_step" in (tmp_path / "prof" / "test-perf_logs.txt").read_text()


def test_filename_without_dirpath_goes_to_log_dir(trainer_kwargs, tmp_path):
    kwargs = {**trainer_kwargs, "default_root_dir": str(tmp_path / "root")}
    _fit(kwargs, SimpleProfiler(filename="perf"), batches=2)
    assert (tmp_path / "root" / "fit-perf.txt").is_file()


def test_advanced_profiler_fit(trainer_kwargs, tmp_path):
    profiler = AdvancedProfiler(dirpath=tmp_path, filename="adv", line_count_restriction=10)
    _fit(trainer_kwargs, profiler, batches=3)
    text = (tmp_path / "fit-adv.txt").read_text()
    assert f"Profile stats for: {STEP}" in text
    assert "(training_step)" in text  # the user's function, as pstats names it
    assert f"Profile stats for: {BACKWARD}" in text


def test_pytorch_profiler_table_and_chrome_trace(trainer_kwargs, tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="torch", row_limit=50)
    _fit(trainer_kwargs, profiler, batches=3)
    trace = tmp_path / "fit-torch.pt.trace.json"
    assert profiler.trace_paths == [str(trace)]
    with open(trace) as f:
        events = json.load(f)["traceEvents"]
    names = {e.get("name") for e in events}
    assert STEP in names and BACKWARD in names
    assert "[pl][module]torch.nn.modules.linear.Linear: layer" in names
    table = (tmp_path / "fit-torch.txt").read_text()
    assert STEP in table and "aten::addmm" in table


def test_pytorch_profiler_with_schedule_writes_a_trace_per_cycle(trainer_kwargs, tmp_path):
    schedule = torch.profiler.schedule(wait=1, warmup=1, active=2, repeat=2)
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="sched", schedule=schedule, record_module_names=False)
    _fit(trainer_kwargs, profiler, batches=8)
    assert [os.path.basename(p) for p in profiler.trace_paths] == ["fit-sched-0.pt.trace.json",
                                                                   "fit-sched-1.pt.trace.json"]
    for path in profiler.trace_paths:
        with open(path) as f:
            assert json.load(f)["traceEvents"]
