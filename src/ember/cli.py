"""The ``ember`` console command and ``LightningCLI``: runs configured from the command line and YAML files.

``ember demo`` trains the digits demo. ``ember fit|validate|test|predict`` run any LightningModule and
LightningDataModule named by class path, e.g.::

    ember fit --model ember.demo.DigitsCNN --data ember.demo.DigitsDataModule --trainer.max_epochs 2
    ember fit --config lightning_logs/version_0/config.yaml      # repeat that run exactly

In a script, ``LightningCLI(MyModel, MyDataModule)`` builds the same command from the classes' ``__init__``
signatures and type hints (jsonargparse reads them), so every hyperparameter is an argument and a YAML key.
``ember tune`` searches hyperparameters with Optuna (see ``ember.integrations.optuna``).

Nothing heavy is imported at the top of this file: jsonargparse loads inside ``LightningCLI``.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional, Union

from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer

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
# the Trainer method arguments that the CLI fills itself, so they are not command-line arguments
_FILLED_BY_CLI = {"model", "train_dataloaders", "val_dataloaders", "dataloaders", "datamodule"}


def _import_jsonargparse() -> Any:
    try:
        import jsonargparse
    except ImportError as e:
        raise ImportError("LightningCLI needs jsonargparse: pip install 'jsonargparse[signatures]>=4.27' "
                          "(or pip install -e '.[cli]')") from e
    return jsonargparse


class SaveConfigCallback(Callback):
    """Writes the resolved config of a run as ``config.yaml`` into ``trainer.log_dir`` when the run sets up.

    ``ember fit --config <log_dir>/config.yaml`` repeats the run. An existing file is never overwritten unless
    ``overwrite=True``: a second run into the same folder would otherwise erase the record of the first.
    """

    def __init__(self, parser: Any, config: Any, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False) -> None:
        self.parser, self.config = parser, config
        self.config_filename, self.overwrite, self.multifile = config_filename, overwrite, multifile
        self.already_saved = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        log_dir = trainer.log_dir or trainer.default_root_dir
        path = os.path.join(log_dir, self.config_filename)
        if not self.overwrite and os.path.isfile(path):
            raise RuntimeError(
                f"SaveConfigCallback found an existing {path} and will not overwrite it: it records an earlier run "
                "in the same folder. Delete it or choose another trainer.default_root_dir / logger version, pass "
                "LightningCLI(save_config_kwargs={'overwrite': True}) to replace it, or "
                "LightningCLI(save_config_callback=None) to save no config."
            )
        os.makedirs(log_dir, exist_ok=True)
        self.parser.save(self.config, path, overwrite=self.overwrite, multifile=self.multifile)
        self.already_saved = True


class LightningCLI:
    """Builds a command line from the ``__init__`` signatures of a model, a datamodule and the Trainer, then runs it.

    Subcommands ``fit``, ``validate``, ``test``, ``predict`` (or, with ``run=False``, no subcommand: the objects
    are only built). Arguments: ``--config file.yaml`` (repeatable), ``--print_config``, ``--seed_everything``,
    ``--trainer.*``, ``--model.*``, ``--data.*``, ``--ckpt_path``, and ``--optimizer`` / ``--lr_scheduler``
    (class paths) when ``auto_configure_optimizers``. Afterwards ``cli.model``, ``cli.datamodule``,
    ``cli.trainer`` and ``cli.config`` hold what was built.

    >>> from ember.demo import DigitsCNN, DigitsDataModule
    >>> cli = LightningCLI(DigitsCNN, DigitsDataModule, args=["fit", "--trainer.max_epochs=1"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model_class: Optional[Union[type, Callable]] = None,
        datamodule_class: Optional[Union[type, Callable]] = None,
        save_config_callback: Optional[type] = SaveConfigCallback,
        save_config_kwargs: Optional[dict] = None,
        trainer_class: type = Trainer,
        trainer_defaults: Optional[dict] = None,
        seed_everything_default: Union[bool, int] = True,
        parser_kwargs: Optional[dict] = None,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: Optional[Union[list, dict]] = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
    ) -> None:
        self._jsonargparse = _import_jsonargparse()
        self.model_class = model_class or LightningModule
        self.subclass_mode_model = model_class is None or subclass_mode_model
        self.datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = datamodule_class is None or subclass_mode_data
        self._datamodule_required = datamodule_class is not None
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = dict(trainer_defaults or {})
        self.seed_everything_default = seed_everything_default
        self.auto_configure_optimizers = auto_configure_optimizers

        self.parser = self._build_parser(parser_kwargs or {}, run)
        self.config = self.parser.parse_args(args) if not isinstance(args, dict) else self.parser.parse_object(args)
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        instantiate = getattr(self.parser, "instantiate", None) or self.parser.instantiate_classes  # renamed in 4.49
        self.config_init = instantiate(self.config)
        self.datamodule = self._get("data")
        self.model = self._get("model")
        self._add_configure_optimizers_method()
        self.trainer = self.instantiate_trainer()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # --- hooks a subclass may override -----------------------------------------------------------------
    def add_arguments_to_parser(self, parser: Any) -> None:
        """Add or link arguments (``parser.link_arguments("data.batch_size", "model.batch_size")``)."""

    def subcommands(self) -> dict:
        """The subcommands and the arguments of the Trainer method each runs that the CLI fills itself."""
        return {name: _FILLED_BY_CLI for name in ("fit", "validate", "test", "predict")}

    # --- the parser --------------------------------------------------------------------------------------
    def _new_parser(self, **kwargs: Any) -> Any:
        ja = self._jsonargparse
        parser = ja.ArgumentParser(**kwargs)
        parser.add_argument("-c", "--config", action=ja.ActionConfigFile,
                            help="a YAML config file; repeat to merge several (later ones win)")
        return parser

    def _build_parser(self, parser_kwargs: dict, run: bool) -> Any:
        per_command = {k: v for k, v in parser_kwargs.items() if k in self.subcommands()}
        common = {k: v for k, v in parser_kwargs.items() if k not in self.subcommands()}
        main = self._new_parser(**common)
        if not run:
            self._add_core_arguments(main)
            return main
        subcommands = main.add_subcommands(required=True, dest="subcommand")
        for name, skip in self.subcommands().items():
            doc = (getattr(self.trainer_class, name).__doc__ or "").strip().splitlines()[0:1]
            kwargs = {k: v for k, v in common.items() if k not in ("prog", "description")}
            sub = self._new_parser(**{**kwargs, **per_command.get(name, {})})
            self._add_core_arguments(sub)
            sub.add_method_arguments(self.trainer_class, name, skip=set(skip))
            subcommands.add_subcommand(name, sub, help=doc[0] if doc else name)
        return main

    def _add_core_arguments(self, parser: Any) -> None:
        from typing import List

        from ember.loggers.logger import Logger

        parser.add_argument("--seed_everything", type=Union[bool, int], default=self.seed_everything_default,
                            help="an int seeds every generator; true draws a seed and records it in the config")
        parser.add_class_arguments(self.trainer_class, "trainer", instantiate=False, fail_untyped=False,
                                   sub_configs=True, skip={"callbacks", "logger"})
        parser.add_argument("--trainer.callbacks", type=Optional[Union[List[Callback], Callback]], default=None,
                            help="callbacks, as class paths with init_args")
        parser.add_argument("--trainer.logger", type=Optional[Union[bool, Logger, List[Logger]]], default=None,
                            help="a logger class path, a list of them, or false for none")
        defaults = {f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        if defaults:
            parser.set_defaults(defaults)
        self._add_class(parser, self.model_class, "model", self.subclass_mode_model, required=True)
        self._add_class(parser, self.datamodule_class, "data", self.subclass_mode_data,
                        required=self._datamodule_required)
        if self.auto_configure_optimizers:
            import torch

            parser.add_subclass_arguments(torch.optim.Optimizer, "optimizer", instantiate=False, required=False,
                                          fail_untyped=False, skip={"params"})
            parser.add_subclass_arguments(torch.optim.lr_scheduler.LRScheduler, "lr_scheduler", instantiate=False,
                                          required=False, fail_untyped=False, skip={"optimizer"})
        self.add_arguments_to_parser(parser)

    @staticmethod
    def _add_class(parser: Any, cls: Any, key: str, subclass_mode: bool, required: bool) -> None:
        if subclass_mode:
            parser.add_subclass_arguments(cls, key, fail_untyped=False, required=required)
        else:
            parser.add_class_arguments(cls, key, fail_untyped=False, sub_configs=True)

    # --- building the objects ----------------------------------------------------------------------------
    def _section(self, config: Any) -> Any:
        return config[self.subcommand] if self.subcommand else config

    def _get(self, key: str) -> Any:
        return self._section(self.config_init).get(key)

    def _set_seed(self) -> None:
        section = self._section(self.config)
        seed = section["seed_everything"]
        if seed is False:
            return
        if seed is True:  # draw one and write it into the config, so that the saved config repeats the run
            seed = int.from_bytes(os.urandom(4), "little")
        section["seed_everything"] = seed_everything(seed, workers=True)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Build the Trainer from ``trainer.*``, adding ``trainer_defaults['callbacks']`` and SaveConfigCallback."""
        config = dict(self._section(self.config_init)["trainer"])
        config.update(kwargs)
        callbacks = config.get("callbacks")
        callbacks = [] if callbacks is None else [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        extra = self.trainer_defaults.get("callbacks") or []
        callbacks += [extra] if isinstance(extra, Callback) else list(extra)
        if self.save_config_callback is not None and self.subcommand is not None:
            parser = self.parser._subcommands_action._name_parser_map[self.subcommand]
            callbacks.append(self.save_config_callback(parser, self.config[self.subcommand], **self.save_config_kwargs))
        config["callbacks"] = callbacks
        return self.trainer_class(**config)

    def _add_configure_optimizers_method(self) -> None:
        """``--optimizer Adam --optimizer.lr 0.01`` replaces the model's ``configure_optimizers``, as in Lightning."""
        section = self._section(self.config)
        optimizer_config = section.get("optimizer") if self.auto_configure_optimizers else None
        if not optimizer_config or self.model is None:
            return
        scheduler_config = section.get("lr_scheduler")

        def build(config: Any, *args: Any) -> Any:
            import importlib

            module, _, name = config["class_path"].rpartition(".")
            return getattr(importlib.import_module(module), name)(*args, **dict(config.get("init_args") or {}))

        def configure_optimizers() -> Any:
            optimizer = build(optimizer_config, self.model.parameters())
            if not scheduler_config:
                return optimizer
            return {"optimizer": optimizer, "lr_scheduler": build(scheduler_config, optimizer)}

        self.model.configure_optimizers = configure_optimizers

    def _run_subcommand(self, subcommand: str) -> None:
        before, after = getattr(self, f"before_{subcommand}", None), getattr(self, f"after_{subcommand}", None)
        if callable(before):
            before()
        kwargs = {"model": self.model}
        if self.datamodule is not None:
            kwargs["datamodule"] = self.datamodule
        section = self.config_init[subcommand]
        for name in _method_args(getattr(self.trainer_class, subcommand)) - set(self.subcommands()[subcommand]):
            if name in section:
                kwargs[name] = section[name]
        getattr(self.trainer, subcommand)(**kwargs)
        if callable(after):
            after()


def _method_args(fn: Callable) -> set:
    import inspect

    return set(inspect.signature(fn).parameters) - {"self"}


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
