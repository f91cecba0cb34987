"""Training and validation curves of a run, drawn to a PNG.

A run folder holds a CSVLogger ``metrics.csv`` or TensorBoardLogger event files (the default logger is
TensorBoard's when tensorboard is installed, else CSV); either is read.

>>> from ember.plot import plot_metrics
>>> plot_metrics("lightning_logs/version_0")  # doctest: +SKIP
'lightning_logs/version_0/metrics.png'

From a shell: ``ember plot lightning_logs/version_0 -o curves.png`` (or the path of its metrics.csv). Metrics that
measure the same thing share one subplot: ``train_loss``, ``train_loss_epoch`` and ``val_loss``
go together as "loss", ``train_acc`` and ``val_acc`` as "acc". The x axis is the logged step.
matplotlib (and tensorboard, for event files) are imported only here, on first use; matplotlib with the
non-interactive Agg backend.
"""
from __future__ import annotations

import argparse
import csv
import glob
import math
import os
from typing import Optional, Sequence

Series = dict  # {metric: (steps, values)}

__all__ = ["find_metrics", "main", "metric_family", "plot_metrics", "read_metrics"]

_STAGES = ("train_", "val_", "valid_", "validation_", "test_")
_NOT_METRICS = ("step", "epoch")
_EVENTS = "events.out.tfevents."  # how TensorBoard event files are named


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


def find_metrics(path: "str | os.PathLike") -> str:
    """The file or folder ``read_metrics`` reads for ``path``: a ``metrics.csv``, or a folder of event files.

    ``path`` is a metrics.csv, or a run folder (``lightning_logs/version_0``) holding a metrics.csv (preferred)
    or TensorBoard event files (``events.out.tfevents.*``).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        if os.path.basename(path).startswith(_EVENTS):  # one event file: read its folder
            return os.path.dirname(path) or "."
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"plot_metrics: no file or folder {path!r}. Pass a run folder such as "
                                "lightning_logs/version_0, or the metrics.csv that CSVLogger writes in it.")
    if os.path.isfile(os.path.join(path, "metrics.csv")):
        return os.path.join(path, "metrics.csv")
    if glob.glob(os.path.join(path, _EVENTS + "*")):
        return path
    runs = {os.path.relpath(os.path.dirname(f), path) for depth in ("*", os.path.join("*", "*"))
            for pattern in ("metrics.csv", _EVENTS + "*") for f in glob.glob(os.path.join(path, depth, pattern))}
    found = (f"run folders inside it: {', '.join(sorted(runs)[:5])}" if runs else
             f"it holds: {', '.join(sorted(os.listdir(path))[:8]) or 'nothing'}")
    raise FileNotFoundError(f"plot_metrics: {path} holds no metrics.csv (CSVLogger) and no TensorBoard event files "
                            f"(events.out.tfevents.*); {found}. Pass one run's folder, e.g. "
                            "lightning_logs/version_0.")


def read_metrics(path: "str | os.PathLike") -> Series:
    """``{metric: (steps, values)}`` of a run: its metrics.csv, or its TensorBoard event files.

    ``path``: as for ``find_metrics``. In a CSV, empty cells and non-numeric columns are skipped.
    """
    source = find_metrics(path)
    return _read_tensorboard(source) if os.path.isdir(source) else _read_csv(source)


def _read_csv(csv_path: str) -> Series:
    series: Series = {}
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


def _read_tensorboard(folder: str) -> Series:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        raise ImportError(f"{folder} holds TensorBoard event files; reading them needs tensorboard: "
                          "pip install tensorboard. Or log with CSVLogger, whose metrics.csv needs nothing.") from e
    accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    series: Series = {}
    for tag in accumulator.Tags().get("scalars", []):
        if tag in _NOT_METRICS:
            continue
        events = [e for e in accumulator.Scalars(tag) if not math.isnan(e.value)]
        if tag == "hp_metric" and all(e.value == -1 for e in events):
            continue  # TensorBoardLogger's placeholder (default_hp_metric), not a measurement
        if events:
            series[tag] = ([float(e.step) for e in events], [float(e.value) for e in events])
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


def plot_metrics(path: "str | os.PathLike", out_path: "str | os.PathLike | None" = None,
                 keys: Optional[Sequence[str]] = None) -> str:
    """Draw the curves of a run to a PNG and return its path.

    Args:
        path: a run folder (``lightning_logs/version_0``) holding a CSVLogger ``metrics.csv`` or TensorBoard event
            files, or the path of a ``metrics.csv``.
        out_path: where the PNG goes; default: ``metrics.png`` in the run folder.
        keys: the metrics to draw (default: all numeric ones but ``step`` and ``epoch``).
    """
    source = find_metrics(path)
    series = read_metrics(source)
    run_dir = source if os.path.isdir(source) else (os.path.dirname(source) or ".")
    if keys is not None:
        missing = [k for k in keys if k not in series]
        if missing:
            raise ValueError(f"plot_metrics: no values for {missing} in {source}; "
                             f"metrics with values are: {', '.join(sorted(series)) or '(none)'}.")
        series = {k: series[k] for k in keys}
    if not series:
        raise ValueError(f"plot_metrics: {source} has no metric values to plot (only empty or step/epoch ones). "
                         "Log some with self.log('train_loss', loss) during fit.")
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
    fig.suptitle(os.path.basename(os.path.abspath(run_dir)) or run_dir, fontsize="medium")
    fig.tight_layout()
    out = os.fspath(out_path) if out_path is not None else os.path.join(run_dir, "metrics.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``ember plot lightning_logs/version_0 [-o out.png] [--keys train_loss val_loss]``."""
    parser = argparse.ArgumentParser(prog="ember plot",
                                     description="Draw the training and validation curves of a run (its CSVLogger "
                                                 "metrics.csv or its TensorBoard event files) to a PNG.")
    parser.add_argument("run", help="a run folder (e.g. lightning_logs/version_0) or the path of its metrics.csv")
    parser.add_argument("-o", "--output", default=None, help="PNG to write (default: metrics.png in the run folder)")
    parser.add_argument("--keys", nargs="+", default=None, help="only these metrics")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        out = plot_metrics(args.run, args.output, args.keys)
    except (FileNotFoundError, ValueError, ImportError) as e:
        parser.exit(1, f"ember plot: error: {e}\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
