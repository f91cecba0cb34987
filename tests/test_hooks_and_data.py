"""Hook order, where data comes from, and the Trainer arguments that decide which batches run.

The expected hook lists were produced once by running the same recording module and callback under
PyTorch Lightning 2.6.6 and are pasted here as literals.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import ember
from conftest import BoringModel, random_loader

# --- hook order -----------------------------------------------------------------------------------------
_STAGE_HOOKS = ("setup", "teardown")
MODULE_HOOKS = [
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_train_start", "on_train_end",
    "on_train_epoch_start", "on_train_epoch_end", "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_test_start", "on_test_end", "on_test_epoch_start",
    "on_test_epoch_end", "on_test_batch_start", "on_test_batch_end", "on_predict_start", "on_predict_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
]
CALLBACK_HOOKS = MODULE_HOOKS + ["on_sanity_check_start", "on_sanity_check_end"]
MODULE_HOOKS += ["on_validation_model_eval", "on_validation_model_train", "on_test_model_eval", "on_test_model_train",
                 "on_predict_model_eval"]  # the module's only: a callback has no such hooks


def _stage(stage) -> str:
    return str(getattr(stage, "value", stage))  # Lightning passes an str-Enum; its value is the same name


def _module_hook(name: str):
    def hook(self, *args, **kwargs):
        args += tuple(kwargs.values())
        self.calls.append(f"{name}:{_stage(args[0])}" if name in _STAGE_HOOKS else name)

    return hook


def _callback_hook(name: str):
    def hook(self, trainer, pl_module, *args, **kwargs):
        args += tuple(kwargs.values())
        self.calls.append(f"Callback.{name}:{_stage(args[0])}" if name in _STAGE_HOOKS else f"Callback.{name}")

    return hook


class RecordingModel(BoringModel):
    def __init__(self, calls: list) -> None:
        super().__init__()
        self.calls = calls

    def training_step(self, batch, batch_idx):
        self.calls.append("training_step")
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.calls.append("validation_step")
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.calls.append("test_step")
        return super().test_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx):
        self.calls.append("predict_step")
        return self(batch[0])


class RecordingCallback(ember.Callback):
    def __init__(self, calls: list) -> None:
        self.calls = calls


for _name in MODULE_HOOKS:
    setattr(RecordingModel, _name, _module_hook(_name))
for _name in CALLBACK_HOOKS:
    setattr(RecordingCallback, _name, _callback_hook(_name))

# Lightning 2.6.6: fit with max_epochs=1, 2 train batches, 1 val batch, num_sanity_val_steps=1.
_TRAIN_BATCH = [
    "Callback.on_train_batch_start", "on_train_batch_start", "training_step",
    "Callback.on_before_zero_grad", "on_before_zero_grad",
    "Callback.on_before_backward", "on_before_backward",
    "Callback.on_after_backward", "on_after_backward",
    "Callback.on_before_optimizer_step", "on_before_optimizer_step",
    "Callback.on_train_batch_end", "on_train_batch_end",
]
_VALIDATION_RUN = [
    "on_validation_model_eval",
    "Callback.on_validation_start", "on_validation_start",
    "Callback.on_validation_epoch_start", "on_validation_epoch_start",
    "Callback.on_validation_batch_start", "on_validation_batch_start", "validation_step",
    "Callback.on_validation_batch_end", "on_validation_batch_end",
    "Callback.on_validation_epoch_end", "on_validation_epoch_end",
    "Callback.on_validation_end", "on_validation_end",
    "on_validation_model_train",
]
LIGHTNING_FIT_ORDER = [
    "Callback.setup:fit", "setup:fit",
    "Callback.on_fit_start", "on_fit_start",
    "Callback.on_sanity_check_start", *_VALIDATION_RUN, "Callback.on_sanity_check_end",
    "Callback.on_train_start", "on_train_start",
    "Callback.on_train_epoch_start", "on_train_epoch_start",
    *_TRAIN_BATCH, *_TRAIN_BATCH,
    *_VALIDATION_RUN,
    "Callback.on_train_epoch_end", "on_train_epoch_end",
    "Callback.on_train_end", "on_train_end",
    "Callback.on_fit_end", "on_fit_end",
    "Callback.teardown:fit", "teardown:fit",
]
LIGHTNING_TEST_ORDER = [
    "Callback.setup:test", "setup:test",
    "on_test_model_eval",
    "Callback.on_test_start", "on_test_start",
    "Callback.on_test_epoch_start", "on_test_epoch_start",
    "Callback.on_test_batch_start", "on_test_batch_start", "test_step",
    "Callback.on_test_batch_end", "on_test_batch_end",
    "Callback.on_test_batch_start", "on_test_batch_start", "test_step",
    "Callback.on_test_batch_end", "on_test_batch_end",
    "Callback.on_test_epoch_end", "on_test_epoch_end",
    "Callback.on_test_end", "on_test_end",
    "on_test_model_train",
    "Callback.teardown:test", "teardown:test",
]
LIGHTNING_PREDICT_ORDER = [
    "Callback.setup:predict", "setup:predict",
    "on_predict_model_eval",
    "Callback.on_predict_start", "on_predict_start",
    "Callback.on_predict_epoch_start", "on_predict_epoch_start",
    "Callback.on_predict_batch_start", "on_predict_batch_start", "predict_step",
    "Callback.on_predict_batch_end", "on_predict_batch_end",
    "Callback.on_predict_batch_start", "on_predict_batch_start", "predict_step",
    "Callback.on_predict_batch_end", "on_predict_batch_end",
    "Callback.on_predict_epoch_end", "on_predict_epoch_end",
    "Callback.on_predict_end", "on_predict_end",
    "Callback.teardown:predict", "teardown:predict",
]
LIGHTNING_VALIDATE_ORDER = [
    "Callback.setup:validate", "setup:validate", *_VALIDATION_RUN, "Callback.teardown:validate", "teardown:validate",
]


def _recording_trainer(calls: list, trainer_kwargs: dict, **kwargs) -> ember.Trainer:
    kwargs = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "num_sanity_val_steps": 1,
              **kwargs}
    return ember.Trainer(callbacks=[RecordingCallback(calls)], **kwargs, **trainer_kwargs)


def test_fit_calls_hooks_in_lightning_order(trainer_kwargs):
    calls: list = []
    trainer = _recording_trainer(calls, trainer_kwargs)
    trainer.fit(RecordingModel(calls), random_loader(n=32), random_loader(n=16))
    assert calls == LIGHTNING_FIT_ORDER


def test_test_predict_validate_call_hooks_in_lightning_order(trainer_kwargs):
    calls: list = []
    model = RecordingModel(calls)
    trainer = _recording_trainer(calls, trainer_kwargs)
    trainer.test(model, random_loader(n=16), verbose=False)
    assert calls == LIGHTNING_TEST_ORDER
    calls.clear()
    trainer.predict(model, random_loader(n=16))
    assert calls == LIGHTNING_PREDICT_ORDER
    calls.clear()
    trainer.validate(model, random_loader(n=8), verbose=False)
    assert calls == LIGHTNING_VALIDATE_ORDER


def test_epoch_end_order_with_monitoring_callbacks_and_epoch_scheduler(trainer_kwargs):
    # ember deliberately differs from Lightning here (see loops.finish_train_epoch): at the end of an epoch it
    # runs the epoch-end validation, then on_train_epoch_end on the other callbacks and the module, then steps
    # epoch-interval schedulers, and only then EarlyStopping/ModelCheckpoint.on_train_epoch_end, so that a
    # checkpoint written there holds the finished epoch (scheduler included).
    calls: list = []

    class RecordingEarlyStopping(ember.callbacks.EarlyStopping):
        def on_train_epoch_end(self, trainer, pl_module):
            calls.append("EarlyStopping.on_train_epoch_end")

    class Model(RecordingModel):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

        def lr_scheduler_step(self, scheduler, metric):
            calls.append("lr_scheduler_step")
            super().lr_scheduler_step(scheduler, metric)

    trainer = ember.Trainer(callbacks=[RecordingEarlyStopping(monitor="val_loss"), RecordingCallback(calls)],
                            max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                            **trainer_kwargs)
    trainer.fit(Model(calls), random_loader(n=32), random_loader(n=16))
    tail = calls[calls.index("on_train_batch_end", calls.index("on_train_batch_end") + 1) + 1:]
    assert tail == [
        *_VALIDATION_RUN,
        "Callback.on_train_epoch_end", "on_train_epoch_end",
        "lr_scheduler_step",
        "EarlyStopping.on_train_epoch_end",
        "Callback.on_train_end", "on_train_end",
        "Callback.on_fit_end", "on_fit_end",
        "Callback.teardown:fit", "teardown:fit",
    ]


def test_callback_overriding_nothing_is_never_called(monkeypatch, trainer_kwargs):
    calls: list = []
    # Replace the base class's no-op hooks with recorders: a subclass that overrides nothing inherits them, so
    # any call that is not filtered out by the "who overrides what" table would be recorded.
    skipped = ("setup", "teardown", "on_sanity_check_start", "on_sanity_check_end")  # once per run, not per step
    for name in CALLBACK_HOOKS:
        if name not in skipped:
            monkeypatch.setattr(ember.Callback, name, _callback_hook(name))

    class Idle(ember.Callback):
        pass

    idle = Idle()
    idle.calls = calls  # read by the recorders patched onto the base class
    trainer = ember.Trainer(callbacks=[idle], max_epochs=2, **trainer_kwargs)
    model = BoringModel()
    trainer.fit(model, random_loader(n=32), random_loader(n=16))
    trainer.test(model, random_loader(n=16), verbose=False)
    assert trainer.global_step == 8
    assert calls == []


def test_on_train_batch_start_returning_minus_one_skips_rest_of_epoch(trainer_kwargs):
    seen: list = []

    class Model(BoringModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 2 else None

        def training_step(self, batch, batch_idx):
            seen.append((self.current_epoch, batch_idx))
            return super().training_step(batch, batch_idx)

    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    trainer.fit(Model(), random_loader(n=48))  # 6 batches per epoch
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert trainer.global_step == 4
    assert trainer.current_epoch == 2


# --- where the data comes from --------------------------------------------------------------------------
class RecordingDataModule(ember.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def prepare_data(self):
        self.calls.append("prepare_data")

    def setup(self, stage):
        self.calls.append(f"setup:{_stage(stage)}")

    def teardown(self, stage):
        self.calls.append(f"teardown:{_stage(stage)}")

    def train_dataloader(self):
        self.calls.append("train_dataloader")
        return random_loader(n=32, seed=1)

    def val_dataloader(self):
        self.calls.append("val_dataloader")
        return random_loader(n=16, seed=2)

    def test_dataloader(self):
        self.calls.append("test_dataloader")
        return random_loader(n=24, seed=3)


def test_datamodule_hooks_and_loaders_used_by_fit_and_test(trainer_kwargs):
    dm = RecordingDataModule()
    model = BoringModel()
    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    assert dm.calls[:2] == ["prepare_data", "setup:fit"]
    # Lightning asks for val_dataloader before train_dataloader (for the sanity check); the order is not pinned
    assert sorted(dm.calls[2:4]) == ["train_dataloader", "val_dataloader"]
    assert dm.calls[4:] == ["teardown:fit"]
    assert trainer.global_step == 4  # 32 samples / batch_size 8
    assert dm.trainer is trainer

    dm.calls.clear()
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    assert dm.calls == ["prepare_data", "setup:test", "test_dataloader", "teardown:test"]
    x, y = random_loader(n=24, seed=3).dataset.tensors
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(model(x), y)  # 3 equal batches: the batch mean is the data mean
    assert result["test_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_datamodule_alias():
    assert ember.DataModule is ember.LightningDataModule


def test_datamodule_from_datasets(trainer_kwargs):
    train = TensorDataset(torch.randn(20, 32), torch.randn(20, 2))
    val = TensorDataset(torch.randn(12, 32), torch.randn(12, 2))
    dm = ember.LightningDataModule.from_datasets(train, val, batch_size=4)
    assert isinstance(dm.train_dataloader().sampler, RandomSampler)  # only training data is shuffled
    assert not isinstance(dm.val_dataloader().sampler, RandomSampler)
    assert dm.val_dataloader().batch_size == 4
    model = BoringModel()
    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 10  # 2 epochs * 5 batches
    (result,) = trainer.validate(model, datamodule=dm, verbose=False)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(model(val.tensors[0]), val.tensors[1])
    assert result["val_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_module_serving_its_own_train_dataloader(trainer_kwargs):
    class Model(BoringModel):
        def train_dataloader(self):
            return random_loader(n=40, batch_size=10)

    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    trainer.fit(Model())
    assert trainer.global_step == 8
    assert trainer.num_training_batches == 4


def test_predict_returns_outputs_per_batch(trainer_kwargs):
    class Model(BoringModel):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch[0])

    model = Model()
    trainer = ember.Trainer(**trainer_kwargs)
    loader = random_loader(n=20, batch_size=8)
    out = trainer.predict(model, loader)
    assert [p.shape for p in out] == [(8, 2), (8, 2), (4, 2)]
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(out), model(loader.dataset.tensors[0]))

    out = trainer.predict(model, [random_loader(n=16), random_loader(n=8, seed=1)])
    assert isinstance(out, list) and len(out) == 2
    assert [len(o) for o in out] == [2, 1]
    with torch.no_grad():
        torch.testing.assert_close(out[1][0], model(random_loader(n=8, seed=1).dataset.tensors[0]))


def test_multiple_val_loaders_receive_dataloader_idx(trainer_kwargs):
    seen: list = []

    class Model(BoringModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            seen.append((dataloader_idx, batch_idx, batch[0].shape[0]))

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), random_loader(n=8), [random_loader(n=16), random_loader(n=12, batch_size=4)])
    assert seen == [(0, 0, 8), (0, 1, 8), (1, 0, 4), (1, 1, 4), (1, 2, 4)]


# --- which batches run ------------------------------------------------------------------------------------
class CountingModel(BoringModel):
    """Records (stage, epoch, global_step, batch_idx) for every train and validation step."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list = []

    def training_step(self, batch, batch_idx):
        self.steps.append(("train", self.current_epoch, self.global_step, batch_idx))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        stage = "sanity" if self.trainer.sanity_checking else "val"
        self.steps.append((stage, self.current_epoch, self.global_step, batch_idx))
        return super().validation_step(batch, batch_idx)

    def count(self, stage: str) -> int:
        return sum(1 for s in self.steps if s[0] == stage)


def test_limit_val_batches(trainer_kwargs):
    model = CountingModel()
    trainer = ember.Trainer(max_epochs=2, limit_val_batches=2, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=16), random_loader(n=40))  # 5 val batches
    assert [s for s in model.steps if s[0] == "val"] == [("val", 0, 2, 0), ("val", 0, 2, 1),
                                                         ("val", 1, 4, 0), ("val", 1, 4, 1)]
    model = CountingModel()
    trainer = ember.Trainer(max_epochs=1, limit_val_batches=0.6, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=16), random_loader(n=40))
    assert model.count("val") == 3  # int(5 * 0.6)


@pytest.mark.parametrize("sanity_steps, expected", [(0, 0), (2, 2), (-1, 5)])
def test_num_sanity_val_steps(trainer_kwargs, sanity_steps, expected):
    model = CountingModel()
    trainer = ember.Trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=sanity_steps,
                            **trainer_kwargs)
    trainer.fit(model, random_loader(n=16), random_loader(n=40))
    assert model.count("sanity") == expected
    assert model.steps[:expected] == [("sanity", 0, 0, i) for i in range(expected)]
    assert model.count("val") == 5  # the sanity check does not replace the epoch's validation
    assert "val_loss" in trainer.callback_metrics


def test_val_check_interval_half_epoch_validates_twice(trainer_kwargs):
    model = CountingModel()
    trainer = ember.Trainer(max_epochs=1, val_check_interval=0.5, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=32), random_loader(n=8))  # 4 train batches, 1 val batch
    assert [s[0] for s in model.steps] == ["train", "train", "val", "train", "train", "val"]
    assert [s[2] for s in model.steps if s[0] == "val"] == [2, 4]


def test_check_val_every_n_epoch(trainer_kwargs):
    model = CountingModel()
    trainer = ember.Trainer(max_epochs=4, check_val_every_n_epoch=2, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=16), random_loader(n=8))
    assert [s[1] for s in model.steps if s[0] == "val"] == [1, 3]


def test_fast_dev_run_runs_one_batch_and_writes_nothing(tmp_path):
    model = CountingModel()
    trainer = ember.Trainer(fast_dev_run=True, max_epochs=5, enable_progress_bar=False, accelerator="cpu",
                            default_root_dir=tmp_path)  # default logger and ModelCheckpoint left on
    trainer.fit(model, random_loader(n=64), random_loader(n=64))
    assert model.steps == [("train", 0, 0, 0), ("val", 0, 1, 0)]
    assert trainer.global_step == 1
    assert list(tmp_path.rglob("*.ckpt")) == []
    assert list(tmp_path.rglob("metrics.csv")) == []
    assert not (tmp_path / "lightning_logs").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_overfit_batches_repeats_the_same_batches(trainer_kwargs):
    seen: list = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.append(("train", batch[0][:, 0].tolist()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen.append(("val", batch[0][:, 0].tolist()))

    x = torch.arange(16.0).unsqueeze(1).repeat(1, 32)
    train = DataLoader(TensorDataset(x, torch.zeros(16, 2)), batch_size=2, shuffle=True)
    val = DataLoader(TensorDataset(x + 100, torch.zeros(16, 2)), batch_size=2)
    trainer = ember.Trainer(max_epochs=2, overfit_batches=2, num_sanity_val_steps=0, **trainer_kwargs)
    with pytest.warns(UserWarning, match="shuffl"):
        trainer.fit(Model(), train, val)
    # Lightning 2.x: the first 2 training batches, unshuffled, every epoch; validation on the first 2 batches
    # of the validation data (Lightning 1.x validated on the training batches; 2.x does not)
    epoch = [("train", [0.0, 1.0]), ("train", [2.0, 3.0]), ("val", [100.0, 101.0]), ("val", [102.0, 103.0])]
    assert seen == epoch + epoch


def test_overfit_batches_keeps_the_loaders_other_settings(trainer_kwargs):
    def init(worker_id):  # module-level state is not needed: the function only has to survive the rebuild
        pass

    x = torch.arange(16.0).unsqueeze(1).repeat(1, 32)
    train = DataLoader(TensorDataset(x, torch.zeros(16, 2)), batch_size=2, shuffle=True, drop_last=True,
                       worker_init_fn=init, timeout=0, generator=torch.Generator().manual_seed(3))
    trainer = ember.Trainer(max_epochs=1, overfit_batches=2, num_sanity_val_steps=0, **trainer_kwargs)
    with pytest.warns(UserWarning, match="shuffl"):
        trainer.fit(BoringModel(), train)
    used = trainer.train_dataloader
    assert isinstance(used.sampler, torch.utils.data.SequentialSampler)
    assert (used.batch_size, used.drop_last, used.worker_init_fn, used.generator) == (2, True, init, train.generator)


def test_reload_dataloaders_every_n_epochs(trainer_kwargs):
    class Model(BoringModel):
        loads = 0

        def train_dataloader(self):
            Model.loads += 1
            return random_loader(n=8 * Model.loads)  # 1, 2, then 3 batches

    trainer = ember.Trainer(max_epochs=3, reload_dataloaders_every_n_epochs=1, **trainer_kwargs)
    trainer.fit(Model())
    assert Model.loads == 3
    assert trainer.global_step == 1 + 2 + 3


def test_transfer_batch_to_device_override_is_used(trainer_kwargs):
    transfers: list = []

    class Model(BoringModel):
        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            transfers.append((device.type, dataloader_idx))
            x, y = batch
            return x, y, "moved"

        def training_step(self, batch, batch_idx):
            assert batch[2] == "moved"
            return super().training_step(batch[:2], batch_idx)

        def validation_step(self, batch, batch_idx):
            assert batch[2] == "moved"
            return super().validation_step(batch[:2], batch_idx)

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), random_loader(n=16), random_loader(n=8))
    assert transfers == [("cpu", 0)] * 3


def test_eval_mode_and_no_grad_in_validation(trainer_kwargs):
    seen: list = []

    class Model(BoringModel):
        def __init__(self):
            super().__init__()
            self.dropout = torch.nn.Dropout(0.5)

        def training_step(self, batch, batch_idx):
            seen.append(("train", self.training, self.dropout.training, torch.is_grad_enabled()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen.append(("val", self.training, self.dropout.training, torch.is_grad_enabled(),
                         torch.is_inference_mode_enabled()))
            return super().validation_step(batch, batch_idx)

    model = Model()
    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=1, **trainer_kwargs)
    trainer.fit(model, random_loader(n=8), random_loader(n=8))
    # Lightning validates inside fit under torch.no_grad, not inference_mode: tensors made during validation
    # may be used by training afterwards (see the next test)
    assert seen == [("val", False, False, False, False), ("train", True, True, True),
                    ("val", False, False, False, False), ("train", True, True, True),
                    ("val", False, False, False, False)]
    assert model.training and model.dropout.training  # restored after the last validation

    seen.clear()
    trainer.validate(model, random_loader(n=8), verbose=False)  # a standalone run uses inference_mode
    assert seen == [("val", False, False, False, True)]
    assert model.training

    seen.clear()
    ember.Trainer(inference_mode=False, **trainer_kwargs).validate(model, random_loader(n=8), verbose=False)
    assert seen == [("val", False, False, False, False)]


def test_tensor_made_in_validation_can_be_used_in_training(trainer_kwargs):
    class Model(BoringModel):
        scale = None

        def validation_step(self, batch, batch_idx):
            self.scale = batch[0].abs().mean()  # e.g. statistics cached for the next epoch
            return super().validation_step(batch, batch_idx)

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss if self.scale is None else loss * self.scale

    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=1, **trainer_kwargs)
    trainer.fit(Model(), random_loader(n=8), random_loader(n=8))
    assert trainer.global_step == 2


def test_submodule_in_eval_mode_stays_in_eval_mode(trainer_kwargs):
    # Lightning 2.2+ keeps each submodule's mode: a frozen backbone put in eval() (e.g. for BatchNorm
    # statistics) stays in eval mode during training and after validation.
    seen: list = []

    class Model(BoringModel):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.BatchNorm1d(32)
            self.backbone.eval()

        def training_step(self, batch, batch_idx):
            seen.append((self.layer.training, self.backbone.training))
            return super().training_step(batch, batch_idx)

    model = Model()
    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=1, **trainer_kwargs)
    trainer.fit(model, random_loader(n=8), random_loader(n=8))
    assert seen == [(True, False), (True, False)]
    assert model.backbone.training is False


class DropoutModel(BoringModel):
    """Dropout before the layer; validation_step and predict_step keep what the model computed."""

    def __init__(self):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.5)
        self.outputs: list = []

    def forward(self, x):
        return self.layer(self.dropout(x))

    def validation_step(self, batch, batch_idx):
        self.outputs.append(self(batch[0]))

    def predict_step(self, batch, batch_idx):
        return self(batch[0])


class MCDropoutModel(DropoutModel):
    """Monte Carlo dropout: dropout stays active while evaluating, the rest is in eval mode."""

    def on_validation_model_eval(self):
        self.eval()
        self.dropout.train()

    def on_predict_model_eval(self):
        self.eval()
        self.dropout.train()


def test_on_validation_model_eval_override_keeps_dropout_active(trainer_kwargs):
    loader = DataLoader(TensorDataset(torch.ones(8, 32).repeat(2, 1)), batch_size=8)  # the same batch twice
    reference = DropoutModel()
    expected = reference.layer(torch.ones(8, 32)).detach()  # eval mode: dropout does nothing

    default = DropoutModel()
    default.load_state_dict(reference.state_dict())
    ember.Trainer(**trainer_kwargs).validate(default, loader, verbose=False)
    assert all(torch.equal(out, expected) for out in default.outputs)
    assert default.training and default.dropout.training  # the modes come back after validation

    mc = MCDropoutModel()
    mc.load_state_dict(reference.state_dict())
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.validate(mc, loader, verbose=False)
    first, second = mc.outputs
    assert not torch.equal(first, second) and not torch.equal(first, expected)  # dropout was active
    assert mc.training and mc.dropout.training  # restored by the default on_validation_model_train

    mc.eval()
    predictions = trainer.predict(mc, loader)
    assert not torch.equal(predictions[0], predictions[1])  # on_predict_model_eval's override likewise
    assert not mc.training and not mc.dropout.training  # predict gives back the modes it found


def test_on_validation_model_train_override_decides_the_mode_after_validation(trainer_kwargs):
    class Model(DropoutModel):
        def on_validation_model_train(self):
            self.train()
            self.dropout.eval()  # e.g. train without dropout from here on

    model = Model()
    trainer = ember.Trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(model, random_loader(n=8), random_loader(n=8))
    assert model.training and not model.dropout.training
    model.train()
    trainer.test(model, random_loader(n=8), verbose=False)  # on_test_model_train is not overridden: modes restored
    assert model.training and model.dropout.training


def test_on_train_batch_end_outputs_are_lightnings_dict_for_whoever_reads_them(trainer_kwargs):
    """ember's progress bar and ModelCheckpoint never read ``outputs``, so with only them the loop builds no dict
    per batch; a user callback, or a subclass overriding the hook, gets Lightning's {"loss": detached loss}."""
    from ember.callbacks import TQDMProgressBar

    seen: list = []

    class Recorder(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(("user", outputs))

    class MyBar(TQDMProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(("bar", outputs))
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    for callbacks in ([Recorder()], [MyBar()]):
        seen.clear()
        kwargs = {**trainer_kwargs, "enable_progress_bar": True}
        trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, callbacks=callbacks, **kwargs)
        trainer.fit(BoringModel(), random_loader())
        assert len(seen) == 2
        for _, outputs in seen:
            assert set(outputs) == {"loss"} and not outputs["loss"].requires_grad
    trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, **{**trainer_kwargs, "enable_progress_bar": True})
    trainer.fit(BoringModel(), random_loader())
    assert trainer._hooks.has("on_train_batch_end") and not trainer._hooks.wants_outputs("on_train_batch_end")


class _Draws(torch.utils.data.Dataset):
    """Each item: one draw from torch, random and NumPy in the worker that loads it."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        import random

        import numpy as np

        return torch.tensor([torch.rand(()).item(), random.random(), float(np.random.rand())])


def _own_worker_init(worker_id):
    pass


# What Lightning 2.6.6 drew with the same program (workers seeded by its pl_worker_init_function), rounded to 6 places
_LIGHTNING_FABRIC_DRAWS = [0.275857, 0.960158, 0.091421, 0.786512, 0.430358, 0.099188, 0.224427, 0.782486, 0.082303, 0.747172, 0.441755, 0.725542, 0.915837, 0.949394, 0.598487, 0.926178, 0.541152, 0.501663, 0.453055, 0.058557, 0.400533, 0.231412, 0.655375, 0.676747]
_LIGHTNING_TRAINER_DRAWS = [0.2629, 0.087064, 0.520533, 0.137238, 0.248442, 0.499033, 0.528302, 0.643691, 0.657461, 0.784906, 0.412318, 0.670193, 0.813577, 0.050921, 0.693874, 0.367857, 0.163223, 0.899628, 0.582536, 0.821796, 0.116466, 0.239456, 0.322851, 0.176932]


def test_seed_everything_workers_true_seeds_dataloader_workers_as_lightning_does():
    pytest.importorskip("numpy")
    from ember.fabric import Fabric, seed_everything

    seed_everything(3, workers=True)
    loader = Fabric(accelerator="cpu").setup_dataloaders(DataLoader(_Draws(), batch_size=2, num_workers=2))
    assert [round(v, 6) for b in loader for v in b.flatten().tolist()] == _LIGHTNING_FABRIC_DRAWS

    class Model(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer, self.seen = torch.nn.Linear(3, 1), []

        def training_step(self, batch, batch_idx):
            self.seen += [round(v, 6) for v in batch.flatten().tolist()]
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    ember.seed_everything(5, workers=True)
    model = Model()
    own = DataLoader(_Draws(), batch_size=2, num_workers=2, worker_init_fn=_own_worker_init)
    trainer = ember.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(_Draws(), batch_size=2, num_workers=2), val_dataloaders=own)
    assert model.seen == _LIGHTNING_TRAINER_DRAWS
    assert getattr(own.worker_init_fn, "user_fn", own.worker_init_fn) is _own_worker_init  # the user's is kept
