"""StochasticWeightAveraging, EMAWeightAveraging, BaseFinetuning/BackboneFinetuning: the weights and learning
rates a user sees, against hand computations with torch.optim.swa_utils, and resume from a checkpoint."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import SWALR, AveragedModel

import ember
from ember.callbacks import ModelCheckpoint
from ember.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from ember.callbacks.weight_averaging import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging
from conftest import BoringModel, random_loader

pytestmark = [pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
              pytest.mark.filterwarnings("ignore:ModelCheckpoint's dirpath changed")]


def _trainer(tmp_path, callbacks, max_epochs, checkpoint=False, **kwargs):
    return ember.Trainer(max_epochs=max_epochs, callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, logger=False, default_root_dir=tmp_path, accelerator="cpu",
                         enable_checkpointing=checkpoint, num_sanity_val_steps=0, **kwargs)


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _every_epoch(tmp_path):
    return ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, every_n_epochs=1)


def _ckpt(tmp_path, epoch):
    (path,) = (tmp_path / "ckpts").glob(f"epoch={epoch}-*.ckpt")
    return path


def _all_load_safely(tmp_path):
    files = list(Path(tmp_path).rglob("*.ckpt"))
    assert files
    return [torch.load(f, weights_only=True) for f in files]


class BNModel(BoringModel):
    """A BatchNorm'd backbone under BoringModel's head."""

    def __init__(self, optimize_backbone: bool = True, scheduler: str = ""):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.BatchNorm1d(16))
        self.layer = torch.nn.Linear(16, 2)
        self.optimize_backbone = optimize_backbone
        self.scheduler = scheduler
        self.lrs: list = []

    def forward(self, x):
        return self.layer(self.backbone(x))

    def on_train_epoch_start(self):
        self.lrs.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters() if self.optimize_backbone else self.layer.parameters(), lr=0.1)
        if self.scheduler == "lambda":  # LambdaLR's load_state_dict refuses any other scheduler's state
            return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5 ** epoch)]
        return opt


# --- StochasticWeightAveraging --------------------------------------------------------------------------
def test_swa_matches_a_hand_written_swa_loop(tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    reference = BoringModel()
    reference.load_state_dict(model.state_dict())
    lrs = []

    class RecordLR(ember.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
    _trainer(tmp_path, [swa, RecordLR()], max_epochs=5).fit(model, random_loader())

    # by hand: from the start of epoch 1 (swa_epoch_start=2 counts from 1), SWALR and one average per epoch start
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    averaged = AveragedModel(reference)
    swalr = None
    for epoch in range(5):
        if epoch >= 1:
            swalr = swalr or SWALR(opt, swa_lr=0.05, anneal_epochs=2, anneal_strategy="cos")
            averaged.update_parameters(reference)
        for x, y in random_loader():
            opt.zero_grad()
            torch.nn.functional.mse_loss(reference(x), y).backward()
            opt.step()
        if swalr is not None:
            swalr.step()
    torch.testing.assert_close(_flat(model), _flat(averaged.module), rtol=0, atol=1e-6)
    assert int(swa.n_averaged) == 4
    cos_half = 0.05 + (0.1 - 0.05) * (1 + math.cos(math.pi / 2)) / 2  # SWALR after 1 of 2 annealing epochs
    assert lrs == pytest.approx([0.1, 0.1, cos_half, 0.05, 0.05])


def test_swa_float_start_and_linear_annealing_replace_the_users_scheduler(tmp_path):
    torch.manual_seed(0)
    model = BNModel(scheduler="lambda")
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=0.5, annealing_epochs=2,
                                    annealing_strategy="linear")
    trainer = _trainer(tmp_path, [swa], max_epochs=6)
    trainer.fit(model, random_loader())
    # int(6 * 0.5) = 3 -> SWA from epoch index 2; the LambdaLR halves the lr until then
    assert [lr[0] for lr in model.lrs] == pytest.approx([0.1, 0.05, 0.025, 0.0375, 0.05, 0.05])
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, SWALR)
    assert len(trainer.lr_scheduler_configs) == 1


def test_swa_recomputes_batchnorm_statistics_for_the_averaged_weights(tmp_path):
    torch.manual_seed(0)
    model = BNModel()
    snapshots = []

    class Snapshot(ember.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            snapshots.append([p.detach().clone() for p in pl_module.parameters()])

    _trainer(tmp_path, [StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=3), Snapshot()],
             max_epochs=4).fit(model, random_loader())
    # the average of the weights at the start of epochs 2 and 3
    for param, *snaps in zip(model.parameters(), *snapshots[2:]):
        torch.testing.assert_close(param.detach(), torch.stack(snaps).mean(0), rtol=0, atol=1e-6)
    # BatchNorm statistics: the mean/variance of the averaged first layer's outputs over the training data
    x = torch.cat([x for x, _ in random_loader()])
    with torch.no_grad():
        features = model.backbone[0](x)
    bn = model.backbone[1]
    torch.testing.assert_close(bn.running_mean, features.mean(0), rtol=0, atol=1e-5)
    batch_vars = torch.stack([features[i:i + 8].var(0, unbiased=True) for i in range(0, 64, 8)])
    torch.testing.assert_close(bn.running_var, batch_vars.mean(0), rtol=0, atol=1e-5)


def test_swa_does_not_swap_in_the_average_when_training_stops_early(tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    _trainer(tmp_path, [swa], max_epochs=10, max_steps=24).fit(model, random_loader())
    assert int(swa.n_averaged) == 3
    assert not torch.equal(_flat(model), _flat(swa.average_model))


@pytest.mark.parametrize("scheduler", ["", "lambda"])
def test_swa_resume_gives_the_uninterrupted_weights(tmp_path, scheduler):
    torch.manual_seed(0)
    start = BNModel(scheduler=scheduler).state_dict()

    def fit(root, ckpt_path=None):
        model = BNModel(scheduler=scheduler)
        model.load_state_dict(start)
        swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=3)
        _trainer(root, [swa, _every_epoch(root)], max_epochs=5, checkpoint=True).fit(
            model, random_loader(), ckpt_path=ckpt_path)
        return model

    full = fit(tmp_path / "full")
    for epoch in (0, 2):  # before SWA started, and while it runs
        resumed = fit(tmp_path / f"resumed{epoch}", ckpt_path=_ckpt(tmp_path / "full", epoch))
        torch.testing.assert_close(resumed.state_dict(), full.state_dict(), rtol=0, atol=0)
        assert sum(resumed.lrs, []) == pytest.approx(sum(full.lrs[epoch + 1:], []))
    checkpoints = _all_load_safely(tmp_path)
    state = torch.load(_ckpt(tmp_path / "full", 2), weights_only=True)
    swa_state = state["callbacks"]["StochasticWeightAveraging"]
    assert swa_state["n_averaged"] == 2 and swa_state["latest_update_epoch"] == 2
    assert swa_state["scheduler_state"]["_step_count"] == 3
    # lr_schedulers keeps what configure_optimizers returned; SWALR's state travels with the callback
    assert len(state["lr_schedulers"]) == (1 if scheduler else 0)
    assert all("swa_lr" not in str(c.get("lr_schedulers")) for c in checkpoints)


def test_swa_argument_errors_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match=r"swa_epoch_start=0\).*int >= 1"):
        StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=0)
    with pytest.raises(ValueError, match=r"swa_epoch_start=1.5"):
        StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=1.5)
    with pytest.raises(ValueError, match=r"swa_lrs=-1.0.*positive float"):
        StochasticWeightAveraging(swa_lrs=-1.0)
    with pytest.raises(ValueError, match=r"annealing_strategy='exp'.*'cos' or 'linear'"):
        StochasticWeightAveraging(swa_lrs=0.1, annealing_strategy="exp")


def test_swa_needs_one_optimizer(tmp_path):
    class TwoOptimizers(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]

    with pytest.raises(ValueError, match="one optimizer; configure_optimizers returned 2"):
        _trainer(tmp_path, [StochasticWeightAveraging(swa_lrs=0.1)], 2).fit(TwoOptimizers(), random_loader())


# --- EMAWeightAveraging -------------------------------------------------------------------------------
class Recorder(BoringModel):
    """Records the weights after every optimizer step, and the weights validation runs with."""

    def __init__(self):
        super().__init__()
        self.after_step: list = []
        self.validated: list = []

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.after_step.append(_flat(self).clone())

    def on_validation_epoch_start(self):
        self.validated.append(_flat(self).clone())


def _ema(snapshots, decay, every=1, start=0):
    ema = None
    for step, w in enumerate(snapshots):
        if step >= start and step % every == 0:
            ema = w.clone() if ema is None else decay * ema + (1 - decay) * w
    return ema


def test_ema_matches_a_hand_computed_moving_average(tmp_path):
    torch.manual_seed(0)
    model = Recorder()
    ema = EMAWeightAveraging(decay=0.9)
    _trainer(tmp_path, [ema], max_epochs=2).fit(model, random_loader(), random_loader(n=16))
    assert len(model.after_step) == 16
    torch.testing.assert_close(model.validated[0], _ema(model.after_step[:8], 0.9), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.validated[1], _ema(model.after_step, 0.9), rtol=0, atol=1e-6)
    torch.testing.assert_close(_flat(model), _ema(model.after_step, 0.9), rtol=0, atol=1e-6)  # final model


def test_ema_update_schedule(tmp_path):
    torch.manual_seed(0)
    model = Recorder()
    ema = EMAWeightAveraging(decay=0.5, update_every_n_steps=3, update_starting_at_step=4)
    _trainer(tmp_path, [ema], max_epochs=2).fit(model, random_loader())
    assert int(ema._average_model.n_averaged) == len([s for s in range(16) if s >= 4 and s % 3 == 0])
    torch.testing.assert_close(_flat(model), _ema(model.after_step, 0.5, every=3, start=4), rtol=0, atol=1e-6)
    assert EMAWeightAveraging(update_starting_at_epoch=1).should_update(epoch_idx=1)
    assert not EMAWeightAveraging().should_update(epoch_idx=1)


def test_ema_checkpoints_hold_the_average_and_resume_exactly(tmp_path):
    torch.manual_seed(0)
    start = BoringModel().state_dict()

    def fit(root, ckpt_path=None):
        model = Recorder()
        model.load_state_dict(start)
        _trainer(root, [EMAWeightAveraging(decay=0.8), _every_epoch(root)], max_epochs=3, checkpoint=True).fit(
            model, random_loader(), ckpt_path=ckpt_path)
        return model

    full = fit(tmp_path / "full")
    resumed = fit(tmp_path / "resumed", ckpt_path=_ckpt(tmp_path / "full", 0))
    torch.testing.assert_close(resumed.state_dict(), full.state_dict(), rtol=0, atol=0)
    _all_load_safely(tmp_path)
    ckpt = torch.load(_ckpt(tmp_path / "full", 1), weights_only=True)  # after 16 steps
    averaged = torch.cat([v.flatten() for v in ckpt["state_dict"].values()])
    current = torch.cat([v.flatten() for v in ckpt["current_model_state"].values()])
    torch.testing.assert_close(averaged, _ema(full.after_step[:16], 0.8), rtol=0, atol=1e-6)
    torch.testing.assert_close(current, full.after_step[15], rtol=0, atol=0)
    assert int(ckpt["averaging_state"]["n_averaged"]) == 16
    # load_from_checkpoint gives the averaged model
    loaded = BoringModel.load_from_checkpoint(_ckpt(tmp_path / "full", 1))
    torch.testing.assert_close(_flat(loaded), averaged, rtol=0, atol=0)


def test_weight_averaging_default_is_the_equal_weight_mean(tmp_path):
    torch.manual_seed(0)
    model = Recorder()
    _trainer(tmp_path, [WeightAveraging()], max_epochs=1).fit(model, random_loader())
    torch.testing.assert_close(_flat(model), torch.stack(model.after_step).mean(0), rtol=0, atol=1e-6)


# --- BaseFinetuning / BackboneFinetuning -------------------------------------------------------------------
def _finetune(tmp_path, max_epochs, ckpt_path=None, start=None, root=None, **kwargs):
    model = BNModel(optimize_backbone=False)
    if start is not None:
        model.load_state_dict(start)
    callback = BackboneFinetuning(unfreeze_backbone_at_epoch=2, lambda_func=lambda epoch: 3.0, **kwargs)
    snapshots = []

    class Snapshot(ember.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(_flat(pl_module.backbone).clone())

    root = root or tmp_path
    trainer = _trainer(root, [callback, Snapshot(), _every_epoch(root)], max_epochs=max_epochs, checkpoint=True)
    before = _flat(model.backbone).clone()
    trainer.fit(model, random_loader(), ckpt_path=ckpt_path)
    return model, trainer, [before] + snapshots


def test_backbone_frozen_until_the_unfreeze_epoch_then_trained_at_its_own_lr(tmp_path):
    torch.manual_seed(0)
    model, trainer, backbone = _finetune(tmp_path, max_epochs=5)
    assert torch.equal(backbone[0], backbone[1]) and torch.equal(backbone[1], backbone[2])  # epochs 0, 1
    assert not torch.equal(backbone[2], backbone[3])  # epoch 2 trains it
    # head 0.1; backbone 0.1 * 0.1 at epoch 2, then x3 per epoch, capped at the head's lr (should_align)
    assert sum(model.lrs, []) == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.1, 0.03, 0.1, 0.09])
    assert [len(lr) for lr in model.lrs] == [1, 1, 2, 2, 2]
    groups = trainer.optimizers[0].param_groups
    assert [p for p in groups[1]["params"]] == list(BaseFinetuning.filter_params(model.backbone))
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_backbone_lr_aligns_with_the_head(tmp_path):
    torch.manual_seed(0)
    model, _, _ = _finetune(tmp_path, max_epochs=4, backbone_initial_lr=0.05)
    assert [lr[-1] for lr in model.lrs] == pytest.approx([0.1, 0.1, 0.05, 0.1])


def test_finetuning_resume_restores_the_added_param_groups(tmp_path):
    torch.manual_seed(0)
    start = BNModel(optimize_backbone=False).state_dict()
    full, full_trainer, _ = _finetune(tmp_path, 5, start=start, root=tmp_path / "full")
    for epoch in (1, 3):  # before the backbone is unfrozen, and after
        resumed, trainer, _ = _finetune(tmp_path, 5, start=start, root=tmp_path / f"resumed{epoch}",
                                        ckpt_path=_ckpt(tmp_path / "full", epoch))
        torch.testing.assert_close(resumed.state_dict(), full.state_dict(), rtol=0, atol=0)
        assert [g["lr"] for g in trainer.optimizers[0].param_groups] == pytest.approx([0.1, 0.09])
    state = torch.load(_ckpt(tmp_path / "full", 3), weights_only=True)["callbacks"]["BackboneFinetuning"]
    assert [g["params"] for g in state["internal_optimizer_metadata"][0]] == [
        ["layer.weight", "layer.bias"],
        ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"]]
    _all_load_safely(tmp_path)


def test_backbone_finetuning_needs_a_backbone(tmp_path):
    with pytest.raises(AttributeError, match=r"nn.Module `backbone`.*BoringModel has no attribute `backbone`.*"
                                             r"self.backbone = "):
        _trainer(tmp_path, [BackboneFinetuning()], 1).fit(BoringModel(), random_loader())


def test_freeze_helpers():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
                              torch.nn.Sequential(torch.nn.Linear(4, 2)))
    assert BaseFinetuning.flatten_modules(net) == [net[0], net[1], net[2][0]]
    BaseFinetuning.freeze(net, train_bn=True)
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True, False, False]
    BaseFinetuning.freeze(net, train_bn=False)
    assert not any(p.requires_grad for p in net.parameters()) and not net[1].track_running_stats
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5)
    BaseFinetuning.unfreeze_and_add_param_group(net, opt, train_bn=False)  # lr: 0.5 / initial_denom_lr
    assert opt.param_groups[1]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[1]["params"] == [net[0].weight, net[0].bias, net[2][0].weight, net[2][0].bias]
    assert net[1].weight.requires_grad and net[1].track_running_stats
    with pytest.warns(UserWarning, match="already in the optimizer"):
        BaseFinetuning.unfreeze_and_add_param_group(net[0], opt, lr=1.0)
    assert len(opt.param_groups) == 2
