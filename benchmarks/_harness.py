"""What the step-time benchmarks share: quiet fits, interleaved repeats, medians, the table, a JSON record.

Not a benchmark itself. ``lstm.py`` and ``cnn_digits.py`` import it (a script's own folder is on
``sys.path`` when it runs as ``python benchmarks/<name>.py``); ``run_all.py`` reads the JSON rows the
scripts write with ``--json``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import time
import warnings
from typing import Any, Callable, Iterator, Optional

BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False)


def lightning_package(disabled: bool = False) -> Any:
    """``pytorch_lightning`` when this interpreter has it (a comparison column only), else None."""
    if disabled:
        return None
    try:
        import pytorch_lightning
    except ImportError:
        return None
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "GPU available: False ..." on every Trainer
    return pytorch_lightning


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No progress bars, summaries or warnings on the terminal while a run is timed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def clocked(work: Callable[[], Any]) -> tuple:
    """(wall seconds, CPU seconds of this process) that ``work()`` took.

    The CPU clock (``time.process_time``) leaves out the time other processes on a shared machine take the CPU
    away: on a busy VM it is the steadier of the two, though not immune (they still share caches and cores).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def timed_fit(trainer: Any, model: Any, loader: Any) -> tuple:
    """(wall, CPU) seconds in ``trainer.fit``: what a hand-written loop's time is compared with."""
    return clocked(lambda: trainer.fit(model, loader))


def fit_with_trainer(framework: Any, model: Any, bare: bool, loader: Any, epochs: int) -> tuple:
    """``framework.Trainer`` (ember's or Lightning's) fitting ``model`` in a temporary folder, quietly, timed."""
    import tempfile

    with tempfile.TemporaryDirectory() as root, silenced():
        trainer = framework.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root,
                                    **(BARE if bare else {}))
        return timed_fit(trainer, model, loader)


def add_arguments(parser: argparse.ArgumentParser, steps: int, repeats: int, lightning: bool = True) -> None:
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps per timed run (default {steps})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"interleaved repeats (default {repeats})")
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke run, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the result rows to PATH (run_all.py reads them)")
    if lightning:
        parser.add_argument("--no-lightning", action="store_true", help="skip the PyTorch Lightning column")


def _stats(times: dict) -> dict:
    names = list(times)
    base = times[names[0]]
    ratios = {name: [a / b for a, b in zip(times[name], base)] for name in names}
    return {
        "per": {name: statistics.median(t) for name, t in times.items()},
        "ratio": {name: statistics.median(r) for name, r in ratios.items()},
        "spread": {name: (min(r), max(r)) for name, r in ratios.items()},
        "noise": {name: (max(t) - min(t)) / statistics.median(t) for name, t in times.items()},
    }


def interleaved(columns: dict, repeats: int, per: float = 1.0, warmup: bool = True) -> dict:
    """Run every column ``repeats`` times, alternating (the order reverses every repeat).

    ``columns`` maps a name to a function returning (wall, CPU) seconds; the first column is the baseline.
    Returns, for each clock (``"wall"``, ``"cpu"``), medians of ``seconds / per`` and the median (and min, max)
    of the per-repeat ratios to the baseline: runs next to each other in time see the same machine load, so
    their ratio is steadier than either time.
    """
    names = list(columns)
    if warmup:
        for name in names:
            columns[name]()
    wall: dict = {name: [] for name in names}
    cpu: dict = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            w, c = columns[name]()
            wall[name].append(w / per)
            cpu[name].append(c / per)
    return {"wall": _stats(wall), "cpu": _stats(cpu)}


def fmt_ratio(res: dict, name: str) -> str:
    lo, hi = res["spread"][name]
    return f"**{res['ratio'][name]:.3f}** ({lo:.2f}–{hi:.2f})"


def step_table(results: dict, unit: str = "µs/step", scale: float = 1e6) -> str:
    """A markdown table, one line per row and clock: per-step medians of every column, ratios to the first."""
    first = next(iter(results.values()))
    names = list(first["wall"]["per"])
    head = " | ".join(f"{n} {unit}" for n in names) + " | " + " | ".join(f"{n} / {names[0]}" for n in names[1:])
    lines = [f"| row | clock | steps/run | {head} | spread of {names[0]} runs |",
             "|---" * (4 + 2 * len(names) - 1) + "|"]
    for row, both in results.items():
        for clock in ("wall", "cpu"):
            res = both[clock]
            per = " | ".join(f"{res['per'][n] * scale:.1f}" for n in names)
            ratios = " | ".join(fmt_ratio(res, n) for n in names[1:])
            noise = res["noise"][names[0]] * 50  # half the min-max range, in % of the median
            lines.append(f"| {row} | {clock} | {both['steps']} | {per} | {ratios} | ±{noise:.0f}% |")
    return "\n".join(lines)


def summary_rows(benchmark: str, results: dict, target: Optional[float]) -> list:
    """The rows ``run_all.py`` prints: ember's ratio to the hand-written loop (and Lightning's, if run)."""
    rows = []
    for row, both in results.items():
        w, c = both["wall"], both["cpu"]
        rows.append({
            "benchmark": benchmark, "row": row, "ratio": w["ratio"]["ember"],
            "figure": f"{w['ratio']['ember']:.3f} ({w['spread']['ember'][0]:.2f}–{w['spread']['ember'][1]:.2f}); "
                      f"CPU {c['ratio']['ember']:.3f}",
            "lightning": (f"{w['ratio']['lightning']:.3f}; CPU {c['ratio']['lightning']:.3f}"
                          if "lightning" in w["ratio"] else ""),
            "target": f"≤ {target:.2f}" if target else "",
            "detail": f"hand-written {w['per']['hand-written'] * 1e6:.0f} µs/step, {both['steps']} steps/run",
        })
    return rows


def write_json(path: Optional[str], rows: list) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def run_steps_benchmark(name: str, args: argparse.Namespace, rows: dict, make_columns: Callable, target: float,
                        steps_per_run: Callable) -> dict:
    """Measure each row's columns (``make_columns(row, steps)`` gives them), print the table, write the JSON."""
    results = {}
    for row, bare in rows.items():
        steps = steps_per_run(args.steps)
        columns = make_columns(bare, args.steps)
        res = interleaved(columns, args.repeats, per=steps)
        res["steps"] = steps
        results[row] = res
        parts = ", ".join(f"{n} {us * 1e6:.1f} µs/step" for n, us in res["wall"]["per"].items())
        print(f"{row}: {parts}; ratio " + ", ".join(
            f"{n} {r:.3f} (CPU {res['cpu']['ratio'][n]:.3f})" for n, r in res["wall"]["ratio"].items()
            if n != "hand-written"), flush=True)
    print()
    print(step_table(results))
    write_json(args.json, summary_rows(name, results, target))
    return results
