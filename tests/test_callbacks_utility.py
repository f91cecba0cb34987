"""LearningRateMonitor, Timer, LambdaCallback, GradientAccumulationScheduler, OnExceptionCheckpoint,
DeviceStatsMonitor, BasePredictionWriter and ThroughputMonitor, end to end through the Trainer."""
from __future__ import annotations

import csv
import os
import types
from datetime import timedelta

import pytest
import torch
from conftest import BoringModel, random_loader

import ember
from ember.callbacks import timer as timer_module
from ember.callbacks.device_stats_monitor import DeviceStatsMonitor
from ember.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from ember.callbacks.lambda_function import LambdaCallback
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.callbacks.prediction_writer import BasePredictionWriter
from ember.callbacks.throughput_monitor import ThroughputMonitor, measure_flops
from ember.loggers import CSVLogger


def make_trainer(tmp_path, **kwargs):
    defaults = dict(max_epochs=1, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    accelerator="cpu", enable_checkpointing=False)
    defaults.update(kwargs)
    return ember.Trainer(**defaults)


def csv_rows(logger):
    with open(os.path.join(logger.log_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def column(rows, key):
    """(step, value) for every row that has ``key``."""
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


# --- LearningRateMonitor -----------------------------------------------------------------------------------
class TwoGroupAdam(BoringModel):
    def __init__(self, interval="step"):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.interval = interval

    def configure_optimizers(self):
        opt = torch.optim.Adam([{"params": self.layer.parameters()},
                                {"params": self.head.parameters(), "lr": 0.01}], lr=0.1, betas=(0.8, 0.99))
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}


def test_lr_monitor_logs_each_param_group_and_momentum_on_logging_steps(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = LearningRateMonitor(log_momentum=True)
    trainer = make_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[monitor], log_every_n_steps=2)
    trainer.fit(TwoGroupAdam("step"), random_loader(n=48))  # 6 batches per epoch, 12 steps
    rows = csv_rows(logger)
    # as in Lightning: logged before the batch of every second step, at that batch's step; halved every step
    assert column(rows, "lr-Adam/pg1") == [(s, 0.1 * 0.5 ** s) for s in (1, 3, 5, 7, 9, 11)]
    assert column(rows, "lr-Adam/pg2") == [(s, 0.01 * 0.5 ** s) for s in (1, 3, 5, 7, 9, 11)]
    assert {v for _, v in column(rows, "lr-Adam/pg1-momentum")} == {0.8}  # Adam's betas[0]
    assert monitor.lrs["lr-Adam/pg1"] == pytest.approx([0.1 * 0.5 ** s for s in (1, 3, 5, 7, 9, 11)])
    assert monitor.last_momentum_values["lr-Adam/pg2-momentum"] == 0.8


def test_lr_monitor_epoch_scheduler_logs_at_epoch_start_with_its_name(tmp_path):
    class Named(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0, weight_decay=0.1)
            return [opt], [{"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.1), "name": "my_lr"}]

    logger = CSVLogger(tmp_path)
    monitor = LearningRateMonitor(log_weight_decay=True)
    trainer = make_trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[monitor], log_every_n_steps=1)
    trainer.fit(Named(), random_loader(n=32))  # 4 steps per epoch
    rows = csv_rows(logger)
    assert column(rows, "my_lr") == [(0, 1.0), (4, pytest.approx(0.1)), (8, pytest.approx(0.01))]
    assert {v for _, v in column(rows, "my_lr-weight_decay")} == {0.1}
    assert "lr-SGD" not in rows[0]


def test_lr_monitor_without_scheduler_names_optimizer_class(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = LearningRateMonitor(logging_interval="epoch")
    trainer = make_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[monitor])
    trainer.fit(BoringModel(), random_loader(n=16))
    assert column(csv_rows(logger), "lr-SGD") == [(0, 0.1), (2, 0.1)]
    assert monitor.lrs == {"lr-SGD": [0.1, 0.1]}
    assert float(trainer.callback_metrics["lr-SGD"]) == pytest.approx(0.1)  # as in Lightning: programs read it there


def test_lr_monitor_needs_a_logger(tmp_path):
    trainer = make_trainer(tmp_path, logger=False, callbacks=[LearningRateMonitor()])
    with pytest.raises(RuntimeError, match="Cannot use LearningRateMonitor callback with Trainer that has no logger"):
        trainer.fit(BoringModel(), random_loader())
    with pytest.raises(ValueError, match="logging_interval='batch'"):
        LearningRateMonitor(logging_interval="batch")


# --- Timer -------------------------------------------------------------------------------------------------
class FakeClock:
    """Stands in for the ``time`` module inside timer.py; training_step advances it by one second."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


class TickingModel(BoringModel):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def training_step(self, batch, batch_idx):
        self.clock.now += 1.0
        return super().training_step(batch, batch_idx)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timer_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_timer_stops_training_once_duration_is_reached(tmp_path, clock, capsys):
    timer = timer_module.Timer(duration=dict(seconds=5))
    trainer = make_trainer(tmp_path, max_epochs=10, logger=False, callbacks=[timer])
    trainer.fit(TickingModel(clock), random_loader())  # one "second" per batch, 8 batches per epoch
    assert trainer.global_step == 5 and trainer.current_epoch == 1  # the stopped epoch counts, as in Lightning
    assert timer.time_elapsed("train") == 5.0
    assert timer.time_remaining() == 0.0
    assert timer.start_time("train") == 100.0 and timer.end_time("train") == 105.0
    assert "Time limit reached. Elapsed time is 0:00:05" in capsys.readouterr().out


def test_timer_epoch_interval_finishes_the_epoch(tmp_path, clock):
    timer = timer_module.Timer(duration="00:00:00:03", interval="epoch", verbose=False)
    trainer = make_trainer(tmp_path, max_epochs=10, logger=False, callbacks=[timer])
    trainer.fit(TickingModel(clock), random_loader())
    assert trainer.global_step == 8 and trainer.current_epoch == 1


def test_timer_elapsed_time_survives_resume(tmp_path, clock):
    first = timer_module.Timer()
    trainer = make_trainer(tmp_path, max_epochs=1, logger=False, callbacks=[first])
    trainer.fit(TickingModel(clock), random_loader())
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    assert first.state_dict()["time_elapsed"]["train"] == 8.0

    second = timer_module.Timer(duration=timedelta(seconds=10), verbose=False)
    trainer = make_trainer(tmp_path, max_epochs=5, logger=False, callbacks=[second])
    trainer.fit(TickingModel(clock), random_loader(), ckpt_path=tmp_path / "epoch1.ckpt")
    assert trainer.global_step == 10  # 8 before the resume + 2 more "seconds"
    assert second.time_elapsed("train") == 10.0


def test_timer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'DD:HH:MM:SS'"):
        timer_module.Timer(duration="1 hour")
    with pytest.raises(ValueError, match="interval='batch'"):
        timer_module.Timer(duration="00:01:00:00", interval="batch")
    assert timer_module.Timer(duration="01:02:03:04")._duration == 93784.0


# --- LambdaCallback ----------------------------------------------------------------------------------------
def test_lambda_callback_runs_the_given_hooks(tmp_path):
    calls = []
    cb = LambdaCallback(on_train_epoch_end=lambda trainer, module: calls.append(("epoch", trainer.current_epoch)),
                        on_train_batch_end=lambda trainer, module, outputs, batch, batch_idx: calls.append(batch_idx),
                        on_fit_end=lambda trainer, module: calls.append("end"))
    make_trainer(tmp_path, max_epochs=2, logger=False, callbacks=[cb]).fit(BoringModel(), random_loader(n=16))
    assert calls == [0, 1, ("epoch", 0), 0, 1, ("epoch", 1), "end"]
    assert isinstance(cb, LambdaCallback) and cb.state_key == "LambdaCallback"
    assert "on_train_start" not in type(cb).__dict__  # hooks not given are not dispatched to


def test_lambda_callback_rejects_unknown_hooks():
    with pytest.raises(TypeError, match=r"\['on_trian_start'\], which is not a hook"):
        LambdaCallback(on_trian_start=print)


# --- GradientAccumulationScheduler -------------------------------------------------------------------------
def test_accumulation_schedule_changes_optimizer_steps_per_epoch(tmp_path):
    factors = []
    record = LambdaCallback(on_train_epoch_end=lambda t, m: factors.append((t.accumulate_grad_batches, t.global_step)))
    scheduler = GradientAccumulationScheduler(scheduling={1: 2, 2: 4})
    trainer = make_trainer(tmp_path, max_epochs=3, logger=False, callbacks=[scheduler, record])
    trainer.fit(BoringModel(), random_loader())  # 8 batches per epoch
    assert factors == [(1, 8), (2, 12), (4, 14)]
    assert scheduler.get_accumulate_grad_batches(0) == 1 and scheduler.scheduling == {0: 1, 1: 2, 2: 4}


def test_accumulation_schedule_validation(tmp_path):
    with pytest.raises(ValueError, match=r"epochs must be ints >= 0.*\[-1\]"):
        GradientAccumulationScheduler({-1: 2})
    with pytest.raises(ValueError, match=r"factors must be ints >= 1.*\[0\]"):
        GradientAccumulationScheduler({0: 0})
    with pytest.raises(TypeError, match="non-empty dict"):
        GradientAccumulationScheduler({})
    trainer = make_trainer(tmp_path, logger=False, accumulate_grad_batches=2,
                           callbacks=[GradientAccumulationScheduler({0: 4})])
    with pytest.raises(ValueError, match=r"Trainer\(accumulate_grad_batches=2\) and a GradientAccumulationScheduler"):
        trainer.fit(BoringModel(), random_loader())


# --- OnExceptionCheckpoint ---------------------------------------------------------------------------------
class FailingModel(BoringModel):
    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == 3:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_on_exception_checkpoint_saves_where_the_run_failed(tmp_path):
    cb = OnExceptionCheckpoint(dirpath=tmp_path / "ckpts")
    # a Checkpoint callback needs enable_checkpointing=True (as in Lightning) and replaces the default ModelCheckpoint
    trainer = make_trainer(tmp_path, max_epochs=2, logger=False, callbacks=[cb], enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(FailingModel(), random_loader())
    assert cb.ckpt_path == str(tmp_path / "ckpts" / "on_exception.ckpt")
    checkpoint = torch.load(cb.ckpt_path, weights_only=False)
    assert checkpoint["global_step"] == 3

    # resuming from it with a run that finishes removes it, as Lightning does
    trainer = make_trainer(tmp_path, max_epochs=1, logger=False, callbacks=[cb], enable_checkpointing=True)
    trainer.fit(BoringModel(), random_loader(), ckpt_path=cb.ckpt_path)
    assert trainer.global_step == 8 and not os.path.exists(cb.ckpt_path)
    with pytest.raises(ValueError, match="filename cannot be empty"):
        OnExceptionCheckpoint(tmp_path, filename="")


# --- DeviceStatsMonitor ------------------------------------------------------------------------------------
def test_device_stats_are_logged_on_logging_steps_only(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = make_trainer(tmp_path, logger=logger, callbacks=[DeviceStatsMonitor()], log_every_n_steps=4)
    trainer.fit(BoringModel(), random_loader(), random_loader(n=32))  # 8 train and 4 validation batches
    rows = csv_rows(logger)
    keys = {k for r in rows for k, v in r.items() if v and k.startswith("DeviceStatsMonitor.")}
    stat = "cpu_percent" if any(k.endswith("cpu_percent") for k in keys) else "cpu_max_rss_mb"  # psutil or not
    start = f"DeviceStatsMonitor.on_train_batch_start/{stat}"
    end = f"DeviceStatsMonitor.on_train_batch_end/{stat}"
    assert [s for s, _ in column(rows, start)] == [3, 7] and [s for s, _ in column(rows, end)] == [3, 7]
    assert all(v > 0 for _, v in column(rows, end)) or stat == "cpu_percent"
    assert f"DeviceStatsMonitor.on_validation_batch_end/{stat}" in keys  # at the 4th validation batch
    with pytest.raises(RuntimeError, match=r"Cannot use DeviceStatsMonitor callback with Trainer\(logger=False\)"):
        make_trainer(tmp_path, logger=False, callbacks=[DeviceStatsMonitor()]).fit(BoringModel(), random_loader())


def test_device_stats_cpu_stats_false_logs_nothing_on_cpu(tmp_path):
    logger = CSVLogger(tmp_path)
    make_trainer(tmp_path, logger=logger, callbacks=[DeviceStatsMonitor(cpu_stats=False)],
                 log_every_n_steps=1).fit(BoringModel(), random_loader(n=16))
    assert not any(k.startswith("DeviceStatsMonitor") for k in csv_rows(logger)[0])


# --- BasePredictionWriter ----------------------------------------------------------------------------------
class IdentityModel(BoringModel):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return batch[0][:, 0].clone()  # the first feature: tells which samples were in the batch


class BatchFileWriter(BasePredictionWriter):
    def __init__(self, out_dir):
        super().__init__(write_interval="batch")
        self.out_dir = out_dir

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        torch.save({"prediction": prediction, "indices": batch_indices},
                   os.path.join(self.out_dir, f"{dataloader_idx}_{batch_idx}.pt"))


def test_prediction_writer_writes_each_batch_with_its_dataset_indices(tmp_path):
    loader = random_loader(n=20, batch_size=8, shuffle=True)
    sampler = loader.batch_sampler
    trainer = make_trainer(tmp_path, logger=False, callbacks=[BatchFileWriter(str(tmp_path))])
    trainer.predict(IdentityModel(), loader)
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pt"))
    assert files == ["0_0.pt", "0_1.pt", "0_2.pt"]
    features = loader.dataset.tensors[0][:, 0]
    seen = []
    for name in files:
        saved = torch.load(tmp_path / name)
        assert torch.equal(saved["prediction"], features[saved["indices"]])  # shuffled, yet the indices match
        seen += saved["indices"]
    assert sorted(seen) == list(range(20))
    assert loader.batch_sampler is sampler  # the loader is given back as it was


def test_prediction_writer_epoch_interval_gets_everything_without_return_predictions(tmp_path):
    written = {}

    class EpochWriter(BasePredictionWriter):
        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
            written.update(predictions=predictions, batch_indices=batch_indices)

    loaders = [random_loader(n=16, batch_size=8), random_loader(n=8, batch_size=4, seed=1)]
    trainer = make_trainer(tmp_path, logger=False, callbacks=[EpochWriter(write_interval="epoch")])
    assert trainer.predict(IdentityModel(), loaders, return_predictions=False) is None
    assert [len(p) for p in written["predictions"]] == [2, 2]
    assert written["batch_indices"] == [[list(range(8)), list(range(8, 16))], [[0, 1, 2, 3], [4, 5, 6, 7]]]
    with pytest.raises(NotImplementedError, match="must override write_on_batch_end"):
        make_trainer(tmp_path, logger=False, callbacks=[EpochWriter()]).predict(IdentityModel(), loaders[0])
    with pytest.raises(ValueError, match="write_interval='step'"):
        EpochWriter(write_interval="step")


# --- ThroughputMonitor -------------------------------------------------------------------------------------
def test_measure_flops_counts_forward_and_backward():
    with torch.device("meta"):
        model = torch.nn.Linear(32, 2)
        x = torch.randn(8, 32)
    forward = measure_flops(model, lambda: model(x))
    assert forward == 2 * 8 * 32 * 2
    assert measure_flops(model, lambda: model(x), loss_fn=torch.Tensor.sum) == 2 * forward  # + the weight gradient


def test_throughput_monitor_logs_rates_flops_and_mfu(tmp_path):
    model = BoringModel()
    model.flops_per_batch = 3 * 2 * 8 * 32 * 2
    logger = CSVLogger(tmp_path)
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].size(0), length_fn=lambda b: 10 * len(b[0]),
                                window_size=2, available_flops=1e12)
    trainer = make_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[monitor], log_every_n_steps=2)
    trainer.fit(model, random_loader(), random_loader(n=32))
    rows = csv_rows(logger)
    assert column(rows, "train/samples") == [(s, 8.0 * (s + 1)) for s in range(1, 16, 2)]
    assert [v for _, v in column(rows, "train/batches")] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [v for _, v in column(rows, "train/lengths")] == [80 * b for b in (2, 4, 6, 8, 10, 12, 14, 16)]
    rates = column(rows, "train/device/samples_per_sec")
    assert [s for s, _ in rates] == [1, 3, 5, 7, 9, 11, 13, 15] and all(v > 0 for _, v in rates)
    for row in (r for r in rows if r.get("train/device/samples_per_sec")):
        samples, batches = float(row["train/device/samples_per_sec"]), float(row["train/device/batches_per_sec"])
        assert samples == pytest.approx(8 * batches)
        assert float(row["train/device/items_per_sec"]) == pytest.approx(10 * samples)
        flops = float(row["train/device/flops_per_sec"])
        assert flops == pytest.approx(model.flops_per_batch * batches)
        assert float(row["train/device/mfu"]) == pytest.approx(flops / 1e12)
    assert column(rows, "validate/batches")  # validation (4 batches per epoch) has its own meter


def test_throughput_monitor_waits_for_a_full_window_and_checks_arguments(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: len(batch[0]), window_size=6)
    make_trainer(tmp_path, logger=logger, callbacks=[monitor], log_every_n_steps=2).fit(BoringModel(), random_loader())
    rows = csv_rows(logger)
    assert [s for s, _ in column(rows, "train/device/batches_per_sec")] == [5, 7]  # from 6 batches on
    assert not column(rows, "train/device/flops_per_sec")  # the module gives no flops_per_batch
    with pytest.raises(ValueError, match="window_size=1"):
        ThroughputMonitor(batch_size_fn=len, window_size=1)
    with pytest.raises(TypeError, match="batch_size_fn"):
        ThroughputMonitor(batch_size_fn=None)
