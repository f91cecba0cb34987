"""Precision and device choice: what the model and batches look like under each ``precision``, and the
errors for combinations that cannot run."""
from __future__ import annotations

import math

import pytest
import torch

import ember
from conftest import BoringModel, random_loader

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Recorder(BoringModel):
    """Records what training_step sees: autocast state, dtypes of the batch, the parameters and an output."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        device = x.device.type
        self.seen = {"autocast": torch.is_autocast_enabled(device), "x": x.dtype, "param": self.layer.weight.dtype,
                     "out": out.dtype}
        loss = torch.nn.functional.mse_loss(out.float(), y.float())
        return loss


def _fit(precision, trainer_kwargs, **extra):
    model = Recorder()
    trainer = ember.Trainer(max_epochs=1, precision=precision, limit_train_batches=2, **{**trainer_kwargs, **extra})
    trainer.fit(model, random_loader())
    return trainer, model


def test_bf16_mixed_on_cpu_runs_steps_under_autocast(trainer_kwargs):
    trainer, model = _fit("bf16-mixed", trainer_kwargs)
    assert trainer.precision == "bf16-mixed"
    assert model.seen == {"autocast": True, "x": torch.float32, "param": torch.float32, "out": torch.bfloat16}
    assert trainer.global_step == 2
    assert model.layer.weight.dtype == torch.float32  # master weights stay in float32


def test_32_true_is_the_default(trainer_kwargs):
    trainer, model = _fit(None, trainer_kwargs)
    assert trainer.precision == "32-true"
    assert model.seen == {"autocast": False, "x": torch.float32, "param": torch.float32, "out": torch.float32}


def test_64_true_converts_parameters_and_float_inputs(trainer_kwargs):
    trainer, model = _fit("64-true", trainer_kwargs)
    assert model.seen == {"autocast": False, "x": torch.float64, "param": torch.float64, "out": torch.float64}
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_64_true_leaves_integer_inputs_alone(trainer_kwargs):
    seen = {}

    class Ints(BoringModel):
        def training_step(self, batch, batch_idx):
            x, labels = batch
            seen["labels"] = labels.dtype
            return torch.nn.functional.cross_entropy(self(x), labels)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(16, 32), torch.randint(0, 2, (16,))), batch_size=8)
    ember.Trainer(max_epochs=1, precision="64-true", **trainer_kwargs).fit(Ints(), loader)
    assert seen["labels"] == torch.int64


def test_bf16_true_makes_parameters_bfloat16(trainer_kwargs):
    trainer, model = _fit("bf16-true", trainer_kwargs)
    assert model.seen["param"] == torch.bfloat16 and model.seen["x"] == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.parametrize("spelling, canonical", [(32, "32-true"), ("32", "32-true"), (64, "64-true"),
                                                 ("bf16", "bf16-mixed")])
def test_precision_spellings(spelling, canonical):
    assert ember.Trainer(precision=spelling, accelerator="cpu", logger=False).precision == canonical


@pytest.mark.parametrize("precision", ["16-mixed", 16, "16"])
def test_16_mixed_on_cpu_falls_back_to_bf16_mixed_with_lightnings_warning(precision):
    with pytest.warns(UserWarning, match=r"AMP with fp16 is not supported on CPU. Using `precision='bf16-mixed'`"):
        trainer = ember.Trainer(accelerator="cpu", precision=precision, logger=False)
    assert trainer.precision == "bf16-mixed" and trainer.scaler is None


@pytest.mark.parametrize("precision", ["8-true", "fp8", 8, "transformer-engine"])
def test_invalid_precision_lists_the_valid_ones(precision):
    with pytest.raises(ValueError) as info:
        ember.Trainer(accelerator="cpu", precision=precision)
    message = str(info.value)
    assert repr(precision) in message
    for valid in ("32-true", "bf16-mixed", "16-mixed", "64-true"):
        assert valid in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_without_cuda_points_to_cpu(accelerator):
    with pytest.raises(RuntimeError, match="accelerator='cpu'"):
        ember.Trainer(accelerator=accelerator)


def test_unknown_accelerator_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'cpu'"):
        ember.Trainer(accelerator="tpu-v9")


def test_auto_accelerator_on_cpu_only_machine_uses_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    trainer = ember.Trainer(accelerator="auto", logger=False)
    assert trainer.root_device.type in ("cpu", "mps")


# --- CUDA only ----------------------------------------------------------------------------------------
@cuda
def test_16_mixed_on_gpu_uses_autocast_and_a_grad_scaler(trainer_kwargs):
    trainer, model = _fit("16-mixed", trainer_kwargs, accelerator="gpu")
    assert model.seen["autocast"] is True and model.seen["out"] == torch.float16
    assert model.seen["param"] == torch.float32
    assert isinstance(trainer.scaler, torch.amp.GradScaler)
    assert trainer.global_step == 2


@cuda
def test_16_mixed_clips_the_unscaled_gradients(trainer_kwargs):
    """Clipping must see true gradient norms: after unscale, before the step, the norm is <= the clip value."""
    norms = []

    class Clipped(Recorder):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    model = Clipped()
    trainer = ember.Trainer(max_epochs=1, precision="16-mixed", gradient_clip_val=1e-3, limit_train_batches=4,
                            **{**trainer_kwargs, "accelerator": "gpu"})
    trainer.fit(model, random_loader())
    assert trainer.scaler.get_scale() > 1.0  # the loss really was scaled
    finite = [n for n in norms if math.isfinite(n)]  # a step with overflowed grads is skipped by the scaler
    assert finite and all(n <= 1e-3 * (1 + 1e-3) for n in finite)


@cuda
def test_16_mixed_checkpoint_holds_the_scaler_state(trainer_kwargs, tmp_path):
    trainer, _ = _fit("16-mixed", trainer_kwargs, accelerator="gpu")
    path = tmp_path / "amp.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert "MixedPrecision" in ckpt and "scale" in ckpt["MixedPrecision"]


@cuda
def test_model_and_batch_move_to_the_gpu(trainer_kwargs):
    seen = {}

    class Where(BoringModel):
        def training_step(self, batch, batch_idx):
            seen["batch"] = batch[0].device.type
            seen["param"] = self.layer.weight.device.type
            return super().training_step(batch, batch_idx)

    ember.Trainer(max_epochs=1, limit_train_batches=1, **{**trainer_kwargs, "accelerator": "gpu"}).fit(
        Where(), random_loader())
    assert seen == {"batch": "cuda", "param": "cuda"}


@cuda
def test_after_a_gpu_run_the_model_and_optimizer_state_are_back_on_the_cpu(trainer_kwargs):
    """As in Lightning: after fit on a GPU the module and the optimizer's state live on the CPU again, so the
    first thing users do next, `model(x)` with a CPU tensor, works."""
    class WithAdam(BoringModel):
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    model = WithAdam()
    trainer = ember.Trainer(max_epochs=1, limit_train_batches=2, **{**trainer_kwargs, "accelerator": "gpu"})
    trainer.fit(model, random_loader())
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    state = [v for s in trainer.optimizers[0].state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert state and all(v.device.type == "cpu" for v in state)
    model(torch.randn(2, 32))
    trainer.test(model, random_loader(16))  # moved to the GPU for the run, back to the CPU after it
    assert {p.device.type for p in model.parameters()} == {"cpu"}
