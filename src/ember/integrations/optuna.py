"""Optuna hyperparameter search: a pruning callback and ``ember tune``.

Install the extra: ``pip install optuna`` (or ``pip install -e '.[optuna]'``).

Recipe, in Python: each trial is a normal run with its own logs and saved ``config.yaml``::

    import optuna
    from ember.cli import LightningCLI
    from ember.integrations.optuna import OptunaPruningCallback

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        cli = LightningCLI(args=["fit", "--config", "conf.yaml", f"--model.init_args.lr={lr}",
                                 f"--trainer.default_root_dir=tune/trial_{trial.number}"],
                           trainer_defaults={"callbacks": [OptunaPruningCallback(trial, monitor="val_loss")]})
        return cli.trainer.callback_metrics["val_loss"].item()

    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=20)
    print(study.best_trial.params)

The same from the command line (``--search`` takes ``uniform(a,b)``, ``loguniform(a,b)``, ``int(a,b)`` or
``choice(x,y,...)``; arguments after ``--`` go to every trial's ``ember fit``)::

    ember tune --config conf.yaml --n-trials 20 --monitor val_loss --search 'model.init_args.lr=loguniform(1e-4,1e-1)'
"""
from __future__ import annotations

import argparse
import ast
import os
from typing import Any, Optional

from ember.callbacks.callback import Callback


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise ImportError("ember's Optuna integration needs optuna: pip install optuna "
                          "(or pip install -e '.[optuna]')") from e
    return optuna


class OptunaPruningCallback(Callback):
    """Reports ``trainer.callback_metrics[monitor]`` to an Optuna trial after each validation (as Lightning's EarlyStopping, once the epoch's metrics are reduced), and stops
    the run with ``optuna.TrialPruned`` when the study's pruner says the trial is not promising.

    >>> callback = OptunaPruningCallback(trial, monitor="val_loss")  # doctest: +SKIP
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self._optuna = _import_optuna()
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:  # the sanity check's numbers are not an epoch of this trial
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            logged = ", ".join(f"`{k}`" for k in metrics) or "none"
            raise RuntimeError(
                f"OptunaPruningCallback(monitor={self.monitor!r}) found no metric `{self.monitor}`; logged metrics "
                f"are: {logged}. Log it with `self.log({self.monitor!r}, ...)` in `validation_step`, or monitor "
                "one of those."
            )
        epoch = trainer.current_epoch
        self.trial.report(float(metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise self._optuna.TrialPruned(f"Trial was pruned at epoch {epoch}.")


PyTorchLightningPruningCallback = OptunaPruningCallback  # the name optuna-integration uses


def _suggest(trial: Any, spec: str) -> tuple[str, Any]:
    """``'model.init_args.lr=loguniform(1e-4,1e-1)'`` -> ``('model.init_args.lr', <a value the trial suggests>)``."""
    key, _, rest = spec.partition("=")
    kind, _, args = rest.partition("(")
    if not key or not args.endswith(")") or kind not in ("uniform", "loguniform", "int", "choice"):
        raise ValueError(f"--search {spec!r} must look like 'model.init_args.lr=loguniform(1e-4,1e-1)'; the "
                         "distributions are uniform(a,b), loguniform(a,b), int(a,b) and choice(x,y,...).")
    values = ast.literal_eval(f"({args[:-1]},)")
    if kind == "choice":
        return key, trial.suggest_categorical(key, list(values))
    if kind == "int":
        return key, trial.suggest_int(key, *values)
    return key, trial.suggest_float(key, *values, log=kind == "loguniform")


def tune_main(argv: Optional[list] = None) -> int:
    """``ember tune``: runs ``--n-trials`` trials of ``ember fit``, each in ``<root>/trial_<n>``; prints the best."""
    optuna = _import_optuna()
    parser = argparse.ArgumentParser(prog="ember tune", description="search hyperparameters with Optuna")
    parser.add_argument("--config", action="append", default=[], help="the fit config (repeatable)")
    parser.add_argument("--search", action="append", default=[], help="KEY=DIST(args), repeatable")
    parser.add_argument("--n-trials", type=int, default=10)
    parser.add_argument("--monitor", default="val_loss")
    parser.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    parser.add_argument("--pruner", choices=("median", "none"), default="median")
    parser.add_argument("--root-dir", default="ember-tune", help="each trial logs into ROOT_DIR/trial_<n>")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    args, fit_args = parser.parse_known_args(argv)
    fit_args = [a for a in fit_args if a != "--"]
    if not args.search:
        parser.error("give at least one --search, e.g. --search 'model.init_args.lr=loguniform(1e-4,1e-1)'")

    from ember.cli import LightningCLI

    def objective(trial: Any) -> float:
        overrides = [f"--{key}={value}" for key, value in (_suggest(trial, spec) for spec in args.search)]
        root = os.path.join(args.root_dir, f"trial_{trial.number}")
        cli = LightningCLI(subclass_mode_model=True, subclass_mode_data=True,
                           args=["fit", *(f"--config={c}" for c in args.config), *fit_args, *overrides,
                                 f"--trainer.default_root_dir={root}"],
                           trainer_defaults={"callbacks": [OptunaPruningCallback(trial, args.monitor)]})
        trial.set_user_attr("log_dir", cli.trainer.log_dir)
        return float(cli.trainer.callback_metrics[args.monitor])

    pruner = optuna.pruners.MedianPruner() if args.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(direction=args.direction, pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective, n_trials=args.n_trials)
    best = study.best_trial
    print(f"best trial: {best.number} {args.monitor}={best.value:.6g} params={best.params}")
    print(f"its logs and config.yaml: {best.user_attrs.get('log_dir')}")
    return 0
