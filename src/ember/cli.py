"""The ``ember`` console command and ``LightningCLI``: runs configured from the command line and YAML files.

``ember demo`` trains the digits demo. ``ember fit|validate|test|predict`` run any LightningModule and
LightningDataModule named by class path, e.g.::

    ember fit --model ember.demo.DigitsCNN --data ember.demo.DigitsDataModule --trainer.max_epochs 2
    ember fit --config lightning_logs/version_0/config.yaml      # repeat that run exactly

In a script, ``LightningCLI(MyModel, MyDataModule)`` builds the same command from the classes' ``__init__``
signatures and type hints (jsonargparse reads them), so every hyperparameter is an argument and a YAML key;
a subclass adds callback groups, links and optimizer groups through its ``LightningArgumentParser``.
``ember tune`` searches hyperparameters with Optuna (see ``ember.integrations.optuna``), ``ember plot`` draws
a run's curves (``ember.plot``), and ``ember run train.py`` runs an unmodified Lightning program on ember
(``ember._lightning_alias``).

Nothing heavy is imported at the top of this file: jsonargparse loads when a ``LightningCLI`` is built or
``LightningArgumentParser`` is first read (``ember._cli_parser``).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import torch

from ember._hparams import OBJECT_KEY
from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer

__all__ = ["ArgsType", "LRSchedulerCallable", "LRSchedulerTypeUnion", "LightningArgumentParser", "LightningCLI",
           "OptimizerCallable", "ReduceLROnPlateau", "SaveConfigCallback", "instantiate_class", "main"]

_COMMANDS = {
    "demo": "train a small CNN on scikit-learn's bundled handwritten digits",
    "fit": "train a model: ember fit --model path.to.Model --data path.to.DataModule [--config conf.yaml]",
    "validate": "run one validation epoch of a model (same arguments as fit, plus --ckpt_path)",
    "test": "run one test epoch of a model (same arguments as fit, plus --ckpt_path)",
    "predict": "run predict_step over the data (same arguments as fit, plus --ckpt_path)",
    "tune": "search hyperparameters with Optuna: ember tune --config conf.yaml --n-trials 20 --search ...",
    "plot": "draw the curves of a run: ember plot lightning_logs/version_0 [-o curves.png]",
    "run": "run an unmodified Lightning program on ember: ember run train.py [args] (or -m package.module)",
}


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau that also names the metric it watches, so a config can choose it.

    ``--lr_scheduler ReduceLROnPlateau --lr_scheduler.monitor val_loss``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


# the scheduler classes the CLI accepts (torch's ReduceLROnPlateau has no monitor: use the one above)
LRSchedulerTypeTuple = (torch.optim.lr_scheduler.LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[torch.optim.lr_scheduler.LRScheduler, ReduceLROnPlateau]
# type hints for dependency injection: `def __init__(self, optimizer: OptimizerCallable = torch.optim.Adam)`, then
# `self.optimizer(self.parameters())` in configure_optimizers; a config gives `optimizer: {class_path: SGD, ...}`
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
LRSchedulerCallable = Callable[[torch.optim.Optimizer], LRSchedulerTypeUnion]
ArgsType = Optional[Union[List[str], Dict[str, Any]]]


def __getattr__(name: str) -> Any:
    if name == "LightningArgumentParser":  # a jsonargparse subclass: jsonargparse loads on first use only
        _import_jsonargparse()
        from ember._cli_parser import LightningArgumentParser

        globals()[name] = LightningArgumentParser
        return LightningArgumentParser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _import_jsonargparse() -> Any:
    try:
        import jsonargparse
    except ImportError as e:
        raise ImportError("LightningCLI needs jsonargparse: pip install 'jsonargparse[signatures]>=4.40.1' "
                          "(or pip install -e '.[cli]')") from e
    return jsonargparse


def instantiate_class(args: Any, init: dict) -> Any:
    """Build ``init["class_path"](*args, **init["init_args"])``: ``instantiate_class(model.parameters(), config)``."""
    import importlib

    module, _, name = init["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(*(args if isinstance(args, tuple) else (args,)), **dict(init.get("init_args") or {}))


class SaveConfigCallback(Callback):
    """Writes the resolved config of a run as ``config.yaml`` into ``trainer.log_dir`` when the run sets up.

    ``ember fit --config <log_dir>/config.yaml`` repeats the run. An existing file is never overwritten unless
    ``overwrite=True``: a second run into the same folder would otherwise erase the record of the first.
    Subclass and override ``save_config`` to store the config elsewhere too (a logger); with
    ``save_to_log_dir=False`` only ``save_config`` runs.
    """

    def __init__(self, parser: Any, config: Any, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = True) -> None:
        self.parser, self.config = parser, config
        self.config_filename, self.overwrite, self.multifile = config_filename, overwrite, multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError("SaveConfigCallback(save_to_log_dir=False) saves nothing unless a subclass overrides "
                             "save_config(trainer, pl_module, stage); override it, or keep save_to_log_dir=True.")

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.log_dir or trainer.default_root_dir
            path = os.path.join(log_dir, self.config_filename)
            exists = trainer.is_global_zero and not self.overwrite and os.path.isfile(path)
            exists = trainer.strategy.broadcast(exists)  # every rank stops, not only rank 0
            if exists:
                raise RuntimeError(
                    f"SaveConfigCallback found an existing {path} and will not overwrite it: it records an earlier "
                    "run in the same folder. Delete it or choose another trainer.default_root_dir / logger version, "
                    "pass LightningCLI(save_config_kwargs={'overwrite': True}) to replace it, or "
                    "LightningCLI(save_config_callback=None) to save no config."
                )
            if trainer.is_global_zero:
                from ember._cli_parser import KEEP_NONE

                os.makedirs(log_dir, exist_ok=True)
                self.parser.save(self.config, path, overwrite=self.overwrite, multifile=self.multifile, **KEEP_NONE)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Override to store the config somewhere else as well; runs on rank 0 only (no collectives here)."""


class LightningCLI:
    """Builds a command line from the ``__init__`` signatures of a model, a datamodule and the Trainer, then runs it.

    Subcommands ``fit``, ``validate``, ``test``, ``predict`` (or, with ``run=False``, no subcommand: the objects
    are only built). Arguments: ``--config file.yaml`` (repeatable), ``--print_config``, ``--seed_everything``,
    ``--trainer.*``, ``--model.*``, ``--data.*``, ``--ckpt_path``, and ``--optimizer`` / ``--lr_scheduler``
    (class paths) when ``auto_configure_optimizers``. Afterwards ``cli.model``, ``cli.datamodule``,
    ``cli.trainer``, ``cli.config`` (the parsed values) and ``cli.config_init`` (the built objects) hold what was
    built. A subclass adds arguments in ``add_arguments_to_parser(parser)`` (a ``LightningArgumentParser``) and
    may define ``before_fit``/``after_fit`` (and the same for each subcommand), ``before_instantiate_classes``,
    ``after_instantiate_classes``, or override ``configure_optimizers``.

    ``load_from_checkpoint_support=True``: an argument of the model or datamodule built from a ``class_path``
    is stored in checkpoints as that config (plain data), which ``load_from_checkpoint(import_objects=True)``
    builds again. ``--ckpt_path`` reads the model's plain hyperparameters back as defaults (docs/cli.md).

    >>> from ember.demo import DigitsCNN, DigitsDataModule
    >>> cli = LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", "--trainer.max_epochs=1"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model_class: Optional[Union[type, Callable]] = None,
        datamodule_class: Optional[Union[type, Callable]] = None,
        save_config_callback: Optional[type] = SaveConfigCallback,
        save_config_kwargs: Optional[dict] = None,
        trainer_class: Union[type, Callable] = Trainer,
        trainer_defaults: Optional[dict] = None,
        seed_everything_default: Union[bool, int] = True,
        parser_kwargs: Optional[dict] = None,
        parser_class: Optional[type] = None,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
        load_from_checkpoint_support: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = dict(trainer_defaults or {})
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class or __getattr__("LightningArgumentParser")
        self.auto_configure_optimizers = auto_configure_optimizers
        self.load_from_checkpoint_support = load_from_checkpoint_support
        self.model_class, self._model_class = model_class, model_class or LightningModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class, self._datamodule_class = datamodule_class, datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data

        names = self.subcommands()
        main_kwargs = {k: v for k, v in self.parser_kwargs.items() if k not in names}
        subparser_kwargs = {k: v for k, v in self.parser_kwargs.items() if k in names}
        self.setup_parser(run, main_kwargs, subparser_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path(args)
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # --- the parser --------------------------------------------------------------------------------------
    def init_parser(self, **kwargs: Any) -> Any:
        """A new ``LightningArgumentParser`` with ``--config``."""
        from ember import __version__

        jsonargparse = _import_jsonargparse()
        kwargs.setdefault("dump_header", [f"ember=={__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=jsonargparse.ActionConfigFile,
                            help="a YAML config file; repeat to merge several (later ones win)")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        """Build ``self.parser``: one subparser per subcommand, or (``run=False``) the arguments directly."""
        self.parser = self.init_parser(**main_kwargs)
        self._subcommand_parsers: dict = {}
        self._subcommand_method_arguments: dict = {}
        if not add_subcommands:
            self._add_arguments(self.parser)
            return
        jsonargparse = _import_jsonargparse()
        trainer_class = (self.trainer_class if isinstance(self.trainer_class, type)
                         else jsonargparse.class_from_function(self.trainer_class))
        subcommands = self.parser.add_subcommands(required=True, dest="subcommand")
        for name, skip in self.subcommands().items():
            doc = (getattr(trainer_class, name).__doc__ or name).strip().splitlines()[0]
            kwargs = {"description": doc, **subparser_kwargs.get(name, {})}
            parser = self.init_parser(**kwargs)
            self._add_arguments(parser)
            self._subcommand_method_arguments[name] = parser.add_method_arguments(trainer_class, name,
                                                                                  skip=set(skip))
            self._subcommand_parsers[name] = parser
            subcommands.add_subcommand(name, parser, help=doc)

    def _add_arguments(self, parser: Any) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:  # the subclass did not add its own
                parser.add_optimizer_args((torch.optim.Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        """``--seed_everything``."""
        parser.add_argument("--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
                            help="an int seeds every generator; true draws a seed and records it in the config")

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        """The ``trainer``, ``model`` and ``data`` groups, with ``trainer_defaults``."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        defaults = {f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        if defaults:
            parser.set_defaults(defaults)
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required=self.datamodule_class is not None)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Override to add or link arguments: ``parser.link_arguments("data.batch_size", "model.batch_size")``,
        ``parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")``, ``parser.add_optimizer_args(Adam)``."""

    @staticmethod
    def subcommands() -> dict:
        """The subcommands and the arguments of the Trainer method each runs that the CLI fills itself."""
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"},
                "test": {"model", "dataloaders", "datamodule"},
                "predict": {"model", "dataloaders", "datamodule"}}

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: Any) -> None:
        """Send each optimizer/scheduler group added with a ``link_to`` to that argument as a class-path dict."""
        for key, (classes, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to != "AUTOMATIC":  # a tuple's group already holds {"class_path", "init_args"}
                parser.link_arguments(key, link_to, compute_fn=None if isinstance(classes, tuple)
                                      else functools.partial(_class_path_of, classes))

    def parse_arguments(self, parser: Any, args: ArgsType) -> None:
        """Parse ``args`` (a list of strings, a dict, or None for ``sys.argv``) into ``self.config``."""
        jsonargparse = _import_jsonargparse()
        if isinstance(args, (dict, jsonargparse.Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    # --- hyperparameters: the config that built the model, in its checkpoints --------------------------------
    def _config_of(self, key: str) -> dict:
        """The plain-data config of the ``key`` group's ``__init__`` arguments (``init_args`` in subclass mode)."""
        if not hasattr(self, "_config_dump"):
            import yaml

            from ember._cli_parser import KEEP_NONE

            dumped = self.parser.dump(self.config, skip_link_targets=False, format="yaml", **KEEP_NONE)
            self._config_dump = yaml.safe_load(dumped) or {}
            if self.subcommand is not None:
                self._config_dump = self._config_dump.get(self.subcommand) or {}
        section = self._config_dump.get(key) or {}
        if isinstance(section, dict) and "class_path" in section:
            section = {**(section.get("init_args") or {}), **(section.get("dict_kwargs") or {})}
        return section if isinstance(section, dict) else {}

    def _parse_ckpt_path(self, args: ArgsType) -> None:
        """``--ckpt_path`` of a checkpoint with hyperparameters: its plain values become the defaults of the
        ``model`` group and the arguments are parsed again, so the model is built as it was saved; what the command
        line and ``--config`` give still wins. Values built from a class path are not read: nothing named in the
        file is imported (give them on the command line or in the run's config.yaml)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return
        from ember._hparams import split_cli_configs
        from ember._checkpoint_io import load_checkpoint

        # `--weights_only false` (fit/validate/test/predict's own argument) trusts the file; otherwise no code runs
        trusted = self.config[subcommand].get("weights_only") is False
        checkpoint = load_checkpoint(ckpt_path, map_location="cpu", weights_only=False if trusted else None)
        if checkpoint.get("hparams_name") not in (None, "kwargs"):
            return  # save_hyperparameters(config): the stored names are the config's, not __init__ arguments
        stored, from_cli = split_cli_configs(checkpoint.get("hyper_parameters") or {})
        parser = self._subcommand_parsers[subcommand]
        subclass = self.subclass_mode_model
        model = self.config[subcommand].get("model")
        class_path = model.get("class_path") if subclass and hasattr(model, "get") else None
        if subclass:  # the class named on the command line: its module was imported when it was parsed
            module, _, name = str(class_path).rpartition(".")
            model_class = getattr(sys.modules.get(module), name, None)
            if not isinstance(model_class, type):
                return
            accepted = set(list(inspect.signature(model_class.__init__).parameters)[1:])
        else:
            accepted = {action.dest[len("model."):] for action in parser._actions if action.dest.startswith("model.")}
        skipped = [key for key, value in stored.items() if key in from_cli or not _plain_data(value)]
        plain = {key: value for key, value in stored.items() if key in accepted and key not in skipped}
        if skipped:
            warnings.warn(f"--ckpt_path={ckpt_path}: the model's hyperparameters {skipped} are objects (built from "
                          "class paths, or described); they are not read from the checkpoint (nothing it names is "
                          "imported). Give them with --model.<name> or --config (the run's config.yaml).",
                          stacklevel=3)
        if not plain:
            return
        parser.set_defaults({"model": {"class_path": class_path, "init_args": plain}} if subclass
                            else {f"model.{k}": v for k, v in plain.items()})
        self.parse_arguments(self.parser, args)

    # --- building the objects ----------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Override to run code after parsing, before anything is built (``self.config`` can be changed)."""

    def instantiate_classes(self) -> None:
        """Build the model, datamodule, callbacks and Trainer from ``self.config`` into ``self.config_init``.

        With ``load_from_checkpoint_support`` the model and datamodule are built inside ``cli_config_context``, so
        that ``save_hyperparameters`` stores an object built from a ``class_path`` as that config (plain data)."""
        from ember._cli_parser import instantiate

        groups = (("model", self._model_class, self.subclass_mode_model),
                  ("data", self._datamodule_class, self.subclass_mode_data))
        instantiators = [(functools.partial(_build_in_config_context, self, key), cls, subclasses)
                         for key, cls, subclasses in groups  # a function returning the object is not its class
                         if self.load_from_checkpoint_support and isinstance(cls, type)]
        self.config_init = instantiate(self.parser, self.config, instantiators, self._subcommand_parsers.values())
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code once ``cli.model``, ``cli.datamodule`` and ``cli.trainer`` exist."""

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Build the Trainer from ``trainer.*`` and ``kwargs``, with the callbacks of callback groups (such as
        ``--checkpoint.*``), ``trainer_defaults['callbacks']`` and the SaveConfigCallback."""
        config = {**self._get(self.config_init, "trainer", {}), **kwargs}
        callbacks = [*_as_list(config.get("callbacks")),
                     *(self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys),
                     *_as_list(self.trainer_defaults.get("callbacks"))]
        if self.save_config_callback is not None and not config.get("fast_dev_run", False):
            callbacks.append(self.save_config_callback(self._parser(self.subcommand),
                                                       self.config.get(str(self.subcommand), self.config),
                                                       **self.save_config_kwargs))
        config["callbacks"] = callbacks
        return self.trainer_class(**config)

    def _parser(self, subcommand: Optional[str]) -> Any:
        return self.parser if subcommand is None else self._subcommand_parsers[subcommand]

    def _get(self, config: Any, key: str, default: Any = None) -> Any:
        """``config[key]``, inside the subcommand's section when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    def _set_seed(self) -> None:
        section = self.config.get(str(self.subcommand), self.config)
        seed = section["seed_everything"]
        if seed is False:
            return
        if seed is True:  # draw one and write it into the config, so that the saved config repeats the run
            seed = int.from_bytes(os.urandom(4), "little")
        section["seed_everything"] = seed_everything(seed, workers=True)

    # --- optimizers from the command line ----------------------------------------------------------------
    @staticmethod
    def configure_optimizers(lightning_module: Any, optimizer: Any, lr_scheduler: Any = None) -> Any:
        """What the model's ``configure_optimizers`` returns when the CLI builds the optimizer; override to change."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            scheduler = {"scheduler": lr_scheduler, "monitor": lr_scheduler.monitor}
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: Optional[str]) -> None:
        """``--optimizer Adam --optimizer.lr 0.01`` replaces the model's ``configure_optimizers``, as in Lightning."""
        if not self.auto_configure_optimizers or self.model is None:
            return
        parser = self._parser(subcommand)
        optimizers = [k for k, (_, link) in parser._optimizers.items() if link == "AUTOMATIC"]
        schedulers = [k for k, (_, link) in parser._lr_schedulers.items() if link == "AUTOMATIC"]
        if not optimizers:
            return
        if len(optimizers) > 1 or len(schedulers) > 1:
            raise ValueError(
                f"LightningCLI builds at most one optimizer and one scheduler itself (link_to='AUTOMATIC'), but "
                f"found {optimizers + schedulers}. Give the others a link_to (parser.add_optimizer_args(..., "
                "link_to='model.optimizer2')) and build them in the model's configure_optimizers.")
        optimizer_init = self._group_init(parser._optimizers, optimizers[0])
        if not optimizer_init:  # the default groups, and no --optimizer given: the model's own method stays
            return
        scheduler_init = self._group_init(parser._lr_schedulers, schedulers[0]) if schedulers else None
        if type(self.model).configure_optimizers is not LightningModule.configure_optimizers:
            warnings.warn(f"`{type(self.model).__name__}.configure_optimizers` will be overridden by "
                          f"`{type(self).__name__}.configure_optimizers`: the optimizer comes from the command line "
                          "or config.", stacklevel=2)
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        lr_scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        configure = self.configure_optimizers
        self.model.configure_optimizers = lambda: configure(self.model, optimizer, lr_scheduler)

    def _group_init(self, register: dict, key: str) -> Optional[dict]:
        classes = register[key][0]
        init = self._get(self.config_init, key)
        if isinstance(classes, tuple):
            return _plain(init) if init else None
        return _class_path_of(classes, init)  # one class: the group holds only its init_args

    # --- running -----------------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        before, after = getattr(self, f"before_{subcommand}", None), getattr(self, f"after_{subcommand}", None)
        if callable(before):
            before()
        run = getattr(self, subcommand, None) or getattr(self.trainer, subcommand)  # a subclass may define fit()
        run(**self._prepare_subcommand_kwargs(subcommand))
        if callable(after):
            after()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        section = self.config_init[subcommand]
        kwargs = {k: section[k] for k in self._subcommand_method_arguments[subcommand] if k in section}
        kwargs["model"] = self.model
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        return kwargs


def _build_in_config_context(cli: LightningCLI, key: str, class_type: type, *args: Any, **kwargs: Any) -> Any:
    """jsonargparse builds the model (or datamodule) through this: inside ``cli_config_context``."""
    from ember._hparams import cli_config_context

    with cli_config_context(class_type, lambda: cli._config_of(key)):
        return class_type(*args, **kwargs)


def _plain_data(value: Any) -> bool:
    """Numbers, strings, None and lists/dicts of them, none a ``class_path`` or an object's description: what a
    config holds that builds nothing."""
    if isinstance(value, dict):
        return not {"class_path", OBJECT_KEY} & value.keys() and all(
            isinstance(k, str) and _plain_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain_data(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def _as_list(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _plain(value: Any) -> Any:
    """A jsonargparse Namespace as nested dicts (other values unchanged)."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _class_path_of(cls: type, init_args: Any) -> dict:
    return {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": _plain(init_args) or {}}


def _run_main(rest: list) -> int:
    """``ember run train.py [args]`` / ``ember run -m package.module [args]``: see ``ember._lightning_alias``."""
    from ember import _lightning_alias

    usage = ("usage: ember run train.py [args...]   or   ember run -m package.module [args...]\n\n"
             "Runs an unmodified Lightning program on ember: its imports of pytorch_lightning, lightning.pytorch and "
             "lightning are answered by ember's modules; the arguments after the script are the script's own.")
    if not rest or rest[0] in ("-h", "--help"):
        print(usage)
        return 0 if rest else 2
    if rest[0] == "-m":
        if len(rest) < 2:
            print(f"ember run: -m needs a module name.\n{usage}", file=sys.stderr)
            return 2
        _lightning_alias.run_module(rest[1], rest[2:])
        return 0
    if rest[0].startswith("-"):
        print(f"ember run: unknown option {rest[0]!r}; the script comes first, its own arguments after it.\n"
              f"{usage}", file=sys.stderr)
        return 2
    if not os.path.isfile(rest[0]):
        print(f"ember run: no script {rest[0]!r} (looked in {os.getcwd()}).\n{usage}", file=sys.stderr)
        return 2
    _lightning_alias.run_path(rest[0], rest[1:])
    return 0


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ember <command> [options]      (ember <command> --help for its options)\n\ncommands:")
        for name, text in _COMMANDS.items():
            print(f"  {name:<9} {text}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from ember.demo import main as demo_main

        return demo_main(rest)
    if command == "plot":
        from ember.plot import main as plot_main

        return plot_main(rest)
    if command in ("fit", "validate", "test", "predict", "tune"):
        # `--model mymodule.Model` finds mymodule.py in the current folder, as `python main.py fit` finds it beside
        # the script (the console script's own folder is first on sys.path, not the current one)
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
    if command in ("fit", "validate", "test", "predict"):
        LightningCLI(subclass_mode_model=True, subclass_mode_data=True, args=argv, parser_kwargs={"prog": "ember"})
        return 0
    if command == "run":
        return _run_main(rest)
    if command == "tune":
        from ember.integrations.optuna import tune_main

        return tune_main(rest)
    if command in ("--version", "version"):
        from ember import __version__

        print(__version__)
        return 0
    print(f"ember: unknown command {command!r}; commands are: {', '.join(_COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
