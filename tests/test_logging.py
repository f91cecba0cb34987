"""What ``self.log`` records: per-step and per-epoch values, reductions, the metrics dicts the Trainer
exposes, what validate()/test() return, and the rows a CSVLogger writes.

Expected values are computed by hand in each test; the CSV rows and the metric keys were checked against
PyTorch Lightning 2.6.6 running the same module.
"""
from __future__ import annotations

import csv

import pytest
import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

import ember
from conftest import BoringModel, random_loader


def _loader(n: int, batch_size: int) -> DataLoader:
    return random_loader(n=n, batch_size=batch_size)


class Collect(ember.Callback):
    """Snapshots of trainer.callback_metrics / progress_bar_metrics after each training batch."""

    def __init__(self) -> None:
        self.callback_metrics: list = []
        self.progress_bar_metrics: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.callback_metrics.append(dict(trainer.callback_metrics))
        self.progress_bar_metrics.append(dict(trainer.progress_bar_metrics))


def _floats(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items()}


# --- defaults per hook ------------------------------------------------------------------------------------
def test_training_step_logs_per_step_by_default(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("x", 10.0 * self.current_epoch + batch_idx)
            return super().training_step(batch, batch_idx)

    collect = Collect()
    trainer = ember.Trainer(max_epochs=2, callbacks=[collect], **trainer_kwargs)
    trainer.fit(Model(), _loader(24, 8))  # 3 batches per epoch
    assert [m["x"].item() for m in collect.callback_metrics] == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    assert trainer.callback_metrics["x"].item() == 12.0  # the last step's value, not the epoch mean (11)
    assert "x_epoch" not in trainer.callback_metrics and "x_step" not in trainer.callback_metrics


def test_validation_step_logs_the_epoch_mean_by_default(trainer_kwargs):
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx + 1))

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), _loader(8, 8), _loader(24, 8))  # values 1, 2, 3 on equal batches
    assert trainer.callback_metrics["v"].item() == pytest.approx(2.0)
    assert "v_step" not in trainer.callback_metrics and "v_epoch" not in trainer.callback_metrics


def test_epoch_mean_is_weighted_by_batch_size(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("t", float(batch_idx + 1), on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx + 1))

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), _loader(10, 4), _loader(10, 4))  # batches of 4, 4, 2 with values 1, 2, 3
    assert trainer.callback_metrics["t"].item() == pytest.approx((4 * 1 + 4 * 2 + 2 * 3) / 10)  # 1.8, not 2.0
    assert trainer.callback_metrics["v"].item() == pytest.approx(1.8)


def test_explicit_batch_size_weights_the_mean(trainer_kwargs):
    weights = [1, 1, 2]

    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx + 1), batch_size=weights[batch_idx])

    trainer = ember.Trainer(**trainer_kwargs)
    (result,) = trainer.validate(Model(), _loader(24, 8), verbose=False)  # inferred size would be 8 for all
    assert result["v"] == pytest.approx((1 * 1 + 1 * 2 + 2 * 3) / 4)  # 2.25


def test_batch_size_is_inferred_from_a_dict_batch(trainer_kwargs):
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", batch["x"].sum() / batch["x"].shape[0])

    batches = [{"x": torch.full((4, 1), 1.0)}, {"x": torch.full((1, 1), 6.0)}]
    loader = DataLoader(batches, batch_size=None)  # yields the dicts as they are
    trainer = ember.Trainer(**trainer_kwargs)
    (result,) = trainer.validate(Model(), loader, verbose=False)
    assert result["v"] == pytest.approx((4 * 1.0 + 1 * 6.0) / 5)


def test_on_step_and_on_epoch_give_step_and_epoch_keys(tmp_path, trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("x", float(batch_idx), on_step=True, on_epoch=True)
            return self._loss(batch)

    collect = Collect()
    trainer_kwargs["logger"] = ember.loggers.CSVLogger(save_dir=tmp_path)
    trainer = ember.Trainer(max_epochs=1, log_every_n_steps=1, callbacks=[collect], **trainer_kwargs)
    trainer.fit(Model(), _loader(32, 8))  # values 0, 1, 2, 3
    during = collect.callback_metrics[1]
    assert during["x"].item() == 1.0 and during["x_step"].item() == 1.0
    assert "x_epoch" not in during
    assert _floats(trainer.callback_metrics) == {"x": 1.5, "x_step": 3.0, "x_epoch": 1.5}
    assert _floats(trainer.logged_metrics) == {"x_step": 3.0, "x_epoch": 1.5}


@pytest.mark.parametrize("reduce_fx, expected", [
    ("mean", 2.0), ("sum", 6.0), ("max", 3.0), ("min", 1.0), (torch.max, 3.0), (torch.sum, 6.0), (torch.min, 1.0),
])
def test_reduce_fx(trainer_kwargs, reduce_fx, expected):
    values = [3.0, 1.0, 2.0]

    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", values[batch_idx], reduce_fx=reduce_fx)

    trainer = ember.Trainer(**trainer_kwargs)
    (result,) = trainer.validate(Model(), _loader(24, 8), verbose=False)
    assert result == {"v": pytest.approx(expected)}


def test_log_dict(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log_dict({"a": float(batch_idx), "b": 2.0 * batch_idx})
            return self._loss(batch)

        def validation_step(self, batch, batch_idx):
            self.log_dict({"va": float(batch_idx), "vb": torch.tensor(10.0)})

    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), _loader(24, 8), _loader(24, 8))
    assert _floats(trainer.callback_metrics) == {"a": 2.0, "b": 4.0, "va": 1.0, "vb": 10.0}


def test_prog_bar_values_appear_in_progress_bar_metrics(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("p", float(batch_idx), prog_bar=True)
            self.log("both", float(batch_idx), prog_bar=True, on_step=True, on_epoch=True)
            self.log("hidden", float(batch_idx))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.log("vp", float(batch_idx), prog_bar=True)
            self.log("vhidden", 1.0)

    collect = Collect()
    trainer = ember.Trainer(max_epochs=1, num_sanity_val_steps=0, callbacks=[collect], **trainer_kwargs)
    trainer.fit(Model(), _loader(24, 8), _loader(16, 8))
    assert _floats(collect.progress_bar_metrics[1]) == {"p": 1.0, "both_step": 1.0}
    # after the epoch (as Lightning 2.6): the last step values and the epoch values
    assert _floats(trainer.progress_bar_metrics) == {"p": 2.0, "both_step": 2.0, "both_epoch": 1.0, "vp": 0.5}


# --- torchmetrics objects ---------------------------------------------------------------------------------
class MetricModel(BoringModel):
    """Logs a torchmetrics Accuracy (called per batch) and a MeanMetric (only updated) in validation_step."""

    def __init__(self) -> None:
        super().__init__()
        self.acc = torchmetrics.classification.MulticlassAccuracy(num_classes=2, average="micro")
        self.epoch_mean = torchmetrics.MeanMetric()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.acc(self(x).argmax(dim=1), y)
        self.log("val_acc", self.acc)
        self.epoch_mean.update(torch.full((x.shape[0],), float(self.current_epoch)))
        self.log("val_epoch_mean", self.epoch_mean)


def _classification_loader(n: int, batch_size: int, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(n, 32, generator=g), torch.randint(0, 2, (n,), generator=g)),
                      batch_size=batch_size)


def _manual_accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    x, y = loader.dataset.tensors
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def test_torchmetrics_objects_are_computed_over_the_epoch_and_reset(trainer_kwargs):
    val = _classification_loader(20, 8)  # batches of 8, 8, 4: the per-batch mean differs from the epoch value
    seen: list = []

    class Check(ember.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append((trainer.callback_metrics["val_acc"].item(), _manual_accuracy(pl_module, val),
                             trainer.callback_metrics["val_epoch_mean"].item()))

    class Model(MetricModel):
        def training_step(self, batch, batch_idx):
            return super().training_step((batch[0], torch.nn.functional.one_hot(batch[1], 2).float()), batch_idx)

    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=2, callbacks=[Check()], **trainer_kwargs)
    trainer.fit(Model(), _classification_loader(16, 8, seed=1), val)
    assert len(seen) == 2
    for logged, manual, _ in seen:
        assert logged == pytest.approx(manual)
    # 0 then 1: the sanity check and epoch 0 do not leak into epoch 1 (without a reset it would be 0.5)
    assert [epoch_mean for _, _, epoch_mean in seen] == [0.0, 1.0]


def test_torchmetrics_value_returned_by_validate(trainer_kwargs):
    model = MetricModel()
    val = _classification_loader(20, 8, seed=3)
    trainer = ember.Trainer(**trainer_kwargs)
    (first,) = trainer.validate(model, val, verbose=False)
    (second,) = trainer.validate(model, val, verbose=False)
    assert first["val_acc"] == pytest.approx(_manual_accuracy(model, val))
    assert second["val_acc"] == pytest.approx(first["val_acc"])  # reset between runs: not accumulated
    assert first["val_epoch_mean"] == 0.0


# --- validate()/test() return values ----------------------------------------------------------------------
def _manual_mse(model: torch.nn.Module, loader: DataLoader) -> float:
    x, y = loader.dataset.tensors
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(x), y).item()


def test_validate_and_test_with_two_dataloaders_return_one_dict_each(trainer_kwargs):
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("val_loss", self._loss(batch))

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("test_loss", self._loss(batch))

        def on_validation_epoch_end(self):
            self.log("shared", 7.0)

    model = Model()
    loaders = [_loader(16, 8), random_loader(n=24, batch_size=8, seed=1)]
    trainer = ember.Trainer(**trainer_kwargs)
    results = trainer.validate(model, loaders, verbose=False)
    assert [sorted(r) for r in results] == [["shared", "val_loss/dataloader_idx_0"],
                                            ["shared", "val_loss/dataloader_idx_1"]]
    assert results[0]["val_loss/dataloader_idx_0"] == pytest.approx(_manual_mse(model, loaders[0]), rel=1e-5)
    assert results[1]["val_loss/dataloader_idx_1"] == pytest.approx(_manual_mse(model, loaders[1]), rel=1e-5)
    assert results[0]["shared"] == results[1]["shared"] == 7.0
    assert all(isinstance(v, float) for r in results for v in r.values())

    results = trainer.test(model, loaders, verbose=False)
    assert results == [{"test_loss/dataloader_idx_0": pytest.approx(_manual_mse(model, loaders[0]), rel=1e-5)},
                       {"test_loss/dataloader_idx_1": pytest.approx(_manual_mse(model, loaders[1]), rel=1e-5)}]


def test_validate_and_test_with_one_dataloader(trainer_kwargs):
    model = BoringModel()
    loader = _loader(24, 8)
    trainer = ember.Trainer(**trainer_kwargs)
    assert trainer.validate(model, loader, verbose=False) == [
        {"val_loss": pytest.approx(_manual_mse(model, loader), rel=1e-5)}]
    assert trainer.test(model, loader, verbose=False) == [
        {"test_loss": pytest.approx(_manual_mse(model, loader), rel=1e-5)}]


def test_validate_prints_a_results_table(trainer_kwargs, capsys):
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.validate(BoringModel(), _loader(8, 8))
    assert "val_loss" in capsys.readouterr().out


# --- what cannot be logged --------------------------------------------------------------------------------
def _fit_logging(trainer_kwargs, where: str, value, **log_kwargs) -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            if where == "training_step":
                self.log("bad", value, **log_kwargs)
            return super().training_step(batch, batch_idx)

        def on_train_epoch_end(self):
            if where == "on_train_epoch_end":
                self.log("bad", value, **log_kwargs)

    ember.Trainer(max_epochs=1, **trainer_kwargs).fit(Model(), _loader(8, 8))


def test_logging_a_non_scalar_tensor_names_the_shape(trainer_kwargs):
    with pytest.raises(ValueError, match=r"'bad'.*scalar.*shape \(3,\).*mean\(\)"):
        _fit_logging(trainer_kwargs, "training_step", torch.ones(3))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        _fit_logging(trainer_kwargs, "training_step", torch.ones(2, 2))


def test_logging_a_one_element_tensor_of_any_shape_is_fine(trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("one", torch.ones(1, 1) * 5)
            return super().training_step(batch, batch_idx)

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(Model(), _loader(8, 8))
    assert trainer.callback_metrics["one"].shape == ()
    assert trainer.callback_metrics["one"].item() == 5.0


def test_a_step_value_whose_shape_changes_after_the_first_step_is_checked_when_read(trainer_kwargs):
    # the per-step path of self.log stores a step-only value without looking at it (a tensor attribute costs a
    # microsecond); its shape is checked when a logger, the bar or callback_metrics reads it
    class Model(BoringModel):
        def __init__(self, later) -> None:
            super().__init__()
            self.later = later

        def training_step(self, batch, batch_idx):
            self.log("v", torch.tensor(1.0) if batch_idx == 0 else self.later)
            return super().training_step(batch, batch_idx)

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(Model(torch.full((1, 1), 3.0)), _loader(16, 8))
    assert trainer.callback_metrics["v"].shape == () and trainer.callback_metrics["v"].item() == 3.0
    with pytest.raises(ValueError, match=r"self.log\('v', ...\) in training_step.*scalar.*shape \(3,\)"):
        ember.Trainer(max_epochs=1, **trainer_kwargs).fit(Model(torch.ones(3)), _loader(16, 8))


def test_logging_a_string_raises_type_error(trainer_kwargs):
    # Lightning raises ValueError here; ember raises TypeError, the exception Python uses for a wrong type
    with pytest.raises(TypeError, match=r"'bad'.*must be a number.*it is a str"):
        _fit_logging(trainer_kwargs, "training_step", "hello")


def test_on_step_in_an_epoch_end_hook_raises(trainer_kwargs):
    with pytest.raises(ValueError, match=r"on_step=True.*on_train_epoch_end.*on_epoch=True"):
        _fit_logging(trainer_kwargs, "on_train_epoch_end", 1.0, on_step=True)


def test_log_in_predict_step_raises(trainer_kwargs):
    class Model(BoringModel):
        def predict_step(self, batch, batch_idx):
            self.log("p", 1.0)
            return self(batch[0])

    with pytest.raises(RuntimeError, match=r"self\.log\('p', \.\.\.\) is not allowed in predict_step"):
        ember.Trainer(**trainer_kwargs).predict(Model(), _loader(8, 8))


def test_invalid_reduce_fx_raises(trainer_kwargs):
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", 1.0, reduce_fx="median")

    with pytest.raises(ValueError, match=r"reduce_fx='median'.*'mean', 'sum', 'max' or 'min'"):
        ember.Trainer(**trainer_kwargs).validate(Model(), _loader(8, 8), verbose=False)


# --- no hidden work ----------------------------------------------------------------------------------------
def test_metrics_stay_tensors_and_no_item_per_step(monkeypatch, trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("both", loss, on_step=True, on_epoch=True, prog_bar=True)
            self.log("count", batch_idx)
            return loss

    calls = {"n": 0}
    original_item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return original_item(self)

    epochs, batches = 3, 8
    # on_nonfinite_loss="ignore": on the CPU, ember reads each loss to catch NaN at its step (no device to sync
    # with there); on a GPU it checks only at logging steps. This test counts what logging itself reads.
    trainer = ember.Trainer(max_epochs=epochs, log_every_n_steps=1000, on_nonfinite_loss="ignore", **trainer_kwargs)
    model = Model()
    train, val = _loader(8 * batches, 8), _loader(16, 8)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    trainer.fit(model, train, val)
    monkeypatch.undo()
    assert trainer.global_step == epochs * batches
    assert calls["n"] < epochs * 5, f"{calls['n']} .item() calls for {epochs * batches} steps"
    metrics = trainer.callback_metrics
    assert set(metrics) == {"both", "both_step", "both_epoch", "count", "val_loss", "train_loss"}
    assert all(isinstance(v, torch.Tensor) and v.shape == () for v in metrics.values())


# --- what a logger receives ----------------------------------------------------------------------------------
def _read_csv(logger) -> list:
    with open(f"{logger.log_dir}/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in rows]


def test_csv_logger_rows_every_log_every_n_steps(tmp_path, trainer_kwargs):
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("a", float(batch_idx))
            self.log("b", float(batch_idx), on_step=True, on_epoch=True)
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx))

    logger = ember.loggers.CSVLogger(save_dir=tmp_path)
    trainer_kwargs["logger"] = logger
    trainer = ember.Trainer(max_epochs=2, log_every_n_steps=2, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(Model(), _loader(12, 2), _loader(4, 2))  # 6 steps per epoch
    rows = _read_csv(logger)
    assert set(rows[0]) == {"a", "b_epoch", "b_step", "epoch", "step", "v"}

    def row(step, epoch, a=None, b_step=None, b_epoch=None, v=None):
        return {"step": step, "epoch": epoch, "a": a, "b_step": b_step, "b_epoch": b_epoch, "v": v}

    # exactly the rows PyTorch Lightning 2.6.6 writes for this module: steps 1, 3, 5 (every 2nd optimizer
    # step, 0-based), then the validation and the training epoch values at the epoch's last step
    assert rows == [
        row(1, 0, a=1.0, b_step=1.0), row(3, 0, a=3.0, b_step=3.0), row(5, 0, a=5.0, b_step=5.0),
        row(5, 0, v=0.5), row(5, 0, b_epoch=2.5),
        row(7, 1, a=1.0, b_step=1.0), row(9, 1, a=3.0, b_step=3.0), row(11, 1, a=5.0, b_step=5.0),
        row(11, 1, v=0.5), row(11, 1, b_epoch=2.5),
    ]


def test_csv_logger_receives_test_metrics(tmp_path, trainer_kwargs):
    logger = ember.loggers.CSVLogger(save_dir=tmp_path)
    trainer_kwargs["logger"] = logger
    model = BoringModel()
    loader = _loader(16, 8)
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.test(model, loader, verbose=False)
    (row,) = _read_csv(logger)
    assert row["test_loss"] == pytest.approx(_manual_mse(model, loader), rel=1e-5)
    assert row["epoch"] == 0.0
