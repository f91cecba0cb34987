"""RichProgressBar and RichModelSummary: the optional rich-drawn terminal output."""
from __future__ import annotations

import importlib.util
import io
import sys

import pytest
import torch
from torch import nn

import ember
from conftest import BoringModel, random_loader

needs_rich = pytest.mark.skipif(importlib.util.find_spec("rich") is None, reason="rich is not installed")


def _console() -> dict:
    return {"record": True, "file": io.StringIO(), "width": 200, "color_system": None}


class ProgBarModel(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss


class SequentialModel(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))  # 528 + 68 params
        self.head = nn.Linear(4, 2)  # 10 params, frozen below
        self.head.requires_grad_(False)
        self.example_input_array = torch.zeros(5, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _trainer(trainer_kwargs, callbacks, **kwargs) -> ember.Trainer:
    kwargs = {**trainer_kwargs, "enable_progress_bar": True, **kwargs}
    return ember.Trainer(callbacks=callbacks, **kwargs)


@pytest.mark.parametrize("name", ["RichProgressBar", "RichModelSummary"])
def test_missing_rich_names_the_install_command(monkeypatch, name):
    from ember.callbacks.rich_model_summary import RichModelSummary
    from ember.callbacks.rich_progress import RichProgressBar

    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich` now raises ImportError
    cls = {"RichProgressBar": RichProgressBar, "RichModelSummary": RichModelSummary}[name]
    with pytest.raises(ModuleNotFoundError, match=f"{name} draws with the `rich` package.*pip install rich"):
        cls()


@needs_rich
def test_rich_progress_bar_fit_prints_epochs_and_metrics(trainer_kwargs):
    from ember.callbacks.rich_progress import RichProgressBar

    bar = RichProgressBar(leave=True, console_kwargs=_console())
    trainer = _trainer(trainer_kwargs, [bar], max_epochs=2, limit_val_batches=2)
    trainer.fit(ProgBarModel(), random_loader(n=64), random_loader(n=16))
    assert trainer.progress_bar_callback is bar
    text = bar._console.export_text()
    assert "Epoch 0/1" in text and "Epoch 1/1" in text  # leave=True keeps both epochs' bars
    assert "8/8" in text and "train_loss:" in text
    assert "Sanity Checking" not in text and "Validation" not in text  # transient inside fit
    assert bar.progress is None  # stopped at teardown


@needs_rich
def test_rich_progress_bar_test_and_reuse_of_one_bar(trainer_kwargs):
    from ember.callbacks.rich_progress import RichProgressBar

    bar = RichProgressBar(console_kwargs=_console())
    trainer = _trainer(trainer_kwargs, [bar], max_epochs=2)
    model = ProgBarModel()
    trainer.fit(model, random_loader(n=32))
    text = bar._console.export_text()
    assert "Epoch 1/1" in text and "Epoch 0/1" not in text  # leave=False: one bar, reset each epoch
    trainer.test(model, random_loader(n=24), verbose=False)
    text = bar._console.export_text()
    assert "Testing" in text and "3/3" in text


@needs_rich
def test_rich_progress_bar_reads_metrics_at_most_at_the_refresh_rate(trainer_kwargs):
    from ember.callbacks.rich_progress import RichProgressBar

    class CountingBar(RichProgressBar):
        reads = 0

        def get_metrics(self, trainer, pl_module):
            CountingBar.reads += 1
            return super().get_metrics(trainer, pl_module)

    bar = CountingBar(refresh_per_second=1e-6, console_kwargs=_console())  # one redraw per 11 days at most
    trainer = _trainer(trainer_kwargs, [bar], max_epochs=1)
    trainer.fit(ProgBarModel(), random_loader(n=8 * 40))  # 40 batches
    assert CountingBar.reads <= 3  # the last batch, the epoch's end, the end of training


@needs_rich
def test_rich_progress_bar_refresh_rate_zero_draws_nothing(trainer_kwargs):
    from ember.callbacks.rich_progress import RichProgressBar

    bar = RichProgressBar(refresh_rate=0, console_kwargs=_console())
    trainer = _trainer(trainer_kwargs, [bar], max_epochs=1)
    trainer.fit(ProgBarModel(), random_loader(n=16))
    assert bar.is_disabled and bar._console is None
    with pytest.raises(ValueError, match="refresh_rate=-1"):
        RichProgressBar(refresh_rate=-1)


@needs_rich
def test_rich_model_summary_renders_counts_and_sizes():
    from rich.console import Console

    from ember.callbacks.rich_model_summary import RichModelSummary, summary_data

    console = Console(**_console())
    for r in RichModelSummary(max_depth=2).render(SequentialModel()):
        console.print(r)
    text = console.export_text()
    for expected in ("encoder.0", "Sequential", "596", "[5, 32]", "[5, 2]", "Trainable params: 596",
                     "Non-trainable params: 10", "Total params: 606", "Modules in train mode: 6"):
        assert expected in text, expected
    columns, _ = summary_data(SequentialModel(), 1)
    assert columns["Name"] == ["encoder", "head"] and columns["Params"] == ["596", "10"]


@needs_rich
def test_rich_model_summary_replaces_the_default_summary_in_fit(trainer_kwargs):
    from ember.callbacks import ModelSummary
    from ember.callbacks.rich_model_summary import RichModelSummary

    summary = RichModelSummary(console_kwargs=_console())
    trainer = ember.Trainer(callbacks=[summary], max_epochs=1, **{**trainer_kwargs, "enable_model_summary": True})
    trainer.fit(BoringModel(), random_loader(n=16))
    assert [cb for cb in trainer.callbacks if isinstance(cb, ModelSummary)] == [summary]
    text = summary.console.export_text()
    assert "layer" in text and "Linear" in text and "Total params: 66" in text
