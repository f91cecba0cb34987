"""Optimisation as a user sees it: the same weights as a hand-written loop, every configure_optimizers
form, manual optimisation, what training_step may return, and the stopping rules."""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch.nn import functional as F

import ember
from conftest import BoringModel, random_loader


# --- helpers ---------------------------------------------------------------------------------------
class MomentumModel(BoringModel):
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _hand_written(init_state: dict, loader, epochs: int, accumulate: int, clip_val: float, clip_algo: str) -> dict:
    """The loop ember must reproduce: loss/accumulate, backward, clip after accumulation, step every
    ``accumulate`` batches and at the epoch's end, zero_grad after each step."""
    net = torch.nn.Linear(32, 2)
    net.load_state_dict({k.removeprefix("layer."): v for k, v in init_state.items()})
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    n = len(loader)
    steps = 0
    for _ in range(epochs):
        for i, (x, y) in enumerate(loader):
            loss = F.mse_loss(net(x), y) / accumulate
            loss.backward()
            if (i + 1) % accumulate == 0 or i == n - 1:
                if clip_val is None:
                    pass
                elif clip_algo == "norm":
                    torch.nn.utils.clip_grad_norm_(net.parameters(), clip_val)
                else:
                    torch.nn.utils.clip_grad_value_(net.parameters(), clip_val)
                opt.step()
                opt.zero_grad()
                steps += 1
    return {"layer." + k: v for k, v in net.state_dict().items()}, steps


# --- equality with a hand-written loop ----------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_accumulation_and_clipping_equal_hand_written_loop(trainer_kwargs, algorithm):
    torch.manual_seed(0)
    model = MomentumModel()
    init = copy.deepcopy(model.state_dict())
    loader = random_loader(n=56, batch_size=8)  # 7 batches: windows of 3, 3 and a partial 1 at the epoch end
    clip = 0.5 if algorithm == "norm" else 0.01
    trainer = ember.Trainer(max_epochs=2, accumulate_grad_batches=3, gradient_clip_val=clip,
                            gradient_clip_algorithm=algorithm, **trainer_kwargs)
    trainer.fit(model, loader)

    expected, steps = _hand_written(init, loader, epochs=2, accumulate=3, clip_val=clip, clip_algo=algorithm)
    assert steps == 6
    assert trainer.global_step == steps
    assert trainer.current_epoch == 2
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not torch.equal(model.state_dict()["layer.weight"], init["layer.weight"])


class WithStepHook(MomentumModel):
    def on_before_optimizer_step(self, optimizer):
        self.seen = getattr(self, "seen", 0) + 1


@pytest.mark.parametrize("model_class, accumulate", [(MomentumModel, 1), (WithStepHook, 1), (MomentumModel, 2)],
                         ids=["direct-step", "with-a-step-hook", "accumulating"])
def test_plain_steps_equal_hand_written_loop(trainer_kwargs, model_class, accumulate):
    # the first takes the loop's direct step (zero_grad, backward, step and nothing else); the others the full path
    torch.manual_seed(0)
    model = model_class()
    init = copy.deepcopy(model.state_dict())
    loader = random_loader(n=56, batch_size=8)
    trainer = ember.Trainer(max_epochs=2, accumulate_grad_batches=accumulate, **trainer_kwargs)
    trainer.fit(model, loader)

    expected, steps = _hand_written(init, loader, epochs=2, accumulate=accumulate, clip_val=None, clip_algo="")
    assert trainer.global_step == steps == (14 if accumulate == 1 else 8)
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key
    if model_class is WithStepHook:
        assert model.seen == steps


def test_clipping_changes_the_result(trainer_kwargs):
    """Guard against a vacuous equality: clipping at 0.5 is active on this data."""
    results = []
    for clip in (None, 0.5):
        torch.manual_seed(0)
        model = MomentumModel()
        ember.Trainer(max_epochs=1, gradient_clip_val=clip, **trainer_kwargs).fit(model, random_loader(n=24))
        results.append(model.layer.weight.detach().clone())
    assert not torch.equal(results[0], results[1])


# --- configure_optimizers forms -----------------------------------------------------------------
class ConfiguredModel(BoringModel):
    def __init__(self, make):
        super().__init__()
        self._make = make

    def configure_optimizers(self):
        return self._make(self)


def _sgd(m, lr=0.1):
    return torch.optim.SGD(m.parameters(), lr=lr)


def _lr(trainer, i=0):
    return trainer.optimizers[i].param_groups[0]["lr"]


def test_single_optimizer(trainer_kwargs):
    model = ConfiguredModel(_sgd)
    before = model.layer.weight.detach().clone()
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.global_step == 8
    assert len(trainer.optimizers) == 1 and trainer.lr_scheduler_configs == []
    assert not torch.equal(model.layer.weight, before)


def test_list_of_one_optimizer(trainer_kwargs):
    model = ConfiguredModel(lambda m: [_sgd(m)])
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.global_step == 8
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)


def test_lists_of_optimizers_and_schedulers_step_every_epoch(trainer_kwargs):
    def make(m):
        opt = _sgd(m)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    trainer = ember.Trainer(max_epochs=3, **trainer_kwargs)
    trainer.fit(ConfiguredModel(make), random_loader())
    assert _lr(trainer) == pytest.approx(0.1 * 0.5 ** 3)


def test_dict_with_scheduler_object(trainer_kwargs):
    def make(m):
        opt = _sgd(m)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}

    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    trainer.fit(ConfiguredModel(make), random_loader())
    assert _lr(trainer) == pytest.approx(0.1 * 0.5 ** 2)
    assert trainer.lr_scheduler_configs[0].interval == "epoch"


def test_dict_with_step_interval_and_frequency(trainer_kwargs):
    def make(m):
        opt = _sgd(m)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 2}}

    seen = []

    class RecordLR(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(_lr(trainer))

    trainer = ember.Trainer(max_epochs=1, callbacks=[RecordLR()], **trainer_kwargs)
    trainer.fit(ConfiguredModel(make), random_loader())  # 8 optimizer steps -> 4 scheduler steps
    assert seen == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625])
    assert _lr(trainer) == pytest.approx(0.1 * 0.5 ** 4)


def test_step_interval_scheduler_steps_once_per_optimizer_step(trainer_kwargs):
    def make(m):
        opt = _sgd(m)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = ember.Trainer(max_epochs=1, accumulate_grad_batches=2, **trainer_kwargs)
    trainer.fit(ConfiguredModel(make), random_loader())  # 8 batches -> 4 optimizer steps
    assert trainer.global_step == 4
    assert _lr(trainer) == pytest.approx(0.1 * 0.5 ** 4)


class LRRecordingModel(MomentumModel):
    """Records the learning rate each training_step runs with; ``configure_optimizers`` may also return a scheduler."""

    def __init__(self, make_scheduler=None):
        super().__init__()
        self.make_scheduler = make_scheduler
        self.lrs: list = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        if self.make_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "step"}}


def _halve_every_two_steps(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def test_step_scheduler_added_by_a_callback_in_on_fit_start_is_stepped(trainer_kwargs):
    # Lightning reads trainer.lr_scheduler_configs at every step: a scheduler a callback adds after
    # configure_optimizers must drive the learning rate exactly as the same scheduler returned by configure_optimizers
    from ember.utilities.types import LRSchedulerConfig

    class AddScheduler(ember.Callback):
        def on_fit_start(self, trainer, pl_module):
            scheduler = _halve_every_two_steps(trainer.optimizers[0])
            trainer.lr_scheduler_configs.append(LRSchedulerConfig(scheduler, interval="step"))

    loader = random_loader(n=56, batch_size=8)  # 7 batches, 2 epochs: 14 steps
    runs = {}
    for name, make, callbacks in [("configured", _halve_every_two_steps, []), ("callback", None, [AddScheduler()])]:
        torch.manual_seed(0)
        model = LRRecordingModel(make)
        init = copy.deepcopy(model.state_dict())
        ember.Trainer(max_epochs=2, callbacks=callbacks, **trainer_kwargs).fit(model, loader)
        runs[name] = model

    net = torch.nn.Linear(32, 2)  # the same by hand
    net.load_state_dict({k.removeprefix("layer."): v for k, v in init.items()})
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = _halve_every_two_steps(optimizer)
    lrs = []
    for _ in range(2):
        for x, y in loader:
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            F.mse_loss(net(x), y).backward()
            optimizer.step()
            scheduler.step()

    assert lrs[-1] == pytest.approx(0.1 * 0.5 ** 6)
    for model in runs.values():
        assert model.lrs == pytest.approx(lrs)
        assert torch.equal(model.layer.weight, net.weight) and torch.equal(model.layer.bias, net.bias)


def test_gradient_clip_val_set_by_a_callback_is_applied(trainer_kwargs):
    class ClipFromNowOn(ember.Callback):
        def on_fit_start(self, trainer, pl_module):
            trainer.gradient_clip_val = 0.5

    loader = random_loader(n=56, batch_size=8)
    torch.manual_seed(0)
    model = MomentumModel()
    init = copy.deepcopy(model.state_dict())
    ember.Trainer(max_epochs=1, callbacks=[ClipFromNowOn()], **trainer_kwargs).fit(model, loader)
    expected, _ = _hand_written(init, loader, epochs=1, accumulate=1, clip_val=0.5, clip_algo="norm")
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_gradient_accumulation_scheduler_changes_accumulation_mid_run(trainer_kwargs):
    # epoch 0 steps every batch (the loop's direct step), epochs 1-2 accumulate 3 batches (the general step)
    from ember.callbacks import GradientAccumulationScheduler

    loader = random_loader(n=56, batch_size=8)  # 7 batches: steps 7, then 3 per epoch (3 + 3 + a partial 1)
    torch.manual_seed(0)
    model = MomentumModel()
    init = copy.deepcopy(model.state_dict())
    trainer = ember.Trainer(max_epochs=3, callbacks=[GradientAccumulationScheduler({1: 3})], **trainer_kwargs)
    trainer.fit(model, loader)

    net = torch.nn.Linear(32, 2)
    net.load_state_dict({k.removeprefix("layer."): v for k, v in init.items()})
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    steps = 0
    for accumulate in (1, 3, 3):
        for i, (x, y) in enumerate(loader):
            (F.mse_loss(net(x), y) / accumulate).backward()
            if (i + 1) % accumulate == 0 or i == len(loader) - 1:
                optimizer.step()
                optimizer.zero_grad()
                steps += 1
    assert trainer.global_step == steps == 13
    assert torch.equal(model.layer.weight, net.weight) and torch.equal(model.layer.bias, net.bias)


class ConstantValLoss(BoringModel):
    """Validation loss that never improves, so a plateau scheduler must reduce the lr every epoch."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))

    def configure_optimizers(self):
        opt = _sgd(self)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0)
        return {"optimizer": opt, "lr_scheduler": sched, "monitor": "val_loss"}


def test_reduce_lr_on_plateau_watches_the_monitored_metric(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=3, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(ConstantValLoss(), random_loader(), random_loader(n=16))
    # epoch 0 sets the best value; epochs 1 and 2 do not improve it (patience=0): two halvings
    assert _lr(trainer) == pytest.approx(0.025)
    assert trainer.lr_scheduler_configs[0].monitor == "val_loss"


def test_reduce_lr_on_plateau_with_unlogged_monitor_names_it(trainer_kwargs):
    class NoVal(ConstantValLoss):
        def validation_step(self, batch, batch_idx):
            pass

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(RuntimeError, match="val_loss"):
        trainer.fit(NoVal(), random_loader())


class TwoOptimizersManual(BoringModel):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.other = torch.nn.Linear(32, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_a, opt_b = self.optimizers()
        for opt, net in ((opt_a, self.layer), (opt_b, self.other)):
            loss = F.mse_loss(net(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def configure_optimizers(self):
        a = torch.optim.SGD(self.layer.parameters(), lr=0.1)
        b = torch.optim.SGD(self.other.parameters(), lr=0.1)
        return ({"optimizer": a, "lr_scheduler": torch.optim.lr_scheduler.StepLR(a, 1)}, {"optimizer": b})


def test_tuple_of_dicts_with_manual_optimization(trainer_kwargs):
    model = TwoOptimizersManual()
    before_a, before_b = model.layer.weight.detach().clone(), model.other.weight.detach().clone()
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert len(trainer.optimizers) == 2 and len(trainer.lr_scheduler_configs) == 1
    assert trainer.global_step == 16  # every opt.step() counts, as in Lightning
    assert not torch.equal(model.layer.weight, before_a)
    assert not torch.equal(model.other.weight, before_b)
    # manual optimisation: the user steps schedulers; the trainer does not
    assert _lr(trainer, 0) == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [
    lambda m: "adam",
    lambda m: 0.1,
    lambda m: [_sgd(m), "not an optimizer"],
    lambda m: ([_sgd(m)], [], "extra"),
])
def test_malformed_configure_optimizers_names_the_accepted_forms(trainer_kwargs, bad):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises((TypeError, ValueError)) as info:
        trainer.fit(ConfiguredModel(bad), random_loader())
    message = str(info.value)
    assert "([optimizers], [schedulers])" in message and "'optimizer'" in message


def test_dict_without_optimizer_key_names_it(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises((TypeError, ValueError), match="'optimizer'"):
        trainer.fit(ConfiguredModel(lambda m: {"opt": _sgd(m)}), random_loader())


def test_scheduler_config_without_scheduler_key(trainer_kwargs):
    def make(m):
        return {"optimizer": _sgd(m), "lr_scheduler": {"interval": "step"}}

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match="'scheduler'"):
        trainer.fit(ConfiguredModel(make), random_loader())


def test_reduce_lr_on_plateau_without_monitor_raises(trainer_kwargs):
    def make(m):
        opt = _sgd(m)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt)}

    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match="monitor"):
        trainer.fit(ConfiguredModel(make), random_loader())


def test_several_optimizers_need_manual_optimization(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match="automatic_optimization = False"):
        trainer.fit(ConfiguredModel(lambda m: [_sgd(m), _sgd(m)]), random_loader())


# --- manual optimisation --------------------------------------------------------------------------
class ManualModel(BoringModel):
    def __init__(self, step_every: int = 1):
        super().__init__()
        self.automatic_optimization = False
        self.step_every = step_every

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        sched = self.lr_schedulers()
        loss = self._loss(batch)
        self.manual_backward(loss)
        if (batch_idx + 1) % self.step_every == 0:
            self.clip_gradients(opt, 0.1, "norm")
            opt.step()
            opt.zero_grad()
            sched.step()
        self.log("train_loss", loss)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)]


@pytest.mark.parametrize("step_every", [1, 2])
def test_manual_optimization_equals_hand_written_loop(trainer_kwargs, step_every):
    torch.manual_seed(0)
    model = ManualModel(step_every)
    init = copy.deepcopy(model.state_dict())
    loader = random_loader()
    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    trainer.fit(model, loader)

    net = torch.nn.Linear(32, 2)
    net.load_state_dict({k.removeprefix("layer."): v for k, v in init.items()})
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    steps = 0
    for _ in range(2):
        for i, (x, y) in enumerate(loader):
            F.mse_loss(net(x), y).backward()
            if (i + 1) % step_every == 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)
                opt.step()
                opt.zero_grad()
                sched.step()
                steps += 1

    assert trainer.global_step == steps == 16 // step_every
    assert torch.equal(model.layer.weight, net.weight)
    assert torch.equal(model.layer.bias, net.bias)
    assert _lr(trainer) == pytest.approx(0.1 * 0.9 ** steps)


@pytest.mark.parametrize("setting", [{"gradient_clip_val": 0.5}, {"accumulate_grad_batches": 2}])
def test_manual_optimization_refuses_automatic_clipping_and_accumulation(trainer_kwargs, setting):
    """As in Lightning: the Trainer cannot clip or accumulate for a module that steps itself, so it says so
    instead of silently ignoring the setting."""
    (name, value), = setting.items()
    trainer = ember.Trainer(max_epochs=1, **setting, **trainer_kwargs)
    with pytest.raises((ValueError, RuntimeError), match=rf"{name}={value}.*manual optimi|manual optimi.*{name}"):
        trainer.fit(ManualModel(), random_loader())


class GAN(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.generator = torch.nn.Linear(4, 32)
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(32, 1))

    def training_step(self, batch, batch_idx):
        real, _ = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], 4)
        fake = self.generator(z)
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)

        d_loss = F.binary_cross_entropy_with_logits(self.discriminator(real), ones) + \
            F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss})

    def configure_optimizers(self):
        return [torch.optim.Adam(self.generator.parameters(), lr=1e-2),
                torch.optim.Adam(self.discriminator.parameters(), lr=1e-2)]


def test_gan_with_two_optimizers(trainer_kwargs):
    model = GAN()
    g0 = model.generator.weight.detach().clone()
    d0 = model.discriminator[0].weight.detach().clone()
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.global_step == 16  # two optimizer steps for each of the 8 batches
    assert not torch.equal(model.generator.weight, g0)
    assert not torch.equal(model.discriminator[0].weight, d0)
    assert {"g_loss", "d_loss"} <= set(trainer.callback_metrics)


# --- what training_step may return ---------------------------------------------------------------
class Returns(BoringModel):
    def __init__(self, what):
        super().__init__()
        self.what = what

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        return self.what(loss)


def test_training_step_returning_none_skips_every_batch(trainer_kwargs):
    model = Returns(lambda loss: None)
    before = copy.deepcopy(model.state_dict())
    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    with pytest.warns(UserWarning, match="`training_step` returned `None`"):
        trainer.fit(model, random_loader())
    assert trainer.global_step == 16  # as Lightning: each skipped batch's optimizer step counts, and moves nothing
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)


def test_training_step_returning_none_skips_only_that_batch(trainer_kwargs):
    model = Returns(lambda loss: None)
    model.training_step = lambda batch, batch_idx: None if batch_idx % 2 else model._loss(batch)
    reference = copy.deepcopy(model.layer)
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.warns(UserWarning, match="`training_step` returned `None`"):
        trainer.fit(model, random_loader())
    assert trainer.global_step == 8
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)  # by hand: the even batches alone
    for x, y in itertools.islice(random_loader(), 0, None, 2):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(reference(x), y).backward()
        optimizer.step()
    assert torch.equal(model.layer.weight, reference.weight)


def test_training_step_returning_dict_with_loss(trainer_kwargs):
    model = Returns(lambda loss: {"loss": loss, "extra": loss.detach() * 2})
    before = model.layer.weight.detach().clone()
    outputs = []

    class Keep(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, out, batch, batch_idx):
            outputs.append(out)

    trainer = ember.Trainer(max_epochs=1, callbacks=[Keep()], **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.global_step == 8
    assert not torch.equal(model.layer.weight, before)
    assert set(outputs[0]) >= {"loss", "extra"}


def test_training_step_returning_a_string_raises(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(TypeError, match=r"loss tensor.*dict with a 'loss' key.*None"):
        trainer.fit(Returns(lambda loss: "loss"), random_loader())


def test_training_step_returning_a_detached_loss_raises(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(ValueError, match=r"\.item\(\)|\.detach\(\)"):
        trainer.fit(Returns(lambda loss: loss.detach()), random_loader())


def test_training_step_returning_a_python_float_raises(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, **trainer_kwargs)
    with pytest.raises(TypeError, match=r"float.*loss tensor"):
        trainer.fit(Returns(lambda loss: loss.item()), random_loader())


# --- stopping rules and counts ------------------------------------------------------------------
class CountBatches(BoringModel):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def training_step(self, batch, batch_idx):
        self.batches += 1
        return super().training_step(batch, batch_idx)


def test_max_steps_stops_mid_epoch(trainer_kwargs):
    model = CountBatches()
    trainer = ember.Trainer(max_steps=5, **trainer_kwargs)
    trainer.fit(model, random_loader())  # 8 batches per epoch
    assert trainer.global_step == 5
    assert model.batches == 5


def test_max_steps_with_accumulation_counts_optimizer_steps(trainer_kwargs):
    model = CountBatches()
    trainer = ember.Trainer(max_steps=5, accumulate_grad_batches=2, **trainer_kwargs)
    trainer.fit(model, random_loader())  # 4 steps per epoch
    assert trainer.global_step == 5
    assert model.batches == 10


def test_min_epochs_overrides_should_stop(trainer_kwargs):
    """A stop request before min_epochs is postponed: the first min_epochs run in full, then training stops."""
    class StopAtOnce(CountBatches):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 0 and batch_idx == 0:
                self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    model = StopAtOnce()
    trainer = ember.Trainer(min_epochs=3, max_epochs=10, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.current_epoch == 3
    assert model.batches == 3 * 8


def test_should_stop_without_min_epochs_stops_after_the_batch(trainer_kwargs):
    class StopAtThree(CountBatches):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    model = StopAtThree()
    trainer = ember.Trainer(max_epochs=10, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert model.batches == 3
    assert trainer.global_step == 3


def test_max_time_zero_stops_immediately(trainer_kwargs):
    model = CountBatches()
    trainer = ember.Trainer(max_epochs=1000, max_time={"seconds": 0}, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert model.batches <= 1
    assert trainer.global_step <= 1


def test_max_time_invalid_string_raises():
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        ember.Trainer(max_time="one hour", accelerator="cpu")


def test_estimated_stepping_batches_sizes_one_cycle_lr(trainer_kwargs):
    seen = {}

    class OneCycle(BoringModel):
        def configure_optimizers(self):
            total = self.trainer.estimated_stepping_batches
            seen["total"] = total
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = ember.Trainer(max_epochs=2, accumulate_grad_batches=3, **trainer_kwargs)
    trainer.fit(OneCycle(), random_loader(n=56))  # 7 batches per epoch
    assert seen["total"] == math.ceil(7 / 3) * 2 == 6
    assert trainer.global_step == 6  # OneCycleLR would raise if stepped past total_steps


def test_estimated_stepping_batches_with_max_steps(trainer_kwargs):
    seen = {}

    class Read(BoringModel):
        def configure_optimizers(self):
            seen["total"] = self.trainer.estimated_stepping_batches
            return super().configure_optimizers()

    ember.Trainer(max_steps=3, **trainer_kwargs).fit(Read(), random_loader())
    assert seen["total"] == 3


@pytest.mark.parametrize("limit, batches", [(3, 3), (0.5, 4), (1.0, 8)])
def test_limit_train_batches(trainer_kwargs, limit, batches):
    model = CountBatches()
    trainer = ember.Trainer(max_epochs=2, limit_train_batches=limit, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.num_training_batches == batches
    assert model.batches == 2 * batches
    assert trainer.global_step == 2 * batches


@pytest.mark.parametrize("epochs", [1, 3])
def test_current_epoch_after_fit_equals_max_epochs(trainer_kwargs, epochs):
    model = CountBatches()
    trainer = ember.Trainer(max_epochs=epochs, **trainer_kwargs)
    trainer.fit(model, random_loader())
    assert trainer.current_epoch == epochs
    assert model.batches == 8 * epochs


# --- non-finite losses -------------------------------------------------------------------------------------
class NanAtStep(BoringModel):
    def __init__(self, bad_batches):
        super().__init__()
        self.bad_batches = set(bad_batches)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if (self.current_epoch, batch_idx) in self.bad_batches else loss


def test_nonfinite_loss_stops_at_the_step_with_its_position(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=2, **trainer_kwargs)
    model = NanAtStep({(1, 2)})
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at epoch 1, batch 2, global step 10.*"
                                                 r"detect_anomaly=True.*on_nonfinite_loss='skip'"):
        trainer.fit(model, random_loader())
    assert trainer.global_step == 10  # nothing stepped with the NaN
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nonfinite_loss_can_be_skipped(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, on_nonfinite_loss="skip", **trainer_kwargs)
    model = NanAtStep({(0, 1), (0, 5)})
    with pytest.warns(UserWarning, match="batch 1.*skipped"):
        trainer.fit(model, random_loader())
    assert trainer.global_step == 6  # 8 batches, 2 skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_detect_anomaly_names_the_operation(trainer_kwargs):
    trainer = ember.Trainer(max_epochs=1, detect_anomaly=True, **trainer_kwargs)
    with pytest.raises(RuntimeError, match="MulBackward0.*returned nan"), pytest.warns(UserWarning):
        trainer.fit(NanAtStep({(0, 0)}), random_loader())


def test_on_nonfinite_loss_is_validated():
    with pytest.raises(ValueError, match="on_nonfinite_loss='stop'.*'raise', 'skip' or 'ignore'"):
        ember.Trainer(on_nonfinite_loss="stop")
