"""Hyperparameters the way real Lightning programs pass them: modules, classes, partial optimizers, functions,
Namespaces. In memory they stay as given; checkpoints stay loadable with ``torch.load(weights_only=True)``;
``load_from_checkpoint`` rebuilds the model and never imports what a file names unless asked."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import os
import pathlib
import pickle
import sys

import pytest
from re import escape as re_escape
import torch
import yaml
from torch import nn

import ember
from ember.callbacks import ModelCheckpoint
from ember.loggers import CSVLogger
from conftest import random_loader

MODULE_WARNING = r"Attribute 'net' is an instance of `nn.Module` and is already saved during checkpointing"


class Encoder(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.linear = nn.Linear(32, width)

    def forward(self, x):
        return self.linear(x)


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass
class Head:
    width: int = 2
    bias: bool = True


class TemplateModel(ember.LightningModule):
    """The lightning-hydra-template shape: a network and partial optimizer/scheduler factories as arguments."""

    def __init__(self, net: nn.Module, optimizer: functools.partial, scheduler: functools.partial = None,
                 encoder_class: type = Encoder, activation=torch.tanh, mode: Mode = Mode.FAST, head: Head = Head()):
        super().__init__()
        self.save_hyperparameters(logger=True)
        self.net = net
        self.encoder = encoder_class()
        self.head = nn.Linear(32, head.width, bias=head.bias)

    def forward(self, x):
        return self.head(self.hparams.activation(self.encoder(self.net(x))))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.hparams.scheduler(optimizer=optimizer)}


def _template(**kwargs):
    kwargs.setdefault("optimizer", functools.partial(torch.optim.Adam, lr=0.01))
    kwargs.setdefault("scheduler", functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5))
    with pytest.warns(UserWarning, match=MODULE_WARNING):
        return TemplateModel(net=nn.Linear(32, 32), **kwargs)


@pytest.fixture
def trained(tmp_path, trainer_kwargs):
    """A TemplateModel trained 4 steps, with its ModelCheckpoint files and the path of one more checkpoint."""
    model = _template(activation=torch.nn.functional.silu, mode=Mode.SLOW)
    trainer = ember.Trainer(**dict(trainer_kwargs, enable_checkpointing=True, max_steps=4, callbacks=[
        ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)]))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, random_loader(n=32))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it trained
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return trainer, model, path


# --- in memory ----------------------------------------------------------------------------------------------
def test_values_are_kept_as_given_and_a_module_warns_as_in_lightning():
    net = nn.Linear(32, 32)
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    with pytest.warns(UserWarning, match=MODULE_WARNING + r".*save_hyperparameters\(ignore=\['net'\]\)"):
        model = TemplateModel(net, optimizer)
    assert model.hparams.net is net and model.hparams.optimizer is optimizer
    assert model.hparams.encoder_class is Encoder and model.hparams.activation is torch.tanh
    assert model.hparams_initial.net is net and model.hparams_initial.optimizer is optimizer
    model.hparams.optimizer = None  # hparams can change; hparams_initial keeps the first values
    assert model.hparams_initial.optimizer is optimizer


def test_ignore_positional_names_dict_and_namespace():
    class Model(ember.LightningModule):
        def __init__(self, net: nn.Module, lr: float = 0.1, layers: int = 2):
            super().__init__()
            self.save_hyperparameters(ignore=["net"])

    class Named(ember.LightningModule):
        def __init__(self, lr: float = 0.1, layers: int = 2):
            super().__init__()
            self.save_hyperparameters("layers")

    class FromConfig(ember.LightningModule):
        def __init__(self, config):
            super().__init__()
            self.save_hyperparameters(config)

    assert dict(Model(nn.Linear(1, 1)).hparams) == {"lr": 0.1, "layers": 2}  # ignored: no warning either
    assert dict(Named(lr=0.5).hparams) == {"layers": 2}
    assert dict(FromConfig(argparse.Namespace(lr=0.2, opt=torch.optim.Adam)).hparams) == {"lr": 0.2,
                                                                                           "opt": torch.optim.Adam}
    assert dict(FromConfig({"lr": 0.3}).hparams) == {"lr": 0.3}
    with pytest.raises(ValueError, match=r"save_hyperparameters\(\) got a Head \(Head\(width=2, bias=True\)\).*"
                                         r"dataclasses\.asdict\(config\)"):
        FromConfig(Head())


def test_a_subclass_adds_to_and_removes_from_what_the_base_saved():
    class Base(ember.LightningModule):
        def __init__(self, loss_fn=nn.functional.mse_loss, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()

    class Child(Base):
        def __init__(self, depth: int = 3, **kwargs):
            super().__init__(**kwargs)
            self.save_hyperparameters(ignore="loss_fn")

    assert dict(Child(lr=0.2).hparams) == {"lr": 0.2, "depth": 3}

    class Varargs(ember.LightningModule):
        def __init__(self, a, *args, b=2, **kwargs):
            super().__init__()
            self.save_hyperparameters()

    assert dict(Varargs(1, 5, 6, b=3, c=4).hparams) == {"a": 1, "b": 3, "c": 4}  # as Lightning: no *args


# --- the checkpoint -----------------------------------------------------------------------------------------
def test_every_checkpoint_loads_weights_only_and_describes_the_objects(trained, tmp_path):
    _, _, path = trained
    files = [path, *(tmp_path / "ckpts").glob("*.ckpt")]
    assert len(files) == 3  # the one saved by hand, ModelCheckpoint's best and last
    for file in files:
        torch.load(file, weights_only=True)
    stored = torch.load(path, weights_only=True)["hyper_parameters"]
    assert "net" not in stored  # an nn.Module is left out: its weights are in the state dict
    assert stored["optimizer"] == {"_ember_object_": "partial", "target": "torch.optim.adam.Adam",
                                   "kwargs": {"lr": 0.01}}
    assert stored["scheduler"] == {"_ember_object_": "partial", "target": "torch.optim.lr_scheduler.StepLR",
                                   "kwargs": {"step_size": 2, "gamma": 0.5}}
    assert stored["encoder_class"] == {"_ember_object_": "class", "target": f"{__name__}.Encoder"}
    assert stored["activation"] == {"_ember_object_": "function", "target": "torch.nn.functional.silu"}
    assert stored["mode"] == {"_ember_object_": "enum", "target": f"{__name__}.Mode", "name": "SLOW"}
    assert stored["head"] == {"_ember_object_": "instance", "target": f"{__name__}.Head",
                              "kwargs": {"width": 2, "bias": True}}


def test_load_from_checkpoint_with_the_objects_as_keywords(trained):
    _, model, path = trained
    optimizer = functools.partial(torch.optim.SGD, lr=0.5)
    with pytest.warns(UserWarning, match=MODULE_WARNING):
        loaded = TemplateModel.load_from_checkpoint(path, net=nn.Linear(32, 32), optimizer=optimizer, scheduler=None,
                                                    activation=torch.nn.functional.silu, mode=Mode.SLOW)
    assert loaded.hparams.optimizer is optimizer
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(4, 32)
    assert torch.equal(loaded(x), model(x))


def test_load_from_checkpoint_rebuilds_the_objects_when_asked(trained):
    _, model, path = trained
    with pytest.warns(UserWarning, match=MODULE_WARNING):
        loaded = TemplateModel.load_from_checkpoint(path, net=nn.Linear(32, 32), import_objects=True)
    hp = loaded.hparams
    assert hp.optimizer.func is torch.optim.Adam and hp.optimizer.keywords == {"lr": 0.01}
    assert hp.scheduler.func is torch.optim.lr_scheduler.StepLR
    assert hp.activation is torch.nn.functional.silu and hp.mode is Mode.SLOW and hp.head == Head()
    assert hp.encoder_class is Encoder
    x = torch.randn(4, 32)
    assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded.configure_optimizers()["optimizer"], torch.optim.Adam)


def test_a_described_value_falls_back_to_the_default_with_a_warning(trained):
    _, _, path = trained
    with pytest.warns(UserWarning) as record:
        loaded = TemplateModel.load_from_checkpoint(path, net=nn.Linear(32, 32), optimizer=None)
    messages = [str(w.message) for w in record]
    described = [m for m in messages if "only as a description" in m]
    assert len(described) == 1
    # silu and Mode.SLOW differ from the defaults: said; encoder_class is its default (Encoder): not said
    assert "'activation'" in described[0] and "'mode'" in described[0] and "encoder_class" not in described[0]
    assert "import_objects=True" in described[0]
    assert loaded.hparams.activation is torch.tanh and loaded.hparams.mode is Mode.FAST
    assert loaded.hparams.encoder_class is Encoder


def test_a_missing_argument_is_named_with_the_keyword_to_pass(trained):
    _, _, path = trained
    with pytest.raises(TypeError) as error:
        TemplateModel.load_from_checkpoint(path)
    message = str(error.value)
    assert "__init__ needs 'net' and 'optimizer', which have no default" in message
    assert "'net': no value in the checkpoint (an nn.Module given to __init__ is never stored" in message
    assert ("'optimizer': stored only as a description, functools.partial(torch.optim.adam.Adam, lr=0.01): ember "
            "does not import or call what a checkpoint names unless you pass `import_objects=True`") in message
    assert message.endswith("Pass them as keyword arguments: "
                            "`TemplateModel.load_from_checkpoint(path, net=..., optimizer=...)`.")


def test_a_module_left_out_is_explained_in_the_error(tmp_path, trainer_kwargs):
    class WithNet(ember.LightningModule):
        def __init__(self, net: nn.Module, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters(ignore=["net"])
            self.net = net

    model = WithNet(nn.Linear(2, 2))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"lr": 0.1}}, tmp_path / "m.ckpt")
    with pytest.raises(TypeError, match=r"needs 'net', which has no default.*nn\.Module.*state dict.*"
                                        r"Pass it as a keyword argument: `WithNet\.load_from_checkpoint\(path, "
                                        r"net=\.\.\.\)`"):
        WithNet.load_from_checkpoint(tmp_path / "m.ckpt")
    assert WithNet.load_from_checkpoint(tmp_path / "m.ckpt", net=nn.Linear(2, 2)).hparams.lr == 0.1


def test_a_hostile_description_is_never_imported_or_called(tmp_path, monkeypatch):
    probe = tmp_path / "probe"
    probe.mkdir()
    marker = tmp_path / "imported"
    (probe / "ember_hostile_payload.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef run(*a): pass\n")
    monkeypatch.syspath_prepend(str(probe))
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))

    class Victim(ember.LightningModule):
        def __init__(self, a=None, b=None, c=None, d=None, **kwargs):
            super().__init__()
            self.layer = nn.Linear(1, 1)

    hostile = {
        "a": {"_ember_object_": "function", "target": "os.system"},
        "b": {"_ember_object_": "partial", "target": "os.system", "args": ["echo pwned"]},
        "c": {"_ember_object_": "instance", "target": "os.system", "args": ["echo pwned"]},
        "d": [{"_ember_object_": "class", "target": "ember_hostile_payload.run"}],
        "e": {"_ember_object_": "instance", "target": "ember_hostile_payload.run", "kwargs": {"x": 1}},
    }
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": Victim().state_dict(), "hyper_parameters": hostile}, path)
    with pytest.warns(UserWarning, match="only as a description"):
        loaded = Victim.load_from_checkpoint(path)
    assert calls == [] and not marker.exists() and "ember_hostile_payload" not in sys.modules
    assert dict(loaded.hparams) == {}
    with pytest.raises(TypeError, match="import_objects=True"):  # a required argument is not rebuilt either
        class Needs(Victim):
            def __init__(self, a, **kwargs):
                super().__init__()

        Needs.load_from_checkpoint(path)
    assert calls == [] and not marker.exists()


def test_namespace_and_path_are_rebuilt_without_importing(tmp_path):
    class Model(ember.LightningModule):
        def __init__(self, args: argparse.Namespace, data_dir: pathlib.Path = pathlib.Path("data")):
            super().__init__()
            self.save_hyperparameters()
            self.layer = nn.Linear(1, 1)

    model = Model(argparse.Namespace(lr=0.1, sizes=[4, 8]), data_dir=pathlib.Path(tmp_path))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": ember._hparams.hparams_for_checkpoint(
        model.hparams)}, tmp_path / "m.ckpt")
    loaded = Model.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.args == argparse.Namespace(lr=0.1, sizes=[4, 8])
    assert loaded.hparams.data_dir == pathlib.Path(tmp_path)


def test_a_config_saved_whole_is_passed_back_under_its_argument_name(tmp_path, trainer_kwargs):
    class OldStyle(ember.LightningModule):  # Lightning 1.x programs: one `hparams` Namespace argument
        def __init__(self, hparams):
            super().__init__()
            self.save_hyperparameters(hparams)
            self.layer = nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.mse_loss(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    trainer = ember.Trainer(max_steps=1, **trainer_kwargs)
    trainer.fit(OldStyle(argparse.Namespace(lr=0.1, layers=2)), random_loader(n=8))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = OldStyle.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.lr == 0.1 and loaded.hparams.layers == 2


def test_weights_only_false_unpickles_a_trusted_file(tmp_path):
    class Model(ember.LightningModule):
        def __init__(self, optimizer=None):
            super().__init__()
            self.save_hyperparameters()
            self.layer = nn.Linear(1, 1)

    # what Lightning writes: the partial itself, pickled
    model = Model(functools.partial(torch.optim.SGD, lr=0.3))
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        Model.load_from_checkpoint(path)  # weights_only=None is the safe load
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        Model.load_from_checkpoint(path, weights_only=True)
    with pytest.raises(ValueError, match="weights_only='no'"):
        Model.load_from_checkpoint(path, weights_only="no")
    loaded = Model.load_from_checkpoint(path, weights_only=False)
    assert loaded.hparams.optimizer.func is torch.optim.SGD and loaded.hparams.optimizer.keywords == {"lr": 0.3}


Point = __import__("collections").namedtuple("Point", "x y")
ODD_VALUES = [
    nn.Linear(1, 1), [nn.ReLU()], Encoder, torch.relu, nn.functional.silu, functools.partial(torch.optim.SGD, lr=0.1),
    functools.partial(functools.partial(torch.optim.SGD, lr=0.1), momentum=0.9), Mode.FAST, Head(), Point(1, 2),
    argparse.Namespace(a=1, b=[Encoder]), pathlib.Path("/data"), pathlib.PurePosixPath("x"), lambda x: x,
    {nn.Linear: 1, (1, "a"): 2, torch.float32: 3}, {Encoder, Head}, frozenset({1, 2}), (1, (2, torch.tanh)),
    torch.ones(2, requires_grad=True), torch.float16, torch.device("cpu"), torch.Size([2, 3]), 3 + 4j, b"raw",
    __import__("numpy").float32(1.5), __import__("numpy").arange(3), __import__("collections").OrderedDict(a=1),
    __import__("collections").defaultdict(list, a=[1]), object(), sys.stdout, range(3), Ellipsis, print,
    str.upper, "text".upper, type, int, __import__("fractions").Fraction(1, 3), __import__("decimal").Decimal("1.5"),
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_any_value_gives_a_weights_only_checkpoint_and_safe_yaml(value, tmp_path):
    from ember._hparams import hparams_for_checkpoint, hparams_for_display, hparams_for_yaml

    torch.save({"hyper_parameters": hparams_for_checkpoint({"value": value})}, tmp_path / "c.ckpt")
    torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert yaml.safe_load(yaml.safe_dump(hparams_for_yaml({"value": value}))).keys() == {"value"}
    hparams_for_display({"value": value})


# --- loggers --------------------------------------------------------------------------------------------------
def test_hparams_yaml_is_safe_yaml_and_loads_back(trained, tmp_path, trainer_kwargs):
    model = _template(activation=torch.nn.functional.silu)
    trainer_kwargs.update(logger=CSVLogger(tmp_path, name="csv"), max_steps=1, log_every_n_steps=1)
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.fit(model, random_loader(n=8))
    yaml_path = os.path.join(trainer.logger.log_dir, "hparams.yaml")
    with open(yaml_path) as f:
        hparams = yaml.safe_load(f)
    assert hparams["net"] == {"_ember_object_": "nn.Module", "type": "torch.nn.modules.linear.Linear"}
    assert hparams["optimizer"] == {"_ember_object_": "partial", "target": "torch.optim.adam.Adam",
                                    "kwargs": {"lr": 0.01}}
    assert hparams["activation"] == {"_ember_object_": "function", "target": "torch.nn.functional.silu"}
    _, _, path = trained
    with pytest.warns(UserWarning, match=MODULE_WARNING):
        loaded = TemplateModel.load_from_checkpoint(path, hparams_file=yaml_path, net=nn.Linear(32, 32),
                                                    import_objects=True)
    assert loaded.hparams.activation is torch.nn.functional.silu and loaded.hparams.mode is Mode.FAST


def test_hparams_file_replaces_the_stored_values_and_unknown_keywords_are_ignored(tmp_path):
    class Model(ember.LightningModule):
        def __init__(self, lr: float = 0.1, layers: int = 2, name: str = "a"):
            super().__init__()
            self.save_hyperparameters()
            self.layer = nn.Linear(1, 1)

    model = Model(lr=0.5, layers=3)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "m.ckpt")
    (tmp_path / "h.yaml").write_text("lr: 0.01\n")
    (tmp_path / "h.csv").write_text("key,value\nlr,0.02\nname,b c\n")
    (tmp_path / "h.txt").write_text("lr: 0.03\n")
    # as in Lightning, the file replaces the checkpoint's values: layers falls back to its default
    assert dict(Model.load_from_checkpoint(tmp_path / "m.ckpt", hparams_file=tmp_path / "h.yaml").hparams) == {
        "lr": 0.01, "layers": 2, "name": "a"}
    assert dict(Model.load_from_checkpoint(tmp_path / "m.ckpt", hparams_file=tmp_path / "h.csv").hparams) == {
        "lr": 0.02, "layers": 2, "name": "b c"}
    with pytest.warns(UserWarning, match=r"got 'layer', which Model.__init__ does not take; ignored"):
        assert Model.load_from_checkpoint(tmp_path / "m.ckpt", layer=4).hparams.layers == 3
    with pytest.raises(ValueError, match=r"hparams_file=.*h\.txt.*\.yaml or \.yml"):
        Model.load_from_checkpoint(tmp_path / "m.ckpt", hparams_file=tmp_path / "h.txt")


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_logger_false_keeps_a_modules_hyperparameters_from_the_loggers(tmp_path, trainer_kwargs):
    class Quiet(ember.LightningModule):
        def __init__(self, secret: str = "s", optimizer=functools.partial(torch.optim.SGD, lr=0.1)):
            super().__init__()
            self.save_hyperparameters(logger=False)
            self.layer = nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.mse_loss(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return self.hparams.optimizer(self.parameters())

    trainer_kwargs.update(logger=CSVLogger(tmp_path), max_steps=1, log_every_n_steps=1)
    trainer = ember.Trainer(**trainer_kwargs)
    trainer.fit(Quiet(), datamodule=PathData(pathlib.Path("data"), transform=torch.sigmoid))
    with open(os.path.join(trainer.logger.log_dir, "hparams.yaml")) as f:
        assert yaml.safe_load(f) == {"data_dir": {"_ember_object_": "instance", "target": "pathlib.Path",
                                                  "args": ["data"]},
                                     "batch_size": 4,
                                     "transform": {"_ember_object_": "function", "target": "torch.sigmoid"}}


def test_load_from_checkpoint_calls_configure_model_before_loading_the_weights(tmp_path):
    class Lazy(ember.LightningModule):
        def __init__(self, width: int = 3):
            super().__init__()
            self.save_hyperparameters()
            self.layer = None

        def configure_model(self):
            if self.layer is None:
                self.layer = nn.Linear(2, self.hparams.width)

    model = Lazy()
    model.configure_model()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "m.ckpt")
    loaded = Lazy.load_from_checkpoint(tmp_path / "m.ckpt")
    assert torch.equal(loaded.layer.weight, model.layer.weight)


def test_strict_loading_set_by_the_model_is_followed(tmp_path):
    class Partial(ember.LightningModule):  # e.g. adapters saved without the frozen backbone
        def __init__(self):
            super().__init__()
            self.strict_loading = False
            self.backbone = nn.Linear(2, 2)
            self.adapter = nn.Linear(2, 2)

    model = Partial()
    torch.save({"state_dict": {k: v for k, v in model.state_dict().items() if k.startswith("adapter")}},
               tmp_path / "m.ckpt")
    assert torch.equal(Partial.load_from_checkpoint(tmp_path / "m.ckpt").adapter.weight, model.adapter.weight)
    with pytest.raises(ValueError, match=r"strict=True\) conflicts with Partial.strict_loading=False"):
        Partial.load_from_checkpoint(tmp_path / "m.ckpt", strict=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_checkpoint_loads_onto_the_gpu_unless_mapped(tmp_path):
    class Small(ember.LightningModule):
        def __init__(self, width: int = 2):
            super().__init__()
            self.save_hyperparameters()
            self.layer = nn.Linear(2, width)

    model = Small().cuda()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp_path / "m.ckpt")
    assert Small.load_from_checkpoint(tmp_path / "m.ckpt").device.type == "cuda"  # as Lightning
    assert Small.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu").device.type == "cpu"
    assert Small.load_from_checkpoint(tmp_path / "m.ckpt", map_location={"cuda:0": "cpu"}).device.type == "cpu"


OBJECTS = {"net": nn.Linear(2, 2), "optimizer": functools.partial(torch.optim.Adam, lr=0.1), "encoder": Encoder,
           "args": argparse.Namespace(depth=3), "mode": Mode.FAST, "lr": 0.1}
AS_TEXT = {"net": "torch.nn.modules.linear.Linear", "optimizer": "functools.partial(torch.optim.adam.Adam, lr=0.1)",
           "encoder": f"{__name__}.Encoder", "mode": "Mode.FAST"}


def test_tensorboard_shows_objects_as_text(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from ember.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams(OBJECTS)
    logger.finalize("success")
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as f:
        assert yaml.safe_load(f)["encoder"] == {"_ember_object_": "class", "target": f"{__name__}.Encoder"}
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    start = next(plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
                 for tag, content in events.PluginTagToContent("hparams").items() if "session_start" in tag)
    shown = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    assert shown == {**AS_TEXT, "args/depth": 3, "lr": 0.1}


def test_mlflow_params_show_objects_as_text(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    logger = MLFlowLogger("hparams", tracking_uri=uri)
    logger.log_hyperparams(OBJECTS)
    logger.finalize("success")
    params = MlflowClient(uri).get_run(logger.run_id).data.params
    assert params == {**AS_TEXT, "args/depth": "3", "lr": "0.1"}


def test_wandb_config_shows_objects_as_text():
    pytest.importorskip("wandb")
    from ember.loggers import WandbLogger

    class Run:  # a W&B run as WandbLogger(experiment=...) receives it: only its config is used here
        def __init__(self):
            self.config = self

        def update(self, params, allow_val_change=False):
            self.params = params

        def define_metric(self, *args, **kwargs):
            pass

    run = Run()
    WandbLogger(experiment=run).log_hyperparams(OBJECTS)
    assert run.params == {**AS_TEXT, "args": {"depth": 3}, "lr": 0.1}


# --- the data module ----------------------------------------------------------------------------------------
class PathData(ember.LightningDataModule):
    def __init__(self, data_dir: pathlib.Path, batch_size: int = 4, transform=torch.tanh):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return random_loader(n=8, batch_size=self.hparams.batch_size)

    def state_dict(self):
        return {"seen": 7}

    def load_state_dict(self, state_dict):
        self.seen = state_dict["seen"]


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_datamodule_load_from_checkpoint(tmp_path, trainer_kwargs):
    from conftest import BoringModel

    data = PathData(pathlib.Path(tmp_path), batch_size=2, transform=torch.sigmoid)
    assert data.hparams.transform is torch.sigmoid and data.hparams_initial.data_dir == pathlib.Path(tmp_path)
    trainer = ember.Trainer(max_steps=1, **trainer_kwargs)
    trainer.fit(BoringModel(), datamodule=data)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    stored = torch.load(tmp_path / "m.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    assert stored["transform"] == {"_ember_object_": "function", "target": "torch.sigmoid"}
    with pytest.warns(UserWarning, match="'transform'"):
        loaded = PathData.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.data_dir == pathlib.Path(tmp_path) and loaded.hparams.batch_size == 2
    assert loaded.hparams.transform is torch.tanh and loaded.seen == 7
    again = PathData.load_from_checkpoint(tmp_path / "m.ckpt", import_objects=True, batch_size=3)
    assert again.hparams.transform is torch.sigmoid and again.hparams.batch_size == 3


# --- core.saving: the same hparams.yaml as the loggers' -------------------------------------------------------
def test_save_hparams_to_yaml_writes_descriptions_that_load_from_checkpoint_reads(trained, tmp_path):
    from ember.core.saving import load_hparams_from_yaml, save_hparams_to_yaml

    _, model, path = trained
    yaml_path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(yaml_path, model.hparams)
    loaded = load_hparams_from_yaml(yaml_path)
    assert loaded == ember._hparams.hparams_for_yaml(model.hparams)  # what a logger's hparams.yaml holds
    assert loaded["optimizer"] == {"_ember_object_": "partial", "target": "torch.optim.adam.Adam",
                                   "kwargs": {"lr": 0.01}}
    assert os.listdir(tmp_path).count("hparams.yaml") == 1 and not list(tmp_path.glob("*.tmp*"))
    with pytest.warns(UserWarning, match=MODULE_WARNING):
        again = TemplateModel.load_from_checkpoint(path, hparams_file=yaml_path, net=nn.Linear(32, 32),
                                                   import_objects=True)
    assert again.hparams.optimizer.func is torch.optim.Adam and again.hparams.mode is Mode.SLOW
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"holds a list, not a mapping"):
        load_hparams_from_yaml(tmp_path / "list.yaml")


# --- what the loggers receive: Lightning's merge of the module's and datamodule's hparams_initial ----------------
class Tagged(ember.LightningModule):
    def __init__(self, batch_size: int = 4, tag: str = "a", weights=None):
        super().__init__()
        self.save_hyperparameters()


class TaggedData(ember.LightningDataModule):
    def __init__(self, batch_size: int = 4, root: str = "data", weights=None, log: bool = True):
        super().__init__()
        self.save_hyperparameters(ignore="log", logger=log)


def test_hparams_to_log_merges_the_initial_values_of_module_and_datamodule():
    from ember._hparams import hparams_to_log

    model, data = Tagged(tag="b"), TaggedData()
    model.hparams.tag = "changed later"  # Lightning logs hparams_initial: the values __init__ received
    assert hparams_to_log(model, data) == {"batch_size": 4, "tag": "b", "weights": None, "root": "data"}
    assert hparams_to_log(model) == {"batch_size": 4, "tag": "b", "weights": None}
    assert hparams_to_log(model, TaggedData(batch_size=8, log=False))["batch_size"] == 4  # logger=False: left out
    with pytest.raises(RuntimeError, match=re_escape(
            "Error while merging hparams: the keys ['batch_size'] are present in both the LightningModule's and "
            "LightningDataModule's hparams but have different values.")):
        hparams_to_log(model, TaggedData(batch_size=8))
    weights = torch.ones(2)
    assert hparams_to_log(Tagged(weights=weights), TaggedData(weights=weights))["weights"] is weights
    with pytest.raises(RuntimeError, match=r"\['weights'\].*save_hyperparameters\(logger=False\)"):
        hparams_to_log(Tagged(weights=weights), TaggedData(weights=torch.ones(2)))  # another tensor, as Lightning
    with pytest.raises(RuntimeError, match=r"\['batch_size'\]"):
        hparams_to_log(model, TaggedData(batch_size=4.0))  # another type


# --- what the Trainer logs ----------------------------------------------------------------------------------
class _LrModel(ember.LightningModule):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(32, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class _LrData(ember.LightningDataModule):
    def __init__(self, lr: float = 0.1, batch_size: int = 8):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return random_loader(batch_size=self.hparams.batch_size)


def _fit_logged(tmp_path, model, datamodule):
    logger = CSVLogger(tmp_path)
    ember.Trainer(max_steps=2, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, datamodule=datamodule)
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as f:
        return yaml.safe_load(f)


def test_the_trainer_logs_the_initial_hyperparameters_of_module_and_datamodule(tmp_path):
    model = _LrModel(lr=0.05)
    model.hparams.lr = 0.5  # changed after saving: Lightning logs hparams_initial
    assert _fit_logged(tmp_path, model, _LrData(lr=0.05, batch_size=4)) == {"lr": 0.05, "batch_size": 4}


def test_one_name_with_different_values_in_module_and_datamodule_raises_lightnings_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"Error while merging hparams: the keys \['lr'\] are present in both"):
        _fit_logged(tmp_path, _LrModel(lr=0.05), _LrData(lr=0.2))
