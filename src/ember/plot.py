"""Training and validation curves from a CSVLogger ``metrics.csv``, drawn to a PNG.

>>> from ember.plot import plot_metrics
>>> plot_metrics("lightning_logs/version_0/metrics.csv")  # doctest: +SKIP
'lightning_logs/version_0/metrics.png'

From a shell: ``ember plot lightning_logs/version_0/metrics.csv -o curves.png``. Metrics that
measure the same thing share one subplot: ``train_loss``, ``train_loss_epoch`` and ``val_loss``
go together as "loss", ``train_acc`` and ``val_acc`` as "acc". The x axis is the logged step.
matplotlib is imported only here, on first use, with the non-interactive Agg backend.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
from typing import Optional, Sequence

__all__ = ["metric_family", "plot_metrics", "read_metrics", "main"]

_STAGES = ("train_", "val_", "valid_", "validation_", "test_")
_NOT_METRICS = ("step", "epoch")


def metric_family(name: str) -> str:
    """The subplot a metric belongs to: its name without the stage prefix and ``_step``/``_epoch`` suffix.

    >>> metric_family("val_loss"), metric_family("train_loss_epoch"), metric_family("lr-Adam")
    ('loss', 'loss', 'lr-Adam')
    """
    for suffix in ("_step", "_epoch"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for prefix in _STAGES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):]
    for sep in ("/", "."):  # "train/loss" style names
        stage, _, rest = name.partition(sep)
        if rest and stage + "_" in _STAGES:
            return rest
    return name


def read_metrics(csv_path: str) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (steps, values)}`` for every numeric column of ``metrics.csv``; empty cells are skipped."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        for i, row in enumerate(reader):
            step_text = row.get("step") or ""
            try:
                step = float(step_text) if step_text != "" else float(i)
            except ValueError:
                step = float(i)
            for key, text in row.items():
                if key is None or key in _NOT_METRICS or text in (None, ""):
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue  # a non-numeric column (a logged string): nothing to draw
                if math.isnan(value):
                    continue
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(value)
    return series


def _import_pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("ember's plots need matplotlib, which is not installed: "
                          "pip install matplotlib (or pip install 'ember[plot]')") from e
    matplotlib.use("Agg", force=True)  # files only: no display needed, works on headless servers
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(csv_path: "str | os.PathLike", out_path: "str | os.PathLike | None" = None,
                 keys: Optional[Sequence[str]] = None) -> str:
    """Draw the curves of ``csv_path`` to a PNG and return its path.

    Args:
        csv_path: a ``metrics.csv`` written by ``ember.loggers.CSVLogger``.
        out_path: where the PNG goes; default: ``metrics.png`` beside the CSV.
        keys: the metric columns to draw (default: all numeric ones but ``step`` and ``epoch``).
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"plot_metrics: no file {csv_path!r}. Pass the metrics.csv that CSVLogger writes, "
                                "e.g. lightning_logs/version_0/metrics.csv.")
    series = read_metrics(csv_path)
    if keys is not None:
        missing = [k for k in keys if k not in series]
        if missing:
            raise ValueError(f"plot_metrics: no values for {missing} in {csv_path}; "
                             f"metrics with values are: {', '.join(sorted(series)) or '(none)'}.")
        series = {k: series[k] for k in keys}
    if not series:
        raise ValueError(f"plot_metrics: {csv_path} has no metric values to plot (only empty or step/epoch columns). "
                         "Log some with self.log('train_loss', loss) and run fit with a CSVLogger.")
    families: dict[str, list[str]] = {}
    for key in series:
        families.setdefault(metric_family(key), []).append(key)

    plt = _import_pyplot()
    n = len(families)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows), squeeze=False)
    for ax, (family, names) in zip(axes.flat, families.items()):
        for name in sorted(names):
            steps, values = series[name]
            # a series with few points (validation, epoch means) gets markers so single points show
            ax.plot(steps, values, label=name, marker="o" if len(values) <= 50 else None, markersize=3)
        ax.set_title(family)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(csv_path))) or csv_path, fontsize="medium")
    fig.tight_layout()
    out = os.fspath(out_path) if out_path is not None else os.path.join(os.path.dirname(csv_path) or ".",
                                                                         "metrics.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``ember plot metrics.csv [-o out.png] [--keys train_loss val_loss]``."""
    parser = argparse.ArgumentParser(prog="ember plot",
                                     description="Draw the training and validation curves of a CSVLogger metrics.csv "
                                                 "to a PNG.")
    parser.add_argument("csv", help="path to metrics.csv (e.g. lightning_logs/version_0/metrics.csv)")
    parser.add_argument("-o", "--output", default=None, help="PNG to write (default: metrics.png beside the CSV)")
    parser.add_argument("--keys", nargs="+", default=None, help="only these metric columns")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        out = plot_metrics(args.csv, args.output, args.keys)
    except (FileNotFoundError, ValueError, ImportError) as e:
        parser.exit(1, f"ember plot: error: {e}\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
