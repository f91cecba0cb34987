"""Run every benchmark script with short settings and print one summary table.

Each script runs in its own process (``sys.executable``, so ``/tmp/plvenv/bin/python benchmarks/run_all.py`` adds
the PyTorch Lightning columns wherever a script has one); its own output streams through, indented, and the summary
at the end has one line per figure: ember's ratio to the hand-written baseline (or the import time), the target,
and Lightning's ratio where it ran. The settings here are shorter than each script's defaults: for the figures
in README.md run the scripts themselves. Exits 1 if a script failed (a ratio above its target is not a failure).

    python benchmarks/run_all.py                      # short settings: a few minutes on 2 cores
    python benchmarks/run_all.py --quick              # smoke run: every script's --quick, no faults.py, loggers.py or
                                                      # fabric.py (the test's run;
                                                      # gpu.py runs on the CPU there: --device cpu --quick); the
                                                      # one-process scripts share this interpreter (one torch import)
    python benchmarks/run_all.py --quick --jobs 2     # the same, two scripts at a time (they share the CPUs)
    python benchmarks/run_all.py --only lstm,memory   # some of them; --skip ddp leaves one out
    python benchmarks/run_all.py --repeats 9          # more repeats for every script that takes --repeats
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import subprocess
import sys
import tempfile
import time
import traceback
from importlib.metadata import version

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (script, the runs of the short settings, the runs of --quick); each run is a list of arguments
SHORT_OVERHEAD = ["--samples", "16000", "--epochs", "2", "--repeats", "5"]
SCRIPTS = {
    "overhead": ("overhead.py", [SHORT_OVERHEAD + ["--bare"], SHORT_OVERHEAD],
                 [["--samples", "1600", "--epochs", "1", "--repeats", "1", "--bare"]]),
    "lstm": ("lstm.py", [["--steps", "200", "--repeats", "5"]], [["--quick"]]),
    "cnn_digits": ("cnn_digits.py", [["--steps", "290", "--repeats", "5"]], [["--quick"]]),
    "import_time": ("import_time.py", [["--repeats", "5"]], [["--quick"]]),
    "checkpoint_io": ("checkpoint_io.py", [["--repeats", "3"]], [["--quick"]]),
    "memory": ("memory.py", [["--repeats", "1", "--steps", "50", "--allocators", "fixed"]], [["--quick"]]),
    "ddp": ("ddp.py", [["--rows", "small,small-defaults", "--repeats", "3", "--steps", "500"],
                       ["--rows", "large", "--repeats", "3", "--steps", "100"]],
            [["--quick"]]),
    # --quick: tests/test_benchmarks_smoke.py runs its own smoke run (it checks the weights-equal lines too)
    "fabric": ("fabric.py", [["--repeats", "5"]], []),
    "faults": ("faults.py", [["--sigterm", "1", "--sigkill", "2"]], []),
    # --quick: tests/test_logger_costs.py runs its own smoke run (MLflow's store takes ~10 s to make)
    "loggers": ("loggers.py", [["--repeats", "3"]], []),
    # without CUDA the short run measures nothing (one line, exit 0; the summary says so); --quick runs on the CPU
    "gpu": ("gpu.py", [["--steps", "50", "--repeats", "3"]], [["--device", "cpu", "--quick"]]),
}
# these write --json rows
OWN_JSON = {"lstm", "cnn_digits", "import_time", "checkpoint_io", "memory", "gpu", "loggers", "fabric"}
TAKES_NO_LIGHTNING = {"lstm", "cnn_digits", "import_time", "memory", "ddp", "gpu"}
TARGET = {"overhead": "≤ 1.05", "ddp": "≤ 1.05"}
# a smoke run (--quick, one script at a time) runs these in this interpreter: each would otherwise spend a second or
# two of CPU importing torch and ember, most of a smoke run's time on a busy 2-core machine. The others start processes
# of their own by design (fresh interpreters to measure, DDP ranks).
IN_PROCESS = {"overhead", "lstm", "cnn_digits", "checkpoint_io", "gpu"}


def parse_overhead(out: str, bare: bool) -> list:
    ratio = re.search(r"median ratio ember / hand-written \(([^)]*)\): ([0-9.]+)", out)
    steps = re.search(r"steps per run: (\d+); hand-written: ([0-9.]+) us/step", out)
    if not ratio:
        return []
    return [{"benchmark": "overhead", "row": ratio.group(1), "ratio": float(ratio.group(2)),
             "figure": ratio.group(2), "lightning": "", "target": TARGET["overhead"] if bare else "",
             "detail": (f"hand-written {float(steps.group(2)):.0f} µs/step, {steps.group(1)} steps/run"
                        if steps else "")}]


def parse_markdown_ratios(benchmark: str, out: str) -> list:
    """Rows of a markdown table whose header has an ``ember / hand-written`` column (ddp.py prints one)."""
    rows, header = [], None
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and any(c.startswith("ember / hand-written") for c in cells):
            header = cells
            continue
        if header is None or not line.startswith("|") or set(line) <= set("|-: "):
            continue
        if len(cells) != len(header):
            header = None
            continue
        row = dict(zip(header, cells))
        ours = next(v for k, v in row.items() if k.startswith("ember / hand-written"))
        theirs = next((v for k, v in row.items() if k.startswith("lightning / hand-written")), "")
        number = re.search(r"[0-9]+\.[0-9]+", ours)
        rows.append({"benchmark": benchmark, "row": cells[0], "ratio": float(number.group()) if number else None,
                     "figure": ours.replace("*", ""), "lightning": theirs.replace("*", ""),
                     "target": "" if "defaults" in cells[0] else TARGET.get(benchmark, ""), "detail": ""})
    return rows


def parse_faults(out: str, code: int) -> list:
    scenarios = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| scenario")]
    injected = sum(int(line.split("|")[2]) for line in scenarios if line.split("|")[2].strip().isdigit())
    wrong = sum(line.startswith("WRONG:") for line in out.splitlines())
    return [{"benchmark": "faults", "row": f"{len(scenarios)} scenarios", "ratio": None,
             "figure": f"{injected} faults, " + ("all outcomes bit-identical" if code == 0 and not wrong
                                                 else f"{wrong} wrong (exit {code})"),
             "lightning": "", "target": "all bit-identical", "detail": ""}]


def execute(command: list, stream: bool) -> tuple:
    """(exit code, output) of one script; its output goes through indented, as it comes or all at the end."""
    shown = " ".join(os.path.relpath(c) if c.startswith(HERE) else c for c in command[1:])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(HERE))
    if stream:
        print(f"\n$ {shown}", flush=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if stream:
            print("    " + line, end="", flush=True)
    code = proc.wait()
    if not stream:
        print(f"\n$ {shown}\n" + "".join("    " + line for line in lines), end="", flush=True)
    return code, "".join(lines)


def execute_here(command: list) -> tuple:
    """(exit code, output) of one script run in this interpreter as ``python script args`` would run it."""
    shown = " ".join(os.path.relpath(c) if c.startswith(HERE) else c for c in command[1:])
    out = io.StringIO()
    argv, path, cwd, code = sys.argv, list(sys.path), os.getcwd(), 0
    sys.argv = command[1:]
    sys.path.insert(0, HERE)
    os.chdir(os.path.dirname(HERE))  # where execute() runs a script
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                runpy.run_path(command[1], run_name="__main__")
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
                if not isinstance(done.code, int) and done.code is not None:
                    print(done.code)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv, sys.path[:] = argv, path
        os.chdir(cwd)
    text = out.getvalue()
    print(f"\n$ {shown}\n" + "".join("    " + line for line in text.splitlines(keepends=True)), end="", flush=True)
    return code, text


def run(name: str, quick: bool, no_lightning: bool, stream: bool = True, repeats: int = 0,
        here: bool = False) -> tuple:
    """(summary rows, whether it succeeded, seconds) of one benchmark script; ``repeats`` replaces its repeat count;
    ``here``: run it in this interpreter (see ``IN_PROCESS``)."""
    script, short, quick_runs = SCRIPTS[name]
    rows, ok, started = [], True, time.monotonic()
    for args in quick_runs if quick else short:
        if repeats and "--repeats" in args:
            args = [str(repeats) if i and args[i - 1] == "--repeats" else a for i, a in enumerate(args)]
        command = [sys.executable, os.path.join(HERE, script), *args]
        if no_lightning and name in TAKES_NO_LIGHTNING:
            command.append("--no-lightning")
        with tempfile.TemporaryDirectory() as tmp:
            json_path = os.path.join(tmp, "rows.json")
            if name in OWN_JSON:
                command += ["--json", json_path]
            code, out = execute_here(command) if here else execute(command, stream)
            if name in OWN_JSON:
                if code == 0 and os.path.exists(json_path):
                    with open(json_path) as f:
                        rows += json.load(f)
            elif name == "overhead":
                rows += parse_overhead(out, bare="--bare" in args)
            elif name == "faults":
                rows += parse_faults(out, code)
            else:
                rows += parse_markdown_ratios(name, out)
        if name == "gpu" and code == 0 and not rows:  # no CUDA here: gpu.py said so and measured nothing
            rows.append({"benchmark": name, "row": "skipped", "ratio": None, "figure": "no CUDA GPU: not run",
                         "lightning": "", "target": "", "detail": "python benchmarks/gpu.py on a GPU machine"})
        if code != 0:
            ok = False
            if name != "faults":
                last = out.strip().splitlines()[-1][:120] if out.strip() else ""
                rows.append({"benchmark": name, "row": "FAILED", "ratio": None, "figure": f"exit {code}",
                             "lightning": "", "target": "", "detail": last})
    return rows, ok, time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every script's smoke settings (no faults.py, loggers.py, fabric.py)")
    parser.add_argument("--only", default="", help=f"comma-separated, from {list(SCRIPTS)}")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--no-lightning", action="store_true", help="no PyTorch Lightning columns")
    parser.add_argument("--repeats", type=int, default=0, help="the repeat count of every script that has one "
                        "(default: the short settings' own, 1–5)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="scripts run side by side (default 1; more only for a smoke run: they share the CPUs)")
    args = parser.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n]
    for n in names + [n for n in args.skip.split(",") if n]:
        if n not in SCRIPTS:
            parser.error(f"unknown benchmark {n!r}; choose from {', '.join(SCRIPTS)}")
    names = [n for n in names if n not in args.skip.split(",")]
    names = [n for n in names if os.path.exists(os.path.join(HERE, SCRIPTS[n][0]))]  # ddp.py may not be there
    if "cnn_digits" in names and importlib.util.find_spec("sklearn") is None:
        print("skipping cnn_digits: it needs scikit-learn (pip install scikit-learn)")
        names.remove("cnn_digits")
    if args.quick:
        names = [n for n in names if SCRIPTS[n][2]]

    if args.jobs > 1:  # scripts side by side share the CPUs: only for smoke runs, never for figures
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda n: run(n, args.quick, args.no_lightning, False, args.repeats), names))
    else:
        results = [run(n, args.quick, args.no_lightning, True, args.repeats, here=args.quick and n in IN_PROCESS)
                   for n in names]
    summary, failed, seconds = [], [], {}
    for name, (rows, ok, seconds[name]) in zip(names, results):
        summary += rows
        if not ok:
            failed.append(name)

    mode = "quick smoke run: not a measurement" if args.quick else "short settings"
    if args.jobs > 1:
        mode += f", {args.jobs} scripts at a time"
    print(f"\n## Summary ({mode}; "
          f"torch {version('torch')}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')})\n")
    lightning = any(r["lightning"] for r in summary)
    print("| benchmark | row | ember (ratio to hand-written, or figure) | target |"
          + (" lightning |" if lightning else "") + " detail |")
    print("|---|---|---|---|" + ("---|" if lightning else "") + "---|")
    for r in summary:
        print(f"| {r['benchmark']} | {r['row']} | {r['figure']} | {r['target']} |"
              + (f" {r['lightning']} |" if lightning else "") + f" {r['detail']} |")
    print("\nseconds per script: " + ", ".join(f"{n} {s:.0f}" for n, s in seconds.items()))
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
