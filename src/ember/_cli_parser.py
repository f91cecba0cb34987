"""``ember.cli.LightningArgumentParser``: jsonargparse's parser with Lightning's methods.

This module imports jsonargparse at its top, so ``ember.cli`` loads it only when the parser is first used.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import jsonargparse
import torch

from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.trainer.trainer import Trainer

_LIGHTNING_BASES = (Trainer, LightningModule, LightningDataModule, Callback)
# jsonargparse 4.50 renamed save/dump's skip_none to skip_unset and 4.53 moved add_instantiator to instantiate's
# instantiators, deprecating the old names (gone in 5.0); ember also supports 4.40.1-4.49 (Python 3.9 has no newer)
_VERSION = tuple(int(part) for part in jsonargparse.__version__.split(".")[:2])
KEEP_NONE = {"skip_unset" if _VERSION >= (4, 50) else "skip_none": False}  # save/dump: keep arguments set to None


def instantiate(parser: jsonargparse.ArgumentParser, config: Any, instantiators: list, subparsers: Iterable) -> Any:
    """``parser.instantiate(config)``, building each class through the first of ``instantiators``,
    ``(function(class, *args, **kwargs), class, subclasses too)``, that matches it."""
    if _VERSION >= (4, 53):
        return parser.instantiate(config, instantiators=instantiators)
    for each in (parser, *subparsers):
        for instantiator in instantiators:
            each.add_instantiator(*instantiator)
    return (parser.instantiate if _VERSION >= (4, 49) else parser.instantiate_classes)(config)


class LightningArgumentParser(jsonargparse.ArgumentParser):
    """A jsonargparse ``ArgumentParser`` that adds Lightning classes, optimizers and schedulers as config groups.

    A ``LightningCLI`` hands one to ``add_arguments_to_parser``::

        class MyCLI(LightningCLI):
            def add_arguments_to_parser(self, parser):
                parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")   # --checkpoint.monitor val_loss
                parser.set_defaults({"checkpoint.monitor": "val_loss"})
                parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
                parser.add_optimizer_args(torch.optim.Adam)                      # --optimizer.lr 0.01
                parser.add_lr_scheduler_args(torch.optim.lr_scheduler.StepLR)    # --lr_scheduler.step_size 5

    Environment variables are read when ``default_env=True`` (``PL_TRAINER__MAX_EPOCHS=3``, as in Lightning).
    """

    def __init__(self, *args: Any, description: str = "ember command line tool (Lightning's LightningCLI)",
                 env_prefix: str = "PL", default_env: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []  # groups holding a callback: the CLI adds each to the Trainer
        # the optimizer and scheduler groups added, {key: (class or tuple of classes, link_to)}
        self._optimizers: dict[str, tuple[Any, str]] = {}
        self._lr_schedulers: dict[str, tuple[Any, str]] = {}

    def add_lightning_class_args(self, lightning_class: Union[type, Callable], nested_key: str,
                                 subclass_mode: bool = False, required: bool = True) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or Callback as a group.

        A callback added this way is built by the parser and given to the Trainer (``--checkpoint.monitor``).
        ``subclass_mode=True`` accepts any subclass, chosen by class path. Returns the names of the arguments added.
        """
        if callable(lightning_class) and not isinstance(lightning_class, type):
            lightning_class = jsonargparse.class_from_function(lightning_class)
        if not (isinstance(lightning_class, type) and issubclass(lightning_class, _LIGHTNING_BASES)):
            raise TypeError(
                f"add_lightning_class_args({lightning_class!r}, {nested_key!r}): expected a Trainer, LightningModule, "
                "LightningDataModule or Callback class (or a function returning one). For other classes use "
                "parser.add_class_arguments(cls, key).")
        if issubclass(lightning_class, Callback):
            self.callback_keys.append(nested_key)
        if subclass_mode:
            return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
        if issubclass(lightning_class, Trainer):
            return self._add_trainer_args(lightning_class, nested_key)
        return self.add_class_arguments(lightning_class, nested_key, fail_untyped=False, sub_configs=True)

    def _add_trainer_args(self, trainer_class: type, nested_key: str) -> list[str]:
        # the Trainer is built by the CLI, not the parser; its callbacks and logger get types that let a config
        # name them by class path (ember's Trainer annotates them loosely)
        from typing import List

        from ember.loggers.logger import Logger

        added = self.add_class_arguments(trainer_class, nested_key, instantiate=False, fail_untyped=False,
                                         sub_configs=True, skip={"callbacks", "logger"})
        self.add_argument(f"--{nested_key}.callbacks", type=Optional[Union[List[Callback], Callback]], default=None,
                          help="callbacks, as class paths with init_args")
        self.add_argument(f"--{nested_key}.logger", type=Optional[Union[bool, Logger, List[Logger]]], default=None,
                          help="a logger class path, a list of them, or false for none")
        return [*added, f"{nested_key}.callbacks", f"{nested_key}.logger"]

    def add_optimizer_args(self, optimizer_class: Union[type, tuple] = (torch.optim.Optimizer,),
                           nested_key: str = "optimizer", link_to: str = "AUTOMATIC") -> None:
        """Add an optimizer's arguments as the group ``nested_key`` (its ``params`` are the model's).

        One class (``torch.optim.Adam``) gives ``--optimizer.lr``; a tuple of classes lets ``--optimizer`` pick one
        by class path. With ``link_to="AUTOMATIC"`` the CLI builds it in the model's ``configure_optimizers``;
        otherwise its ``{"class_path", "init_args"}`` goes to the argument ``link_to`` (``"model.optimizer"``).
        """
        self._add_optim_group(self._optimizers, optimizer_class, torch.optim.Optimizer, nested_key, link_to, "params")

    def add_lr_scheduler_args(self, lr_scheduler_class: Union[type, tuple, None] = None,
                              nested_key: str = "lr_scheduler", link_to: str = "AUTOMATIC") -> None:
        """Add a learning-rate scheduler's arguments as the group ``nested_key`` (its ``optimizer`` is filled in).

        The default accepts any torch scheduler by class path, and ``ember.cli.ReduceLROnPlateau`` (which takes the
        ``monitor`` to watch).
        """
        from ember.cli import LRSchedulerTypeTuple

        self._add_optim_group(self._lr_schedulers, lr_scheduler_class or LRSchedulerTypeTuple, LRSchedulerTypeTuple,
                              nested_key, link_to, "optimizer")

    def _add_optim_group(self, register: dict, classes: Union[type, tuple], base: Union[type, tuple], nested_key: str,
                         link_to: str, filled: str) -> None:
        given = classes if isinstance(classes, tuple) else (classes,)
        wrong = [c for c in given if not (isinstance(c, type) and issubclass(c, base))]
        if wrong:
            names = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
            raise TypeError(f"{nested_key}: {wrong[0]!r} is not a subclass of {names}; pass a torch class such as "
                            f"torch.optim.Adam or a tuple of them.")
        kwargs: dict = {"instantiate": False, "fail_untyped": False, "skip": {filled}}
        if isinstance(classes, tuple):
            self.add_subclass_arguments(classes, nested_key, **kwargs)
        else:
            self.add_class_arguments(classes, nested_key, sub_configs=True, **kwargs)
        register[nested_key] = (classes, link_to)
