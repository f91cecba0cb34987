"""Callbacks: plain objects with named hook methods (see ``Callback``).

The heavier ones (rich, the finders) import what they need only when constructed.
"""
from ember.callbacks.callback import Callback
from ember.callbacks.checkpoint import Checkpoint
from ember.callbacks.device_stats_monitor import DeviceStatsMonitor
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.finders import BatchSizeFinder, LearningRateFinder
from ember.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from ember.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from ember.callbacks.lambda_function import LambdaCallback
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.model_summary import ModelSummary
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.callbacks.prediction_writer import BasePredictionWriter
from ember.callbacks.progress import ProgressBar, TQDMProgressBar
from ember.callbacks.rich_model_summary import RichModelSummary
from ember.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme
from ember.callbacks.throughput_monitor import ThroughputMonitor
from ember.callbacks.timer import Timer
from ember.callbacks.weight_averaging import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging

__all__ = [
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "Checkpoint",
    "DeviceStatsMonitor",
    "EMAWeightAveraging",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "LambdaCallback",
    "LearningRateFinder",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelPruning",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "RichModelSummary",
    "RichProgressBar",
    "RichProgressBarTheme",
    "SpikeDetection",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "ThroughputMonitor",
    "Timer",
    "WeightAveraging",
]

_LAZY = {"ModelPruning": "ember.callbacks.pruning", "SpikeDetection": "ember.callbacks.spike"}


def __getattr__(name: str) -> object:
    if name in _LAZY:  # loaded on first use (torch.nn.utils.prune, the spike bookkeeping): `import ember` stays light
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ember.callbacks' has no attribute {name!r}")


# Lightning's progress bars live in a package, ``callbacks/progress/{tqdm_progress,rich_progress,progress_bar}.py``;
# ember's in two modules. Programs import the theme from Lightning's path
# (``from lightning.pytorch.callbacks.progress.rich_progress import RichProgressBarTheme``): these entries answer
# those three paths with the modules already imported above (no import hook, nothing loaded).
def _register_progress_paths() -> None:
    import sys

    from ember.callbacks import progress, rich_progress

    for name, module in (("tqdm_progress", progress), ("progress_bar", progress), ("rich_progress", rich_progress)):
        sys.modules.setdefault(f"ember.callbacks.progress.{name}", module)


_register_progress_paths()
