"""The tuner: lr_find (sweep, early stop, suggestion, plot, state restored) and scale_batch_size (power,
binsearch, out-of-memory recovery, state restored), directly and as callbacks."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks.finders import BatchSizeFinder, LearningRateFinder
from ember.tuner import Tuner
from ember.tuner.batch_size_scaling import is_oom_error


class Regression(ember.LightningModule):
    """y = x @ w on one fixed batch of 64: the loss is deterministic, flat at tiny rates, diverging at large ones."""

    def __init__(self, lr: float = 0.01, batch_size: int = 64, n: int = 64, momentum: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)  # the same model and data as the Lightning run the numbers below come from
        self.layer = torch.nn.Linear(4, 1)
        self.x = torch.randn(n, 4)
        self.y = self.x @ torch.tensor([[1.0], [2.0], [-1.0], [0.5]])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.hparams.batch_size)


class FakeOOM(Regression):
    """Raises CUDA's out-of-memory error for batches larger than ``threshold``."""

    def __init__(self, threshold: int, n: int = 1000, **kwargs):
        super().__init__(n=n, **kwargs)
        self.threshold = threshold
        self.sizes_tried: list = []

    def training_step(self, batch, batch_idx):
        size = batch[0].shape[0]
        if batch_idx == 0:
            self.sizes_tried.append(size)
        if size > self.threshold:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().training_step(batch, batch_idx)


def _trainer(**kwargs) -> ember.Trainer:
    base = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                enable_checkpointing=False, max_epochs=1)
    base.update(kwargs)
    return ember.Trainer(**base)


def _tuner() -> Tuner:
    """A Tuner on a Trainer with Lightning's default max_epochs (1000): room for a sweep over many epochs."""
    return Tuner(_trainer(max_epochs=None))


def _state(model: ember.LightningModule) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- lr_find ------------------------------------------------------------------------------------------
def test_lr_find_sweeps_and_suggests():
    model = Regression()
    finder = _tuner().lr_find(model, min_lr=1e-4, max_lr=10, num_training=50)
    lrs, losses = finder.results["lr"], finder.results["loss"]
    assert len(lrs) == len(losses) > 40
    assert lrs[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(lrs, lrs[1:]))
    suggestion = finder.suggestion()
    assert 1e-4 <= suggestion <= 10
    assert 1e-3 < suggestion < 1.0  # SGD on this regression trains at ~0.1 and diverges above ~5
    assert model.hparams.lr == suggestion


def test_lr_find_matches_lightning_numbers():
    """The sweep's rates and smoothed losses as Lightning 2.6.6 reports them for this model (recorded once)."""
    finder = _tuner().lr_find(Regression(), min_lr=1e-4, max_lr=10, num_training=50, update_attr=False)
    assert finder.results["lr"][:3] == pytest.approx([1e-4, 1e-4 * 10 ** 0.2, 1e-4 * 10 ** 0.3])
    assert finder.results["loss"][:3] == pytest.approx([2.35, 3.13, 3.52], abs=0.01)
    assert len(finder.results["lr"]) == 48  # diverged at lr 6.3, as in Lightning
    assert finder.suggestion() == pytest.approx(0.015848931924611138)


def test_lr_find_linear_mode():
    finder = _tuner().lr_find(Regression(), min_lr=0.01, max_lr=1.0, num_training=30, mode="linear")
    lrs = finder.results["lr"]
    assert len(lrs) == 30
    steps = [b - a for a, b in zip(lrs[1:], lrs[2:])]
    assert steps == pytest.approx([steps[0]] * len(steps))
    assert lrs[-1] == pytest.approx(1.0)


def test_lr_find_early_stop_on_divergence():
    kwargs = dict(min_lr=1e-3, max_lr=100.0, num_training=60, update_attr=False)
    stopped = _tuner().lr_find(Regression(), **kwargs)
    assert 10 < len(stopped.results["lr"]) < 60
    assert stopped.results["loss"][-1] > 4 * min(stopped.results["loss"][1:])
    full = _tuner().lr_find(Regression(), early_stop_threshold=None, **kwargs)
    assert len(full.results["lr"]) == 60


def test_lr_find_restores_model_optimizer_and_trainer():
    model = Regression(momentum=0.9, batch_size=8)  # 8 batches an epoch: a sweep of 20 over 3 epochs
    trainer = _trainer(max_epochs=3)
    trainer.fit(model)  # the trainer now has an optimizer with momentum buffers and a global step
    weights, step = _state(model), trainer.global_step
    opt_state = trainer.optimizers[0].state_dict()
    buffers = {k: v["momentum_buffer"].clone() for k, v in opt_state["state"].items()}
    callbacks = list(trainer.callbacks)
    rng = torch.get_rng_state()

    Tuner(trainer).lr_find(model, num_training=20)

    assert _same(weights, _state(model))
    assert trainer.global_step == step and trainer.callbacks == callbacks
    after = trainer.optimizers[0].state_dict()["state"]
    assert all(torch.equal(buffers[k], after[k]["momentum_buffer"]) for k in buffers)
    assert torch.equal(rng, torch.get_rng_state())
    assert model.trainer is trainer


def test_next_fit_is_unaffected_apart_from_the_lr():
    def run(tune: bool) -> dict:
        torch.manual_seed(1)
        model = Regression(lr=0.05, batch_size=8)
        trainer = _trainer(max_epochs=3)
        if tune:
            Tuner(trainer).lr_find(model, num_training=20, update_attr=False)
        trainer.fit(model)
        return _state(model)

    assert _same(run(tune=False), run(tune=True))


def test_lr_find_attr_errors_and_attr_name():
    class NoLR(Regression):
        def __init__(self):
            super().__init__()
            del self.hparams["lr"]
            self.base_lr = 0.01

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.base_lr)

    with pytest.raises(AttributeError, match=r"model\.lr.*model\.hparams\.lr.*attr_name"):
        _tuner().lr_find(NoLR(), num_training=5)
    model = NoLR()
    finder = _tuner().lr_find(model, num_training=30, attr_name="base_lr")
    assert model.base_lr == finder.suggestion()


def test_lr_find_rejects_other_methods_and_two_optimizers():
    with pytest.raises(ValueError, match="method='fit'"):
        _tuner().lr_find(Regression(), method="validate")

    class TwoOpts(Regression):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]

    with pytest.raises(ValueError, match="exactly one optimizer"):
        _tuner().lr_find(TwoOpts(), num_training=5)


def test_lr_finder_plot():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finder = _tuner().lr_find(Regression(), min_lr=1e-4, max_lr=10, num_training=30)
    fig = finder.plot(suggest=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Learning rate"
    assert len(ax.lines) == 2  # the curve and the suggestion's marker
    plt.close(fig)


def test_lr_find_stops_when_the_loss_explodes_and_the_plot_keeps_to_the_curve():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finder = _tuner().lr_find(Regression(), min_lr=1e-4, max_lr=100, num_training=50, update_attr=False)
    losses = finder.results["loss"]
    assert len(losses) == 41  # stopped on divergence, as Lightning 2.6.6 does on this model
    assert losses[-1] > 1000 > 10 > max(losses[:-1])  # the point that crossed the line is kept, as in Lightning
    fig = finder.plot(suggest=True)
    low, high = fig.axes[0].get_ylim()
    assert min(losses) - 1 < low <= min(losses) and max(losses[:-1]) <= high < max(losses[:-1]) + 1
    plt.close(fig)

    calm = _tuner().lr_find(Regression(), min_lr=1e-4, max_lr=1e-2, num_training=30, update_attr=False)
    assert len(calm.results["loss"]) == 30
    fig = calm.plot()
    assert fig.axes[0].get_ylim()[1] >= max(calm.results["loss"])  # nothing diverged: matplotlib's own scale
    plt.close(fig)


def _lightning_rule(lrs: list, losses: list, skip_begin: int, skip_end: int) -> float:
    """Lightning 2.6's suggestion, written out: drop the first skip_begin and last skip_end points and the
    non-finite losses, take d loss / d lr with numpy's second-order central differences, pick the minimum."""
    import numpy as np

    keep = [i for i in range(skip_begin, len(losses) - skip_end) if np.isfinite(losses[i])]
    gradient = np.gradient(np.array([losses[i] for i in keep]), np.array([lrs[i] for i in keep]))
    return lrs[keep[int(np.argmin(gradient))]]


@pytest.mark.parametrize("skip_begin, skip_end", [(10, 1), (0, 1), (3, 5)])
def test_lr_find_suggestion_follows_lightnings_rule(skip_begin, skip_end):
    from ember.tuner.lr_finder import _LRFinder, _schedule

    lrs = _schedule("exponential", 1e-5, 1.0, 40)
    # a fixed curve: flat, a fall (steepest in lr, not in index), a NaN from a skipped batch, then a climb
    losses = [2.3 - 0.001 * i for i in range(15)] + [2.0, 1.9, 1.6, 1.2, float("nan"), 0.9, 0.7, 0.6, 0.55, 0.5] \
        + [0.5 + 0.2 * i for i in range(15)]
    finder = _LRFinder("exponential", 1e-5, 1.0, 40)
    finder.results = {"lr": lrs, "loss": losses}
    expected = _lightning_rule(lrs, losses, skip_begin, skip_end)
    assert finder.suggestion(skip_begin=skip_begin, skip_end=skip_end) == expected
    try:
        from pytorch_lightning.tuner.lr_finder import _LRFinder as LightningFinder
    except ImportError:
        return  # the written-out rule above is the reference
    theirs = LightningFinder("exponential", 1e-5, 1.0, 40)
    theirs.results = {"lr": lrs, "loss": losses}
    assert theirs.suggestion(skip_begin=skip_begin, skip_end=skip_end) == expected


def test_lr_find_runs_over_several_epochs_within_max_epochs():
    """num_training above one epoch's batches: the sweep goes on into the next epochs, up to the Trainer's
    max_epochs; the Trainer's max_steps does not bound it (numbers as Lightning 2.6.6 gives them)."""
    kwargs = dict(min_lr=1e-4, max_lr=1e-2, num_training=50, update_attr=False)
    model = Regression(batch_size=8)  # 8 batches an epoch
    finder = _tuner().lr_find(model, **kwargs)
    assert len(finder.results["lr"]) == 50 and finder._total_batch_idx == 50  # seven epochs
    with pytest.warns(UserWarning, match=r"ran 24 steps: Trainer\(max_epochs=3\) ends the sweep after 3 epoch\(s\) "
                                         r"of 8 training batches\. Raise max_epochs"):
        finder = Tuner(_trainer(max_epochs=3, max_steps=5)).lr_find(Regression(batch_size=8), **kwargs)
    assert len(finder.results["lr"]) == 24
    with pytest.warns(UserWarning, match="ran 12 steps"):  # 24 batches, accumulated in twos
        finder = Tuner(_trainer(max_epochs=3, accumulate_grad_batches=2)).lr_find(Regression(batch_size=8), **kwargs)
    assert len(finder.results["lr"]) == 12

    cb = LearningRateFinder(min_lr=1e-4, max_lr=1e-2, num_training_steps=50)
    with pytest.warns(UserWarning, match="ran 16 steps"):
        _trainer(max_epochs=2, callbacks=[cb]).fit(Regression(batch_size=8))
    assert len(cb.optimal_lr.results["lr"]) == 16


def test_import_ember_loads_neither_tuner_nor_matplotlib():
    code = "import sys, ember; print('ember.tuner' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- scale_batch_size ----------------------------------------------------------------------------------
def test_is_oom_error():
    assert is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_oom_error(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_oom_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom_error(MemoryError())


def test_scale_batch_size_power():
    model = FakeOOM(threshold=100)
    weights = _state(model)
    found = Tuner(_trainer()).scale_batch_size(model, mode="power", steps_per_trial=2)
    assert found == 64 and model.hparams.batch_size == 64
    assert model.sizes_tried == [2, 4, 8, 16, 32, 64, 128]
    assert _same(weights, _state(model))


def test_scale_batch_size_binsearch_finds_the_threshold():
    found = Tuner(_trainer()).scale_batch_size(FakeOOM(threshold=100), mode="binsearch", margin=0.0)
    assert found == 100
    model = FakeOOM(threshold=100)
    assert Tuner(_trainer()).scale_batch_size(model, mode="binsearch") == 95  # Lightning's 5% margin by default
    assert model.hparams.batch_size == 95


def test_scale_batch_size_recovers_when_init_val_is_too_large():
    assert Tuner(_trainer()).scale_batch_size(FakeOOM(threshold=20), init_val=256) == 16


def test_scale_batch_size_stops_at_the_dataset_length():
    model = Regression(n=40, batch_size=2)
    assert Tuner(_trainer()).scale_batch_size(model, max_trials=10) == 64  # 64 >= 40: larger adds nothing


def test_scale_batch_size_datamodule_attribute():
    class Data(ember.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.batch_size = 4
            self.setups = 0

        def setup(self, stage):
            self.setups += 1

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            return DataLoader(TensorDataset(torch.randn(300, 4, generator=g), torch.randn(300, 1, generator=g)),
                              batch_size=self.batch_size)

    class Model(FakeOOM):
        train_dataloader = None  # the data comes from the datamodule

    del Model.train_dataloader
    dm = Data()
    model = Model(threshold=50)
    del model.hparams["batch_size"]
    assert Tuner(_trainer()).scale_batch_size(model, datamodule=dm, mode="binsearch", margin=0.0) == 50
    assert dm.batch_size == 50
    assert dm.setups == 1  # setup ran once around all the trials


def test_scale_batch_size_errors():
    model = Regression()
    del model.hparams["batch_size"]
    with pytest.raises(AttributeError, match=r"`model\.batch_size`, `model\.hparams\.batch_size`, "
                                             r"`datamodule\.batch_size` or `datamodule\.hparams\.batch_size`"):
        Tuner(_trainer()).scale_batch_size(model)
    with pytest.raises(ValueError, match="dataloaders passed directly"):
        Tuner(_trainer()).scale_batch_size(Regression(), train_dataloaders=DataLoader(range(4)))

    class Broken(Regression):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("a bug, not memory")

    model = Broken(batch_size=7)
    with pytest.raises(RuntimeError, match="a bug"):
        Tuner(_trainer()).scale_batch_size(model)
    assert model.hparams.batch_size == 7  # put back after a failed search
    with pytest.raises(RuntimeError, match="no batch size that fits"):
        Tuner(_trainer()).scale_batch_size(FakeOOM(threshold=0))


def test_scale_batch_size_validate():
    class EvalOOM(Regression):
        def val_dataloader(self):
            return DataLoader(TensorDataset(torch.randn(500, 4), torch.randn(500, 1)),
                              batch_size=self.hparams.batch_size)

        def validation_step(self, batch, batch_idx):
            if batch[0].shape[0] > 30:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
            return super().validation_step(batch, batch_idx)

    found = Tuner(_trainer()).scale_batch_size(EvalOOM(), method="validate", mode="binsearch", margin=0.0)
    assert found == 30


# --- the callbacks ---------------------------------------------------------------------------------------
def test_learning_rate_finder_callback_trains_with_the_suggestion():
    seen = []

    class Spy(ember.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cb = LearningRateFinder(min_lr=1e-4, max_lr=10, num_training_steps=50)
    model = Regression()
    weights = _state(model)
    trainer = _trainer(callbacks=[cb, Spy()], max_epochs=100, max_steps=1)  # the sweep's 50 steps need 50 epochs
    trainer.fit(model)
    lr = cb.optimal_lr.suggestion()
    assert seen == [lr] and model.hparams.lr == lr
    assert trainer.global_step == 1  # the sweep's 48 steps are not counted
    assert not _same(weights, _state(model))  # one real step, from the restored weights


def test_batch_size_finder_callback_retrains_with_new_loaders():
    cb = BatchSizeFinder(mode="power")
    model = FakeOOM(threshold=100)
    trainer = _trainer(callbacks=[cb], max_epochs=1)
    trainer.fit(model)
    assert cb.optimal_batch_size == 64 and model.hparams.batch_size == 64
    assert trainer.train_dataloader.batch_size == 64 and trainer.global_step == 16  # ceil(1000 / 64)
    with pytest.raises(ValueError, match="dataloaders passed directly"):
        _trainer(callbacks=[BatchSizeFinder()]).fit(Regression(), train_dataloaders=Regression().train_dataloader())


def test_tuner_refuses_a_trainer_with_the_callback():
    with pytest.raises(ValueError, match="already has a `LearningRateFinder`"):
        Tuner(_trainer(callbacks=[LearningRateFinder()])).lr_find(Regression())
    with pytest.raises(ValueError, match="already has a `BatchSizeFinder`"):
        Tuner(_trainer(callbacks=[BatchSizeFinder()])).scale_batch_size(Regression())
