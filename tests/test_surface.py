"""Lightning's public names and import paths in ember: each imports; the ones ember lacks fail clearly when used;
the ones ember implements behave as Lightning's (grad_norm, ModelPruning, SpikeDetection, save_on_exception...).

The name lists are Lightning 2.6's ``__all__`` lists and documented paths, written down here (CI has no Lightning).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember._missing import MISSING, NotInEmberError
from ember.callbacks import Callback, Checkpoint, ModelCheckpoint, ModelPruning, OnExceptionCheckpoint, SpikeDetection
from ember.callbacks.spike import TrainingSpikeException
from conftest import BoringModel, random_loader

# Lightning 2.6's __all__ lists: module (ember's path, same as lightning.pytorch's) -> names
LIGHTNING_ALL = {
    "ember": ["Trainer", "LightningDataModule", "LightningModule", "Callback", "seed_everything"],
    "ember.callbacks": [
        "BackboneFinetuning", "BaseFinetuning", "BasePredictionWriter", "BatchSizeFinder", "Callback", "Checkpoint",
        "DeviceStatsMonitor", "EarlyStopping", "GradientAccumulationScheduler", "LambdaCallback", "LearningRateFinder",
        "LearningRateMonitor", "ModelCheckpoint", "ModelPruning", "ModelSummary", "OnExceptionCheckpoint",
        "ProgressBar", "RichModelSummary", "RichProgressBar", "StochasticWeightAveraging", "SpikeDetection",
        "ThroughputMonitor", "Timer", "TQDMProgressBar", "EMAWeightAveraging", "WeightAveraging"],
    "ember.loggers": ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger", "CometLogger",
                      "LitLogger", "NeptuneLogger"],
    "ember.profilers": ["Profiler", "AdvancedProfiler", "PassThroughProfiler", "PyTorchProfiler", "SimpleProfiler",
                        "XLAProfiler"],
    "ember.strategies": ["DDPStrategy", "DeepSpeedStrategy", "FSDPStrategy", "ModelParallelStrategy",
                         "ParallelStrategy", "SingleDeviceStrategy", "Strategy"],
    "ember.plugins": [
        "AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO", "BitsandbytesPrecision",
        "DeepSpeedPrecision", "DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision",
        "TransformerEnginePrecision", "FSDPPrecision", "XLAPrecision", "LayerSync", "TorchSyncBatchNorm"],
    "ember.plugins.precision": [
        "BitsandbytesPrecision", "DeepSpeedPrecision", "DoublePrecision", "FSDPPrecision", "HalfPrecision",
        "MixedPrecision", "Precision", "TransformerEnginePrecision", "XLAPrecision"],
    "ember.plugins.io": ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO"],
    "ember.plugins.environments": [
        "ClusterEnvironment", "KubeflowEnvironment", "LightningEnvironment", "LSFEnvironment", "MPIEnvironment",
        "SLURMEnvironment", "TorchElasticEnvironment", "XLAEnvironment"],
    "ember.core": ["LightningDataModule", "LightningModule"],
    "ember.utilities": [
        "AttributeDict", "CombinedLoader", "disable_possible_user_warnings", "find_shared_parameters", "grad_norm",
        "GradClipAlgorithmType", "is_picklable", "is_shared_filesystem", "LightningEnum", "measure_flops",
        "move_data_to_device", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only", "rank_zero_warn",
        "set_shared_parameters", "suggested_max_num_workers"],
    "ember.tuner": ["Tuner"],
    "ember.demos": ["LightningLSTM", "SequenceSampler", "SimpleLSTM", "LightningTransformer", "Transformer",
                    "WikiText2", "BoringModel", "BoringDataModule", "DemoModel"],
}

# other documented paths real programs import from
DOCUMENTED = {
    "ember": ["cli_lightning_logo"],
    "ember.core.module": ["LightningModule"],
    "ember.core.datamodule": ["LightningDataModule"],
    "ember.core.optimizer": ["LightningOptimizer"],
    "ember.core.hooks": ["ModelHooks", "DataHooks", "CheckpointHooks"],
    "ember.core.mixins": ["HyperparametersMixin"],
    "ember.core.saving": ["load_hparams_from_yaml", "save_hparams_to_yaml"],
    "ember.plugins.layer_sync": ["LayerSync", "TorchSyncBatchNorm"],
    "ember.utilities.types": ["STEP_OUTPUT", "EVAL_DATALOADERS", "TRAIN_DATALOADERS", "OptimizerLRScheduler",
                              "LRSchedulerConfig", "LRSchedulerConfigType", "OptimizerLRSchedulerConfig",
                              "LRSchedulerTypeUnion", "LRSchedulerPLType"],
    "ember.utilities.model_summary": ["ModelSummary", "summarize", "LayerSummary", "get_human_readable_count"],
    "ember.utilities.rank_zero": ["rank_zero_only", "rank_zero_info", "rank_zero_warn", "rank_zero_debug",
                                  "rank_zero_deprecation", "rank_prefixed_message", "WarningCache"],
    "ember.utilities.seed": ["seed_everything", "isolate_rng"],
    "ember.utilities.grads": ["grad_norm"],
    "ember.utilities.memory": ["recursive_detach", "is_oom_error", "garbage_collection_cuda"],
    "ember.utilities.data": ["extract_batch_size", "has_len"],
    "ember.utilities.exceptions": ["MisconfigurationException"],
    "ember.utilities.parsing": ["AttributeDict", "is_picklable", "lightning_hasattr", "lightning_getattr",
                                "lightning_setattr"],
    "ember.utilities.enums": ["GradClipAlgorithmType", "LightningEnum"],
    "ember.utilities.warnings": ["PossibleUserWarning"],
    "ember.utilities.imports": ["_TORCHVISION_AVAILABLE", "_OMEGACONF_AVAILABLE", "_RICH_AVAILABLE"],
    "ember.utilities.model_helpers": ["is_overridden", "get_torchvision_model"],
    "ember.cli": ["LightningCLI", "LightningArgumentParser", "SaveConfigCallback", "OptimizerCallable",
                  "LRSchedulerCallable", "ReduceLROnPlateau", "instantiate_class", "ArgsType", "LRSchedulerTypeUnion"],
    "ember.utilities.combined_loader": ["CombinedLoader"],
    "ember.utilities.deepspeed": ["convert_zero_checkpoint_to_fp32_state_dict"],
    "ember.callbacks.checkpoint": ["Checkpoint"],
    "ember.callbacks.pruning": ["ModelPruning"],
    "ember.callbacks.spike": ["SpikeDetection"],
    "ember.callbacks.model_checkpoint": ["ModelCheckpoint"],
    "ember.callbacks.early_stopping": ["EarlyStopping"],
    "ember.callbacks.lr_monitor": ["LearningRateMonitor"],
    "ember.callbacks.finetuning": ["BaseFinetuning", "BackboneFinetuning"],
    "ember.callbacks.stochastic_weight_avg": ["StochasticWeightAveraging"],
    "ember.callbacks.batch_size_finder": ["BatchSizeFinder"],
    "ember.callbacks.lr_finder": ["LearningRateFinder"],
    "ember.callbacks.prediction_writer": ["BasePredictionWriter"],
    "ember.callbacks.progress": ["ProgressBar", "TQDMProgressBar"],
    "ember.callbacks.progress.tqdm_progress": ["TQDMProgressBar"],
    "ember.callbacks.progress.rich_progress": ["RichProgressBar", "RichProgressBarTheme"],
    "ember.strategies.ddp": ["DDPStrategy"],
    "ember.strategies.single_device": ["SingleDeviceStrategy"],
    "ember.strategies.parallel": ["ParallelStrategy"],
    "ember.strategies.deepspeed": ["DeepSpeedStrategy"],
    "ember.trainer.states": ["TrainerFn", "TrainerStatus", "RunningStage"],
    "ember.demos.boring_classes": ["BoringModel", "BoringDataModule", "RandomDataset", "DemoModel",
                                   "ManualOptimBoringModel", "RandomIterableDataset"],
    "ember.demos.transformer": ["Transformer", "WikiText2", "LightningTransformer"],
    "ember.demos.lstm": ["SimpleLSTM", "LightningLSTM", "SequenceSampler"],
    "ember.demos.mnist_datamodule": ["MNISTDataModule"],
}

_NAMES = sorted({(module, name) for table in (LIGHTNING_ALL, DOCUMENTED) for module, names in table.items()
                 for name in names})


@pytest.mark.parametrize(("module", "name"), _NAMES, ids=[f"{m}.{n}" for m, n in _NAMES])
def test_lightning_name_imports_from_the_same_ember_path(module, name):
    assert getattr(importlib.import_module(module), name) is not None


@pytest.mark.parametrize("module", sorted(LIGHTNING_ALL))
def test_ember_all_lists_cover_lightnings(module):
    """``from ember.X import *`` gives every name ``from lightning.pytorch.X import *`` gives."""
    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    assert set(LIGHTNING_ALL[module]) <= set(namespace)


def test_accelerator_names_exist_behind_ember_accelerators():
    from ember import _accelerator_api as acc

    for name in ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator",
                 "find_usable_cuda_devices"]:
        assert hasattr(acc, name)
    assert acc.CPUAccelerator.is_available() and acc.CPUAccelerator().name == "cpu"
    assert acc.CUDAAccelerator.auto_device_count() == torch.cuda.device_count()
    if not torch.cuda.is_available():
        assert acc.find_usable_cuda_devices(-1) == []
        with pytest.raises(RuntimeError, match=r"found only 0 usable CUDA devices"):
            acc.find_usable_cuda_devices(1)


def test_accelerator_names_import_from_ember_accelerators_and_an_accelerator_object_picks_the_device():
    from ember.accelerators import CPUAccelerator, CUDAAccelerator, find_usable_cuda_devices  # noqa: F401

    assert ember.Trainer(accelerator=CPUAccelerator(), logger=False).strategy.root_device.type == "cpu"


def test_a_plugin_ember_does_not_take_is_refused_with_what_to_use():
    with pytest.raises(ValueError, match=r"ember takes cluster environments as plugins.*Trainer\(precision=\.\.\.\)"):
        ember.Trainer(plugins=[object()], logger=False)


def test_any_checkpoint_callback_replaces_the_default_model_checkpoint(tmp_path):
    from ember.callbacks import ModelCheckpoint, OnExceptionCheckpoint

    trainer = ember.Trainer(default_root_dir=tmp_path, callbacks=[OnExceptionCheckpoint(tmp_path)], logger=False)
    assert not any(isinstance(cb, ModelCheckpoint) for cb in trainer.callbacks)
    assert isinstance(trainer.callbacks[-1], OnExceptionCheckpoint)
    assert trainer.checkpoint_callbacks == [trainer.callbacks[-1]]


def _placeholders():
    found = []
    for module, name in _NAMES:
        value = getattr(importlib.import_module(module), name)
        if getattr(value, "_not_in_ember", None) or (callable(value) and getattr(value, "__doc__", "") and
                                                     "is not in ember" in (value.__doc__ or "")):
            found.append((module, name, value))
    return found


def test_names_ember_lacks_fail_when_used_with_why_and_what_to_use():
    placeholders = _placeholders()
    assert {name for _, name, _ in placeholders} >= {"DeepSpeedStrategy", "MixedPrecision", "CheckpointIO",
                                                    "CombinedLoader", "XLAProfiler", "KubeflowEnvironment"}
    for module, name, value in placeholders:
        with pytest.raises(NotInEmberError, match=rf"`pytorch_lightning\.[\w.]*{name}` is not in ember: .+; use .+"):
            value()
    # every recorded name says why and what to use
    assert all(" is not in ember: " in message and "; use " in message for message in MISSING.values())


def test_a_program_may_subclass_a_missing_class_and_fails_only_when_building_it():
    from ember.plugins import CheckpointIO

    class MyIO(CheckpointIO):  # a class definition at import time keeps working
        pass

    with pytest.raises(NotInEmberError, match="ember writes every checkpoint itself"):
        MyIO()
    assert not isinstance(object(), CheckpointIO)


def test_fabric_is_reachable_as_lightning_names_it_and_loads_only_when_used():
    from ember import Fabric
    from ember.fabric import Fabric as FabricFromPackage

    assert Fabric is FabricFromPackage and ember.fabric.Fabric is Fabric  # `import lightning as L; L.Fabric`
    code = "import sys, ember; print('ember.fabric' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_subpackages_are_reachable_from_the_root_like_lightnings():
    assert ember.utilities.grad_norm is not None and ember.plugins.MixedPrecision is not None
    assert ember.core.LightningModule is ember.LightningModule


def test_import_ember_loads_none_of_the_new_subpackages():
    code = ("import sys, ember; print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['ember', 'demos'], ['ember', 'plugins'], ['ember', 'core'], ['ember', 'tuner']) or m in "
            "('ember.callbacks.pruning', 'ember.callbacks.spike', 'torch.nn.utils.prune')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_lightning_logo_prints_the_logo(capsys):
    ember.cli_lightning_logo()
    out = capsys.readouterr().out
    assert "#####################################" in out and out.count("\n") > 10


# --- behaviour -----------------------------------------------------------------------------------------------------
def _quiet(tmp_path, **kwargs):
    defaults = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
                    accelerator="cpu", default_root_dir=str(tmp_path))
    defaults.update(kwargs)
    return ember.Trainer(**defaults)


@pytest.mark.parametrize("norm_type", [1, 2.0, "inf"])
def test_grad_norm_equals_torchs_norms(norm_type):
    from ember.utilities import grad_norm

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1, bias=False))
    model(torch.randn(5, 4)).pow(2).sum().backward()
    p = float(norm_type)
    norms = grad_norm(model, norm_type)
    expected = {f"grad_{p}_norm/{name}": param.grad.norm(p) for name, param in model.named_parameters()}
    expected[f"grad_{p}_norm_total"] = torch.cat([g.grad.flatten() for g in model.parameters()]).norm(p)
    assert norms.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(norms[key], expected[key])
    with pytest.raises(ValueError, match="positive number or 'inf'"):
        grad_norm(model, 0)


def test_grad_norm_skips_parameters_without_gradients_and_groups_with_the_separator():
    from ember.utilities import grad_norm

    model = torch.nn.Linear(2, 1)
    assert grad_norm(model, 2) == {}
    model(torch.ones(1, 2)).sum().backward()
    model.bias.grad = None
    assert sorted(grad_norm(model, 2, group_separator=".")) == ["grad_2.0_norm.weight", "grad_2.0_norm_total"]


class _TwoLayers(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(32, 16)
        self.l2 = torch.nn.Linear(16, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.l2(torch.relu(self.l1(x))), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _zero_fraction(tensors):
    return sum(int((t == 0).sum()) for t in tensors) / sum(t.numel() for t in tensors)


@pytest.mark.parametrize(("epochs", "expected"), [(1, 0.5), (2, 0.75)])
def test_model_pruning_prunes_the_asked_amount_at_each_epoch_end(tmp_path, epochs, expected):
    model = _TwoLayers()
    pruning = ModelPruning("l1_unstructured", amount=0.5, parameter_names=["weight"])
    _quiet(tmp_path, max_epochs=epochs, callbacks=[pruning]).fit(model, random_loader(n=16))
    weights = [model.l1.weight, model.l2.weight]
    assert _zero_fraction(weights) == pytest.approx(expected, abs=1 / 544)  # global: half of what is left, per epoch
    # made permanent at the end of fit: plain parameters, no masks left
    assert not any(name.endswith(("_orig", "_mask")) for name, _ in model.named_parameters())
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert _zero_fraction([model.l1.bias, model.l2.bias]) == 0


def test_model_pruning_local_structured_and_checkpoints_hold_plain_pruned_tensors(tmp_path):
    model = _TwoLayers()
    pruning = ModelPruning("ln_structured", parameters_to_prune=[(model.l1, "weight")], use_global_unstructured=False,
                           pruning_dim=0, pruning_norm=2, amount=0.25, make_pruning_permanent=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    _quiet(tmp_path, max_epochs=1, callbacks=[pruning, checkpoint], enable_checkpointing=True).fit(
        model, random_loader(n=16))
    assert int((model.l1.weight.abs().sum(dim=1) == 0).sum()) == 4  # 4 of 16 rows
    state = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert set(state) == {"l1.weight", "l1.bias", "l2.weight", "l2.bias"}
    torch.testing.assert_close(state["l1.weight"], model.l1.weight.detach())


def test_model_pruning_rejects_bad_arguments_like_lightning():
    from ember.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="pruning_dim"):
        ModelPruning("random_structured", use_global_unstructured=False)
    with pytest.raises(MisconfigurationException, match="needs an unstructured method"):
        ModelPruning("ln_structured", pruning_dim=0, pruning_norm=1)
    with pytest.raises(MisconfigurationException, match="not one of PyTorch's pruning functions"):
        ModelPruning("l3_unstructured")
    with pytest.raises(MisconfigurationException, match="parameter_names"):
        ModelPruning("l1_unstructured", parameter_names=["running_mean"])


class _PlantedSpike(_TwoLayers):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss + 100 * loss.detach() if batch_idx == 6 else loss  # the value spikes, the gradient does not


def test_spike_detection_raises_on_a_planted_spike_and_writes_the_batches_to_skip(tmp_path):
    torch.manual_seed(0)  # the model's initial weights: the unplanted losses stay within 2x of their mean
    spike = SpikeDetection(window=5, warmup=2)
    trainer = _quiet(tmp_path, max_epochs=1, callbacks=[spike])
    with pytest.raises(TrainingSpikeException, match="Training spike detected in batch 6"):
        trainer.fit(_PlantedSpike(), random_loader(n=80, batch_size=8))
    with open(tmp_path / "skip_batches.json") as f:
        assert json.load(f) == [5, 6]
    assert trainer.state.status == "failed"


def test_spike_detection_passes_a_normal_run_and_respects_its_tolerances(tmp_path):
    torch.manual_seed(0)
    _quiet(tmp_path, max_epochs=1, callbacks=[SpikeDetection(window=5)]).fit(_TwoLayers(), random_loader(n=80))
    # the planted spike is below an absolute tolerance of 1e6: not a spike
    _quiet(tmp_path, max_epochs=1, callbacks=[SpikeDetection(window=5, atol=1e6)]).fit(
        _PlantedSpike(), random_loader(n=80))
    path = tmp_path / "spikes"  # a folder: skip_batches.json goes inside
    with pytest.raises(TrainingSpikeException, match="batch 6"):
        _quiet(tmp_path, max_epochs=1, callbacks=[SpikeDetection(exclude_batches_path=path, atol=1.0)]).fit(
            _PlantedSpike(), random_loader(n=80))
    assert json.loads((path / "skip_batches.json").read_text()) == [5, 6]
    with pytest.raises(ValueError, match="mode='median'"):
        SpikeDetection(mode="median")


class _FailsAtStep(_TwoLayers):
    def training_step(self, batch, batch_idx):
        if self.global_step == 6:
            raise RuntimeError("data went bad")
        return super().training_step(batch, batch_idx)


def test_save_on_exception_writes_a_checkpoint_when_training_step_raises(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_on_exception=True)
    trainer = _quiet(tmp_path, max_epochs=3, callbacks=[checkpoint], enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="data went bad"):
        trainer.fit(_FailsAtStep(), random_loader(n=32))  # 4 steps per epoch: fails in epoch 1 at step 6
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["epoch=0-step=4.ckpt", "epoch=1-step=6.ckpt"]
    saved = torch.load(tmp_path / "ckpt" / "epoch=1-step=6.ckpt", weights_only=True)
    assert saved["global_step"] == 6 and saved["epoch"] == 1


def test_without_save_on_exception_nothing_is_written_at_the_failure(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    with pytest.raises(RuntimeError):
        _quiet(tmp_path, max_epochs=3, callbacks=[checkpoint], enable_checkpointing=True).fit(
            _FailsAtStep(), random_loader(n=32))
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["epoch=0-step=4.ckpt"]


def test_checkpoint_is_the_base_of_ember_checkpoint_callbacks_and_runs_after_the_module():
    assert issubclass(ModelCheckpoint, Checkpoint) and issubclass(OnExceptionCheckpoint, Checkpoint)
    assert issubclass(Checkpoint, Callback)
    seen = {}

    class Module(BoringModel):
        def on_train_epoch_end(self):
            self.finished_epoch = self.current_epoch

    class MyCheckpoint(Checkpoint):  # as in Lightning: acts after the module's on_train_epoch_end
        def on_train_epoch_end(self, trainer, pl_module):
            seen["checkpoint"] = getattr(pl_module, "finished_epoch", None)

    class Plain(Callback):  # a plain callback runs before the module's hook
        def on_train_epoch_end(self, trainer, pl_module):
            seen["plain"] = getattr(pl_module, "finished_epoch", None)

    trainer = _quiet(os.getcwd(), max_epochs=2, callbacks=[MyCheckpoint(), Plain()], enable_checkpointing=True)
    assert not any(isinstance(cb, ModelCheckpoint) for cb in trainer.callbacks)  # it replaces the default one
    trainer.fit(Module(), random_loader(n=16))
    assert seen == {"checkpoint": 1, "plain": 0}


# --- smaller utilities ---------------------------------------------------------------------------------------------
def test_model_summary_object_matches_the_callbacks_table():
    from ember.callbacks.model_summary import summarize as summary_table
    from ember.utilities.model_summary import ModelSummary, summarize

    model = BoringModel()
    model.example_input_array = torch.zeros(4, 32)
    summary = summarize(model, max_depth=1)
    assert isinstance(summary, ModelSummary)
    assert (summary.layer_names, summary.layer_types, summary.param_nums) == (["layer"], ["Linear"], [66])
    assert (summary.total_parameters, summary.trainable_parameters) == (66, 66)
    assert summary.in_sizes == ["[4, 32]"] and summary.out_sizes == ["[4, 2]"]
    assert summary.model_size == pytest.approx(66 * 4 / 1e6, abs=1e-3)
    assert str(summary) == summary_table(model, max_depth=1)


def test_isolate_rng_restores_the_random_state():
    from ember.utilities.seed import isolate_rng

    torch.manual_seed(3)
    with isolate_rng():
        inside = torch.rand(3)
    torch.testing.assert_close(torch.rand(3), inside)


def test_hyperparameters_mixin_gives_a_plain_class_save_hyperparameters():
    from ember.core.mixins import HyperparametersMixin

    class Encoder(HyperparametersMixin):
        def __init__(self, width: int = 8, depth: int = 2):
            super().__init__()
            self.save_hyperparameters()

    encoder = Encoder(width=16)
    assert dict(encoder.hparams) == {"width": 16, "depth": 2} and encoder.hparams.width == 16


def test_trainer_states_compare_equal_to_embers_state_strings(tmp_path):
    from ember.trainer.states import RunningStage, TrainerFn, TrainerStatus

    trainer = _quiet(tmp_path, max_epochs=1)
    trainer.fit(BoringModel(), random_loader(n=8))
    assert trainer.state.fn == TrainerFn.FITTING and trainer.state.status == TrainerStatus.FINISHED
    assert RunningStage.SANITY_CHECKING.evaluating and RunningStage.TRAINING == "train"


def test_parallel_strategy_covers_ddp_and_cannot_be_built():
    from ember.strategies import DDPStrategy, ParallelStrategy, SingleDeviceStrategy

    assert isinstance(DDPStrategy(), ParallelStrategy) and not isinstance(SingleDeviceStrategy(), ParallelStrategy)
    with pytest.raises(NotInEmberError, match="use ember.strategies.DDPStrategy"):
        ParallelStrategy()


def test_shared_parameters_are_found_and_retied():
    from ember.utilities import find_shared_parameters, set_shared_parameters

    model = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2)})
    model["b"].weight = model["a"].weight
    shared = find_shared_parameters(model)
    assert shared == [["a.weight", "b.weight"]]
    model["b"].weight = torch.nn.Parameter(torch.zeros(2, 2))  # untied (as a device move may do)
    set_shared_parameters(model, shared)
    assert model["b"].weight is model["a"].weight


def test_memory_and_data_helpers():
    from ember.utilities.data import extract_batch_size, has_len
    from ember.utilities.memory import is_oom_error, recursive_detach

    x = torch.ones(2, requires_grad=True) * 2
    out = recursive_detach({"a": x, "b": [x]}, to_cpu=True)
    assert not out["a"].requires_grad and not out["b"][0].requires_grad
    assert is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_oom_error(RuntimeError("shape mismatch"))
    assert extract_batch_size({"x": torch.zeros(5, 3)}) == 5
    assert has_len([1, 2]) and not has_len(iter([1]))
    with pytest.raises(ValueError, match="found no tensor"):
        extract_batch_size({"name": 3})


def test_yaml_hparams_round_trip(tmp_path):
    from ember.core.saving import load_hparams_from_yaml, save_hparams_to_yaml

    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {"lr": 0.1, "layers": [2, 3]})
    assert load_hparams_from_yaml(path) == {"lr": 0.1, "layers": [2, 3]}
    with pytest.warns(UserWarning, match="Missing hyperparameters file"):
        assert load_hparams_from_yaml(tmp_path / "nope.yaml") == {}


def test_boring_classes_train(tmp_path):
    from ember.demos import BoringDataModule, BoringModel as LightningBoringModel, DemoModel
    from ember.demos.boring_classes import ManualOptimBoringModel, RandomDataset

    trainer = _quiet(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=2)
    trainer.fit(LightningBoringModel())
    assert trainer.global_step == 4
    _quiet(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2).fit(
        LightningBoringModel(), datamodule=BoringDataModule())
    _quiet(tmp_path, max_epochs=1, limit_train_batches=2).fit(ManualOptimBoringModel())
    _quiet(tmp_path, max_epochs=1).fit(DemoModel(), DataLoader(RandomDataset(32, 8), batch_size=4))


def test_wikitext2_reads_a_local_file_and_the_transformer_demo_trains(tmp_path):
    from ember.demos import LightningTransformer, WikiText2

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wikitext-2.txt").write_text("the cat sat on the mat\n" * 40)
    dataset = WikiText2(block_size=5)  # ./data (the test runs in tmp_path); present, so no download
    inputs, target = dataset[0]
    assert dataset.vocab_size == 6 and torch.equal(inputs[1:], target[:-1])
    trainer = _quiet(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(LightningTransformer(vocab_size=dataset.vocab_size))
    assert trainer.global_step == 1
    with pytest.raises(FileNotFoundError, match="does not exist. Pass download=True"):
        WikiText2(tmp_path / "elsewhere", download=False)


def test_get_torchvision_model_builds_torchvision_models_by_name():
    pytest.importorskip("torchvision")
    from ember.utilities.model_helpers import get_torchvision_model

    model = get_torchvision_model("resnet18", weights=None, num_classes=3)
    assert type(model).__name__ == "ResNet" and model.fc.out_features == 3


def test_ddp_ranks_started_under_ember_run_run_the_program_the_same_way(monkeypatch):
    from ember import _lightning_alias
    from ember.strategies.launcher import command_line

    monkeypatch.setattr(_lightning_alias, "_started_as", ["/tmp/train.py"])
    monkeypatch.setattr(sys, "argv", ["/tmp/train.py", "--lr", "0.1"])
    assert command_line() == [sys.executable, "-m", "ember", "run", "/tmp/train.py", "--lr", "0.1"]
