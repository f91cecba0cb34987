"""Time of ``import ember`` on top of ``import torch``, each in a fresh interpreter, against PyTorch Lightning's.

Every repeat starts new processes with this interpreter, in alternating order: one that imports only torch, one
that imports torch and then ember (and one that imports torch and then ``pytorch_lightning``, where this
interpreter has it). Inside a process, the time of the second import is measured with ``time.perf_counter``
after torch is in; the whole process's wall time is measured from outside. Figures are medians.
Target: ``import ember`` adds less than 0.25 s to ``import torch``.

    python benchmarks/import_time.py                  # 9 repeats
    python benchmarks/import_time.py --breakdown      # and the slowest modules ember's import pulls in (-X importtime)
    /tmp/plvenv/bin/python benchmarks/import_time.py  # adds PyTorch Lightning's figure
    python benchmarks/import_time.py --quick          # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

TARGET_S = 0.25
PROBE = ("import time, torch; t = time.perf_counter(); {stmt}; "
         "print('IMPORT_SECONDS', time.perf_counter() - t)")


def one(stmt: str) -> tuple:
    """(seconds of the import after torch, wall seconds of the whole process) in a fresh interpreter."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
    wall = time.perf_counter() - start
    seconds = float(next(line.split()[1] for line in out.splitlines() if line.startswith("IMPORT_SECONDS")))
    return seconds, wall


def breakdown(top: int) -> list:
    """The ``top`` modules with the largest own import time under ``import ember`` (torch already in):
    (self µs, cumulative µs, name indented by nesting depth) from ``python -X importtime``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch; import ember"],
                         capture_output=True, text=True, check=True).stderr
    rows, after_torch = [], False
    for line in err.splitlines():  # "import time: <self us> | <cumulative us> | <indented module name>"
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        if name.strip() == "torch":
            after_torch = True  # the lines after torch's own are ember's share
            continue
        if after_torch:
            rows.append((int(self_us), int(cum_us), name.rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=0, help="unused: every benchmark takes it")
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke run, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the result rows to PATH (run_all.py reads them)")
    parser.add_argument("--no-lightning", action="store_true", help="skip the PyTorch Lightning column")
    parser.add_argument("--breakdown", action="store_true", help="list the slowest modules under `import ember`")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    columns = {"torch": "pass", "ember": "import ember"}
    if not args.no_lightning and importlib.util.find_spec("pytorch_lightning") is not None:
        columns["lightning"] = "import pytorch_lightning"
    if not args.quick:  # warm the file cache: the first start after a while reads every .pyc from disk
        for stmt in columns.values():
            one(stmt)
    seconds: dict = {n: [] for n in columns}
    walls: dict = {n: [] for n in columns}
    names = list(columns)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            s, w = one(columns[name])
            seconds[name].append(s)
            walls[name].append(w)
    med = {n: statistics.median(v) for n, v in seconds.items()}
    wall = {n: statistics.median(v) for n, v in walls.items()}
    ratio = {n: statistics.median(a / b for a, b in zip(walls[n], walls["torch"])) for n in names}
    print(f"python {sys.version.split()[0]}, {args.repeats} interleaved repeats of fresh processes; medians")
    print("| import | seconds on top of `import torch` (min–max) | process wall time, s | process / torch-only |")
    print("|---|---|---|---|")
    for n in names:
        if n == "torch":
            print(f"| torch only | — | {wall[n]:.2f} | 1.000 |")
            continue
        print(f"| `{columns[n]}` | **{med[n]:.3f}** ({min(seconds[n]):.3f}–{max(seconds[n]):.3f}) | {wall[n]:.2f} | "
              f"{ratio[n]:.3f} |")
    verdict = "meets" if med["ember"] < TARGET_S else "MISSES"
    print(f"ember {verdict} the target: {med['ember']:.3f} s < {TARGET_S} s")
    if args.breakdown:
        print("\nmodules with the largest own import time under `import ember` (self ms, cumulative ms):")
        for own, cum, name in breakdown(15):
            print(f"  {own / 1000:6.1f} {cum / 1000:7.1f}  {name.strip()}")
    if args.json:
        row = {"benchmark": "import_time", "row": "import ember after torch", "ratio": ratio["ember"],
               "figure": f"{med['ember']:.3f} s; process {ratio['ember']:.3f}x torch-only",
               "lightning": (f"{med['lightning']:.3f} s; {ratio['lightning']:.3f}x" if "lightning" in med else ""),
               "target": f"< {TARGET_S} s", "detail": f"torch-only process {wall['torch']:.2f} s"}
        with open(args.json, "w") as f:
            json.dump([row], f, indent=1)


if __name__ == "__main__":
    main()
