"""Trainer behaviour Lightning programs rely on: what the three metric views hold after each entry point,
Lightning's set-up warnings, precision=16 on a CPU, received_sigterm, weights_only= and enable_autolog_hparams.

The expected key sets were observed once from pytorch_lightning 2.6.6 running the same modules side by side
(CI has no Lightning, so they are written out here).
"""
from __future__ import annotations

import os
import pickle
import signal

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from conftest import BoringModel, random_loader
from ember.utilities.warnings import PossibleUserWarning


def _loader(n: int = 64, batch_size: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=batch_size)


class Logs(ember.LightningModule):
    """Logs with every combination a program uses: on_step+on_epoch, the hook defaults, prog_bar on and off."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_only_step", loss * 2, prog_bar=True)  # training_step's default: per step only
        self.log("train_epoch_only", loss * 3, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("val_acc", loss * 2)  # validation_step's default: per epoch only
        self.log("val_stepo", loss * 4, on_step=True, on_epoch=False, prog_bar=True)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        loss = self._loss(batch)
        self.log("test_loss", loss, on_step=True, on_epoch=True)
        self.log("test_acc", loss * 2, prog_bar=True)

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _views(trainer) -> tuple:
    return sorted(trainer.callback_metrics), sorted(trainer.logged_metrics), sorted(trainer.progress_bar_metrics)


TRAIN_CALLBACK = ["train_epoch_only", "train_loss", "train_loss_epoch", "train_loss_step", "train_only_step"]
TRAIN_LOGGED = ["train_epoch_only", "train_loss_epoch", "train_loss_step", "train_only_step"]
TRAIN_PBAR = TRAIN_LOGGED
VAL_CALLBACK = ["val_acc", "val_loss", "val_loss_epoch"]
VAL_LOGGED = ["val_acc", "val_loss_epoch", "val_loss_step", "val_stepo"]
VAL_PBAR = ["val_loss_epoch", "val_loss_step", "val_stepo"]


@pytest.mark.parametrize("logger", [False, True])
def test_metric_views_after_each_entry_point_match_lightning(trainer_kwargs, tmp_path, logger):
    kwargs = {**trainer_kwargs, "logger": ember.loggers.CSVLogger(tmp_path) if logger else False}
    trainer = ember.Trainer(max_epochs=2, log_every_n_steps=3, **kwargs)
    model = Logs()
    trainer.fit(model, _loader(), _loader())
    # evaluation step values ('val_loss_step', 'val_stepo') reach the loggers and the bar, not callback_metrics
    assert _views(trainer) == (sorted(TRAIN_CALLBACK + VAL_CALLBACK), sorted(TRAIN_LOGGED + VAL_LOGGED),
                               sorted(TRAIN_PBAR + VAL_PBAR))
    last_batch_loss = trainer.logged_metrics["train_loss_step"]  # the last batch's, not the last logging step's
    assert torch.equal(trainer.callback_metrics["train_loss_step"], last_batch_loss)
    assert all(isinstance(v, float) for v in trainer.progress_bar_metrics.values())  # numbers, as in Lightning
    assert all(isinstance(v, torch.Tensor) for v in trainer.callback_metrics.values())

    trainer.validate(model, _loader(), verbose=False)
    assert _views(trainer) == (VAL_CALLBACK, VAL_LOGGED, VAL_PBAR)  # each run starts afresh: no train_loss

    trainer.test(model, _loader(), verbose=False)
    assert _views(trainer) == (["test_acc", "test_loss", "test_loss_epoch"],
                               ["test_acc", "test_loss_epoch", "test_loss_step"], ["test_acc"])

    trainer.predict(model, _loader())
    assert _views(trainer) == ([], [], [])


def test_metric_views_with_two_val_dataloaders_put_the_suffix_last(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    model = Logs()
    trainer.fit(model, _loader(), [_loader(), _loader()])
    callback, logged, pbar = _views(trainer)
    assert [k for k in callback if k.startswith("val")] == [
        "val_acc/dataloader_idx_0", "val_acc/dataloader_idx_1", "val_loss/dataloader_idx_0",
        "val_loss/dataloader_idx_1", "val_loss_epoch/dataloader_idx_0", "val_loss_epoch/dataloader_idx_1"]
    assert "val_loss_step/dataloader_idx_1" in logged and "val_stepo/dataloader_idx_0" in pbar
    out = trainer.validate(model, [_loader(), _loader()], verbose=False)
    assert [sorted(d) for d in out] == [["val_acc/dataloader_idx_0", "val_loss_epoch/dataloader_idx_0"],
                                        ["val_acc/dataloader_idx_1", "val_loss_epoch/dataloader_idx_1"]]


def test_callbacks_read_epoch_values_in_the_epoch_end_hooks_and_the_sanity_check(trainer_kwargs):
    seen = {}

    class Reader(ember.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            key = "sanity" if trainer.sanity_checking else f"val{trainer.current_epoch}"
            seen[key] = sorted(trainer.callback_metrics)

        def on_train_epoch_start(self, trainer, pl_module):
            seen.setdefault("first_train_epoch_start", sorted(trainer.callback_metrics))

    trainer = ember.Trainer(max_epochs=1, callbacks=[Reader()], **trainer_kwargs)
    trainer.fit(Logs(), _loader(), _loader())
    assert seen["sanity"] == VAL_CALLBACK  # seen during the sanity check, then dropped
    assert seen["first_train_epoch_start"] == []
    assert seen["val0"] == sorted(["train_loss", "train_loss_step", "train_only_step"] + VAL_CALLBACK)


def test_validation_step_values_are_logged_per_batch_as_in_lightning(tmp_path, trainer_kwargs):
    import csv

    logger = ember.loggers.CSVLogger(tmp_path, name="run", version=0)
    trainer = ember.Trainer(max_epochs=2, log_every_n_steps=1, **{**trainer_kwargs, "logger": logger})
    trainer.fit(Logs(), _loader(), _loader())
    rows = list(csv.DictReader(open(os.path.join(logger.log_dir, "metrics.csv"))))
    val_steps = [int(r["step"]) for r in rows if r.get("val_loss_step")]
    assert val_steps == list(range(8))  # 4 batches per validation, counted over the fit's validations
    assert all(not r["epoch"] for r in rows if r.get("val_loss_step"))  # Lightning adds no 'epoch' to these


# --- warnings -----------------------------------------------------------------------------------------------
class ReturnsNone(BoringModel):
    def __init__(self, every_other: bool = False):
        super().__init__()
        self.every_other = every_other
        self.batch_end_outputs = []

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        return loss if self.every_other and batch_idx % 2 == 0 else None

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.batch_end_outputs.append(outputs)


def test_training_step_returning_none_warns_and_changes_no_weight(trainer_kwargs):
    model = ReturnsNone()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    with pytest.warns(UserWarning, match=r"`training_step` returned `None`. If this was on purpose, ignore this"):
        trainer.fit(model, random_loader(n=32))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.global_step == 8  # as Lightning: the step counts, it just has no gradient to apply
    assert model.batch_end_outputs[0] == {}


def test_training_step_returning_none_sometimes_trains_on_the_other_batches(trainer_kwargs):
    model = ReturnsNone(every_other=True)
    before = model.layer.weight.detach().clone()
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.warns(UserWarning, match="returned `None`"):
        trainer.fit(model, random_loader(n=32))
    assert not torch.equal(before, model.layer.weight) and trainer.global_step == 4
    assert sorted(model.batch_end_outputs[0]) == ["loss"] and model.batch_end_outputs[1] == {}


def test_fewer_batches_than_the_logging_interval_warns(tmp_path, trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **{**trainer_kwargs, "logger": ember.loggers.CSVLogger(tmp_path)})
    with pytest.warns(PossibleUserWarning, match=r"The number of training batches \(4\) is smaller than the logging "
                                                 r"interval Trainer\(log_every_n_steps=50\)"):
        trainer.fit(BoringModel(), random_loader(n=32))


def test_validation_step_without_val_dataloader_warns(trainer_kwargs):
    with pytest.warns(PossibleUserWarning, match="You defined a `validation_step` but have no `val_dataloader`. "
                                                 "Skipping val loop."):
        ember.Trainer(max_epochs=1, **trainer_kwargs).fit(BoringModel(), random_loader(n=16))


def test_val_dataloader_without_validation_step_warns(trainer_kwargs):
    class NoValStep(BoringModel):
        validation_step = ember.LightningModule.validation_step

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.warns(UserWarning, match="You passed in a `val_dataloader` but have no `validation_step`. Skipping"):
        trainer.fit(NoValStep(), random_loader(n=16), random_loader(n=16))
    assert trainer.global_step == 2


def test_training_loader_of_length_zero_warns_and_trains_nothing(trainer_kwargs):
    empty = DataLoader(TensorDataset(torch.zeros(0, 32), torch.zeros(0, 2)), batch_size=4)
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.warns(UserWarning, match=r"Total length of `DataLoader` across ranks is zero. Please make sure"):
        trainer.fit(BoringModel(), empty)
    assert trainer.global_step == 0


# --- precision -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["16", 16, "16-mixed"])
def test_precision_16_on_cpu_trains_under_bf16_autocast(trainer_kwargs, precision):
    seen = []

    class Autocast(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.append((torch.is_autocast_enabled("cpu"), self(batch[0]).dtype))
            return super().training_step(batch, batch_idx)

    with pytest.warns(UserWarning, match="AMP with fp16 is not supported on CPU"):
        trainer = ember.Trainer(max_epochs=1, precision=precision, limit_train_batches=2, **trainer_kwargs)
    model = Autocast()
    trainer.fit(model, random_loader())
    assert trainer.precision == "bf16-mixed" and seen == [(True, torch.bfloat16)] * 2
    assert trainer.global_step == 2 and model.layer.weight.dtype == torch.float32


def test_precision_16_true_on_cpu_keeps_half_weights_as_lightning(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, precision="16-true", limit_train_batches=1, **trainer_kwargs)
    model = BoringModel()
    trainer.fit(model, random_loader())
    assert trainer.precision == "16-true" and model.layer.weight.dtype == torch.float16


# --- received_sigterm, weights_only, enable_autolog_hparams --------------------------------------------------
def test_received_sigterm_is_true_after_a_sigterm_in_fit(trainer_kwargs):
    class Terminate(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    trainer = ember.Trainer(max_epochs=1, callbacks=[Terminate()], **trainer_kwargs)
    assert trainer.received_sigterm is False
    with pytest.raises(SystemExit) as info:
        trainer.fit(BoringModel(), random_loader())
    assert info.value.code == 143 and trainer.received_sigterm is True
    trainer.validate(BoringModel(), random_loader(n=8), verbose=False)
    assert trainer.received_sigterm is False  # each run starts afresh, as in Lightning


class Note:
    """A user's own class: unpickling it needs torch.load(weights_only=False)."""

    def __init__(self, text):
        self.text = text


def test_weights_only_false_loads_a_checkpoint_holding_an_object(tmp_path, trainer_kwargs):
    model = BoringModel()
    ckpt = {"state_dict": model.state_dict(), "note": Note("mine")}
    path = tmp_path / "with_object.ckpt"
    torch.save(ckpt, path)
    trainer = ember.Trainer(**trainer_kwargs)
    with pytest.raises(pickle.UnpicklingError, match="pass weights_only=False"):
        trainer.validate(BoringModel(), random_loader(n=8), ckpt_path=str(path), verbose=False)
    with pytest.raises(pickle.UnpicklingError):
        trainer.test(BoringModel(), random_loader(n=8), ckpt_path=str(path), verbose=False, weights_only=True)
    fresh = BoringModel()
    trainer.test(fresh, random_loader(n=8), ckpt_path=str(path), verbose=False, weights_only=False)
    assert torch.equal(fresh.layer.weight, model.layer.weight)
    with pytest.raises(ValueError, match="weights_only='no' must be None, True or False"):
        trainer.predict(fresh, random_loader(n=8), weights_only="no")


def test_weights_only_false_resumes_fit(tmp_path, trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    model = BoringModel()
    trainer.fit(model, random_loader(n=16))
    path = tmp_path / "resume.ckpt"
    trainer.save_checkpoint(path)
    torch.save({**torch.load(path, weights_only=True), "note": Note("mine")}, path)
    again = ember.Trainer(max_epochs=2, **trainer_kwargs)
    with pytest.raises(pickle.UnpicklingError):
        again.fit(BoringModel(), random_loader(n=16), ckpt_path=str(path))
    again.fit(BoringModel(), random_loader(n=16), ckpt_path=str(path), weights_only=False)
    assert again.global_step == 4


class RecordingLogger(ember.loggers.Logger):
    def __init__(self):
        super().__init__()
        self.hparams = []

    @property
    def name(self):
        return "rec"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        self.hparams.append(dict(params))

    def log_metrics(self, metrics, step=None):
        pass


class WithHparams(BoringModel):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()


@pytest.mark.parametrize("enabled", [True, False])
def test_enable_autolog_hparams(trainer_kwargs, enabled):
    logger = RecordingLogger()
    trainer = ember.Trainer(max_epochs=1, enable_autolog_hparams=enabled, log_every_n_steps=1,
                            **{**trainer_kwargs, "logger": logger})
    model = WithHparams()
    trainer.fit(model, random_loader(n=16))
    trainer.test(model, random_loader(n=16), verbose=False)
    # as Lightning: at the start of every run (fit and test here), unless switched off
    assert logger.hparams == ([{"lr": 0.1}, {"lr": 0.1}] if enabled else [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_metric_views_after_a_gpu_run_hold_cpu_tensors_with_lightnings_keys(tmp_path):
    trainer = ember.Trainer(accelerator="gpu", devices=1, max_epochs=1, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False,
                            logger=ember.loggers.CSVLogger(tmp_path))
    trainer.fit(Logs(), _loader(), _loader())
    assert _views(trainer) == (sorted(TRAIN_CALLBACK + VAL_CALLBACK), sorted(TRAIN_LOGGED + VAL_LOGGED),
                               sorted(TRAIN_PBAR + VAL_PBAR))
    assert all(v.device.type == "cpu" for v in trainer.callback_metrics.values())
    assert all(v.device.type == "cpu" for v in trainer.logged_metrics.values())
    assert ember.Trainer(accelerator="gpu", precision="16-mixed", logger=False).precision == "16-mixed"


# --- when validation runs as training stops (max_steps, should_stop, on_train_batch_start returning -1) ----------
class Stops(ember.LightningModule):
    """Records validation runs and epoch ends with the step they happen at; stops or skips where asked."""

    def __init__(self, mode: str = "", at: int = -1):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.events: list = []
        self.mode, self.at = mode, at

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("v", self.layer(batch[0]).sum())

    def on_train_batch_start(self, batch, batch_idx):
        if self.mode == "skip" and batch_idx == self.at and self.current_epoch == 0:
            return -1

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.mode == "stop" and batch_idx == self.at:
            self.trainer.should_stop = True

    def on_validation_start(self):
        self.events.append(f"val@{self.global_step}")

    def on_validation_end(self):
        if self.mode == "valstop" and self.global_step == self.at:
            self.trainer.should_stop = True

    def on_train_epoch_end(self):
        self.events.append(f"epoch_end@{self.global_step}")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# Recorded once from pytorch_lightning 2.6.6 with the same module: 10 training batches an epoch, max_epochs=3
@pytest.mark.parametrize("mode, at, kwargs, expected", [
    ("", -1, dict(max_steps=5), "epoch_end@5"),  # max_steps mid-epoch: no validation
    ("", -1, dict(max_steps=10), "val@10 epoch_end@10"),  # at the epoch's last batch: validated
    ("", -1, dict(max_steps=15), "val@10 epoch_end@10 epoch_end@15"),
    ("", -1, dict(max_steps=5, val_check_interval=0.5), "val@5 epoch_end@5"),  # once, not twice
    ("", -1, dict(max_steps=7, val_check_interval=0.5), "val@5 epoch_end@7"),
    ("", -1, dict(max_steps=6, val_check_interval=3), "val@3 val@6 epoch_end@6"),
    ("", -1, dict(max_steps=10, val_check_interval=5), "val@5 val@10 epoch_end@10"),
    ("", -1, dict(max_steps=12, val_check_interval=4, check_val_every_n_epoch=None),
     "val@4 val@8 epoch_end@10 val@12 epoch_end@12"),
    ("", -1, dict(max_steps=10, check_val_every_n_epoch=2), "epoch_end@10"),
    ("", -1, dict(max_steps=4, accumulate_grad_batches=3), "val@4 epoch_end@4"),
    ("skip", 3, {}, "epoch_end@3 val@13 epoch_end@13 val@23 epoch_end@23"),  # a skipped epoch is not validated
    ("skip", 3, dict(val_check_interval=0.5), "epoch_end@3 val@8 val@13 epoch_end@13 val@18 val@23 epoch_end@23"),
    ("stop", 3, {}, "val@4 epoch_end@4"),  # should_stop mid-epoch: validated once, then stop
    ("stop", 4, dict(val_check_interval=0.5), "val@5 epoch_end@5"),
    ("stop", 2, dict(val_check_interval=3), "val@3 epoch_end@3"),
    ("valstop", 5, dict(val_check_interval=0.5), "val@5 epoch_end@5"),  # stopped by a validation: not again
    ("stop", 3, dict(min_steps=15), "val@10 epoch_end@10 val@15 epoch_end@15"),
])
def test_validation_as_training_stops_follows_lightning(trainer_kwargs, mode, at, kwargs, expected):
    model = Stops(mode, at)
    loader = DataLoader(TensorDataset(torch.randn(10, 4)), batch_size=1)
    trainer = ember.Trainer(max_epochs=3, num_sanity_val_steps=0, **kwargs, **trainer_kwargs)
    trainer.fit(model, loader, DataLoader(TensorDataset(torch.randn(2, 4)), batch_size=1))
    assert " ".join(model.events) == expected


# --- the global random generator: the same draws as Lightning, at the same points ------------------------------
class Draws(ember.LightningModule):
    """Records at each hook how many draws (one int64 each: what a DataLoader iterator takes for its base seed, and a
    RandomSampler for its seed) the global torch generator has made since ``start_counting``."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.events: list = []
        self.reference: list = []

    def start_counting(self):
        state = torch.get_rng_state()
        for _ in range(40):
            self.reference.append(torch.get_rng_state())
            torch.empty((), dtype=torch.int64).random_()
        torch.set_rng_state(state)

    def _record(self, name):
        state = torch.get_rng_state()
        k = next((i for i, r in enumerate(self.reference) if torch.equal(r, state)), "?")
        self.events.append(f"{name}:{k}")

    def on_fit_start(self):
        self._record("fit_start")

    def on_train_start(self):
        self._record("train_start")

    def on_train_epoch_start(self):
        self._record("epoch_start")

    def on_validation_start(self):
        self._record("val_start")

    def on_validation_end(self):
        self._record("val_end")

    def on_train_epoch_end(self):
        self._record("epoch_end")

    def on_train_end(self):
        self._record("train_end")

    def on_test_start(self):
        self._record("test_start")

    def on_test_end(self):
        self._record("test_end")

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("v", self.layer(batch[0]).sum())

    def test_step(self, batch, batch_idx):
        self.log("t", self.layer(batch[0]).sum())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# Recorded once with pytorch_lightning 2.6.6 running this module (the same script, `import pytorch_lightning as pl`):
# the draws seen at each hook, and the next torch.rand(1) after the run. The sanity check runs with the generators
# isolated (restored after it); each loader's iterator is made where Lightning makes it (the first training one
# before on_train_start, evaluation ones before on_validation_start/on_test_start); a reloaded training loader
# costs one more draw (Lightning makes an iterator when it reloads, then the epoch's).
_LIGHTNING_DRAWS = [
    ("fit", "fit_start:0 val_start:1 val_end:1 train_start:1 epoch_start:1 val_start:3 val_end:3 epoch_end:3 "
            "epoch_start:3 val_start:6 val_end:6 epoch_end:6 train_end:6", 0.800011396408081),
    ("fit_no_sanity", "fit_start:0 train_start:1 epoch_start:1 val_start:3 val_end:3 epoch_end:3 epoch_start:3 "
                      "val_start:6 val_end:6 epoch_end:6 train_end:6", 0.800011396408081),
    ("fit_then_test", "fit_start:0 val_start:1 val_end:1 train_start:1 epoch_start:1 val_start:3 val_end:3 "
                      "epoch_end:3 epoch_start:3 val_start:6 val_end:6 epoch_end:6 train_end:6 test_start:7 "
                      "test_end:7", 0.28226858377456665),
    ("validate", "val_start:1 val_end:1", 0.8964447379112244),
    ("reload", "fit_start:0 train_start:1 epoch_start:1 val_start:3 val_end:3 epoch_end:3 epoch_start:4 val_start:7 "
               "val_end:7 epoch_end:7 train_end:7", 0.28226858377456665),
]


@pytest.mark.parametrize("scenario, events, next_rand", _LIGHTNING_DRAWS, ids=[s[0] for s in _LIGHTNING_DRAWS])
def test_global_random_draws_are_lightnings(trainer_kwargs, scenario, events, next_rand):
    torch.manual_seed(0)
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    train = DataLoader(TensorDataset(x), batch_size=4, shuffle=True)
    val = DataLoader(TensorDataset(x[:8]), batch_size=4)
    model = Draws()
    model.start_counting()
    if scenario == "fit":
        ember.Trainer(max_epochs=2, **trainer_kwargs).fit(model, train, val)
    elif scenario == "fit_no_sanity":
        ember.Trainer(max_epochs=2, num_sanity_val_steps=0, **trainer_kwargs).fit(model, train, val)
    elif scenario == "fit_then_test":
        trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
        trainer.fit(model, train, val)
        trainer.test(model, val, verbose=False)
    elif scenario == "validate":
        ember.Trainer(max_epochs=2, **trainer_kwargs).validate(model, val, verbose=False)
    else:
        ember.Trainer(max_epochs=2, reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
                      **trainer_kwargs).fit(model, train, val)
    assert " ".join(model.events) == events
    assert torch.rand(1).item() == pytest.approx(next_rand, abs=0, rel=0)


def test_limited_evaluation_fetches_no_batch_past_the_limit(trainer_kwargs):
    fetched = []

    class Counted(TensorDataset):
        def __getitem__(self, i):
            fetched.append(i)
            return super().__getitem__(i)

    val = DataLoader(Counted(torch.randn(16, 32), torch.randn(16, 2)), batch_size=4)
    ember.Trainer(limit_val_batches=2, **trainer_kwargs).validate(BoringModel(), val, verbose=False)
    assert fetched == list(range(8))
