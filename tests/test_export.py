"""Export: ONNX (run in onnxruntime), TorchScript (script and trace), torch.export, and ember.serve.load."""
import warnings

import pytest
import torch

import ember
from ember import serve


class SmallCNN(ember.LightningModule):
    """Conv + batch norm + dropout: eval mode changes the output, so a wrong mode shows in the numbers."""

    def __init__(self, channels: int = 4, classes: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.conv = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(channels, classes)
        self.example_input_array = torch.randn(2, 1, 8, 8)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.head(self.drop(x.mean(dim=(2, 3))))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SmallCNN()
    with torch.no_grad():  # non-trivial running statistics, so train and eval mode differ
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
    return m


def _reference(model, x):
    training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train(training)
    return out


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # torch.jit and the legacy ONNX exporter warn that they are deprecated
        warnings.simplefilter("ignore")
        yield


# --- TorchScript -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["script", "trace"])
def test_to_torchscript_saves_a_file_that_reloads_to_the_same_outputs(model, tmp_path, method):
    x = torch.randn(5, 1, 8, 8)
    path = tmp_path / "model.pt"
    scripted = model.to_torchscript(path, method=method)
    assert isinstance(scripted, torch.jit.ScriptModule)
    assert model.training and model.bn.training  # the mode the model had is given back
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(x), _reference(model, x))
    torch.testing.assert_close(serve.load(path)(x), _reference(model, x))


def test_to_torchscript_trace_uses_example_inputs_over_example_input_array(model):
    model.example_input_array = None
    scripted = model.to_torchscript(method="trace", example_inputs=torch.randn(3, 1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(scripted(x), _reference(model, x))


def test_to_torchscript_restores_each_submodules_mode(model):
    model.eval()
    model.drop.train()
    model.to_torchscript()
    assert not model.training and model.drop.training and not model.bn.training


def test_to_torchscript_rejects_an_unknown_method(model):
    with pytest.raises(ValueError, match=r"to_torchscript\(method='compile'\).*'script'.*'trace'.*to_exported_program"):
        model.to_torchscript(method="compile")


def test_trace_without_an_input_sample_names_example_input_array(model):
    model.example_input_array = None
    with pytest.raises(ValueError, match=r"to_torchscript\(method='trace'\).*example_inputs=.*example_input_array"):
        model.to_torchscript(method="trace")


def test_scripting_a_detached_module_leaves_trainer_raising_afterwards(model):
    model.to_torchscript()
    assert model._jit_is_scripting is False
    with pytest.raises(RuntimeError, match="not attached to a Trainer.*to_torchscript"):
        model.trainer


def test_detached_for_jit_lets_plain_torch_jit_trace_run(model):
    from ember.export import detached_for_jit

    x = torch.randn(2, 1, 8, 8)
    model.eval()
    with detached_for_jit(model):
        assert model.trainer is None
        traced = torch.jit.trace(model, x)
    torch.testing.assert_close(traced(x), _reference(model, x))


def test_to_torchscript_after_fit(tmp_path):
    class Regressor(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.example_input_array = torch.zeros(1, 2)

        def forward(self, x):
            return self.layer(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
    model = Regressor()
    trainer = ember.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    scripted = model.to_torchscript(tmp_path / "r.pt")
    x = torch.randn(4, 2)
    torch.testing.assert_close(scripted(x), _reference(model, x))


# --- torch.export ------------------------------------------------------------------------------------------
def test_to_exported_program_matches_the_model_and_saves_a_pt2(model, tmp_path):
    path = tmp_path / "model.pt2"
    program = model.to_exported_program(file_path=path)
    assert isinstance(program, torch.export.ExportedProgram)
    assert model.training and model.drop.training
    x = model.example_input_array
    torch.testing.assert_close(program.module()(x), _reference(model, x))
    torch.testing.assert_close(torch.export.load(str(path)).module()(x), _reference(model, x))
    torch.testing.assert_close(serve.load(path)(x), _reference(model, x))


def test_to_exported_program_with_a_dynamic_batch(model):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = model.to_exported_program(dynamic_shapes={"x": {0: batch}})
    x = torch.randn(7, 1, 8, 8)
    torch.testing.assert_close(program.module()(x), _reference(model, x))


def test_to_exported_program_without_an_input_sample(model):
    model.example_input_array = None
    with pytest.raises(ValueError, match=r"to_exported_program.*input_sample=.*example_input_array.*SmallCNN"):
        model.to_exported_program()


# --- ONNX -------------------------------------------------------------------------------------------------
def test_to_onnx_runs_in_onnxruntime_like_torch(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    model.to_onnx(path, dynamo=False, input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    assert model.training and model.bn.training
    x = torch.randn(6, 1, 8, 8)  # another batch size than example_input_array: the batch axis is dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), _reference(model, x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(serve.load(path)(x), _reference(model, x), rtol=1e-4, atol=1e-5)


def test_to_onnx_with_the_default_dynamo_exporter(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")  # torch>=2.9's default exporter needs it
    path = tmp_path / "model.onnx"
    model.to_onnx(path, input_sample=torch.randn(2, 1, 8, 8), verbose=False)
    x = torch.randn(2, 1, 8, 8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), _reference(model, x), rtol=1e-4, atol=1e-5)


def test_to_onnx_without_an_input_sample(model, tmp_path):
    model.example_input_array = None
    with pytest.raises(ValueError, match=r"to_onnx needs an example input.*example_input_array"):
        model.to_onnx(tmp_path / "model.onnx")


# --- serve -----------------------------------------------------------------------------------------------
def test_serve_load_rejects_an_unknown_extension_and_a_missing_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'\.bin'.*'\.onnx'.*'\.pt2'"):
        serve.load(tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="to_onnx"):
        serve.load(tmp_path / "missing.onnx")
