"""Record the corpus's final metrics from PyTorch Lightning, once, into lightning_figures.json.

Run from the repository root with Lightning installed beside ember (never in CI):

    pip install "pytorch-lightning==2.6.6" "lightning==2.6.6"
    python tests/programs/record_lightning_figures.py

Each program runs unmodified (its own Lightning imports) in a fresh temporary folder, with one CPU thread,
twice: the two runs must print the same FINAL_METRICS line, or the program is not deterministic enough to
compare against. `python tests/programs/record_lightning_figures.py NAME...` re-records only those programs.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The same numeric kernels on every x86-64 machine, here and in tests/test_real_programs.py: one intra-op thread
# (float sums in one order), ATen's scalar kernels instead of its AVX2/AVX-512 ones, MKL in its conditional
# numerical reproducibility mode, oneDNN (convolutions) capped at SSE4.1. Without them a program's figures moved
# by up to 4e-4 relative between CPUs (AVX-512 vs AVX2 kernels sum in other orders), under Lightning and ember alike.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
           "DNNL_MAX_CPU_ISA": "SSE41"}


def final_metrics(name: str, spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **spec.get("lightning_env", {}), **THREADS}
        proc = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), *spec["args"]],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=900,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FINAL_METRICS ")]
    if proc.returncode != 0 or len(lines) != 1:
        raise SystemExit(f"{name} failed under Lightning (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[0][len("FINAL_METRICS "):])


def main() -> None:
    import lightning
    import pytorch_lightning
    import torch

    programs = json.loads((HERE / "programs.json").read_text())
    only = sys.argv[1:]
    out_path = HERE / "lightning_figures.json"
    figures = json.loads(out_path.read_text())["programs"] if out_path.exists() else {}
    for name, spec in programs.items():
        if only and name not in only:
            continue
        first, second = final_metrics(name, spec), final_metrics(name, spec)
        if first != second:
            raise SystemExit(f"{name} is not deterministic under Lightning:\n{first}\n{second}")
        figures[name] = first
        print(name, json.dumps(first, sort_keys=True), flush=True)
        record = {
            "recorded_with": {
                "pytorch_lightning": pytorch_lightning.__version__,
                "lightning": lightning.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "command": "python tests/programs/record_lightning_figures.py",
            },
            "programs": {name: figures[name] for name in programs if name in figures},
        }
        out_path.write_text(json.dumps(record, indent=1) + "\n")  # after each program: a failure keeps the rest


if __name__ == "__main__":
    main()
