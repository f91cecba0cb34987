"""The benchmark scripts run: ``benchmarks/run_all.py --quick`` exits 0 and its summary has a figure per script.

A smoke run only (a few steps, one repeat): no timing is asserted; the figures live in benchmarks/README.md.
``gpu.py`` runs there with ``--device cpu --quick`` (tiny networks, bf16-mixed on the CPU), so its code paths are
covered on machines without CUDA too.

The run must stay cheap, so that a busy CI machine does not hit the timeout: about 25 s of CPU in all (it was 50),
most of it interpreters importing torch. The one-process scripts share one interpreter, ``ddp.py --quick`` starts
its two ranks without a torchrun agent and imports Lightning only when asked, and every ``--quick`` takes its
smallest setting. Add a script's smoke settings with that in mind.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_run_all_quick_prints_a_figure_for_every_benchmark():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--no-lightning"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("## Summary", 1)[1]
    figures: dict = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 3 and cells[0] != "benchmark":
            figures.setdefault(cells[0], []).append(cells[2])
    expected = {"overhead", "lstm", "import_time", "checkpoint_io", "memory", "gpu"}  # gpu: on the CPU, tiny
    if importlib.util.find_spec("sklearn") is not None:
        expected.add("cnn_digits")
    if (BENCHMARKS / "ddp.py").exists():
        expected.add("ddp")
    assert expected <= set(figures), f"missing rows for {expected - set(figures)}:\n{summary}"
    for name in expected:
        for figure in figures[name]:
            assert re.match(r"^\d+\.\d+", figure), f"{name}: no number in {figure!r}\n{summary}"
    assert {"bare", "defaults"} <= {row.split("|")[2].strip() for row in summary.splitlines()
                                    if row.startswith("| lstm ")}
    gpu_rows = {row.split("|")[2].strip() for row in summary.splitlines() if row.startswith("| gpu ")}
    assert {"resnet bf16-mixed", "transformer bf16-mixed"} <= gpu_rows, summary


def test_fabric_benchmark_quick_prints_both_ratios_and_equal_weights():
    """``benchmarks/fabric.py --quick``: a Fabric loop against the same hand-written loop, in one process and in two
    (gloo; rank 1 started by ``Fabric.launch()``), gives the same final weights and prints a ratio for each."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "fabric.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for row, processes in (("mlp", "1 process"), ("mlp-ddp", "2 processes, gloo")):
        assert re.search(rf"^{row} \({processes}\): .*ratio fabric / hand-written \d+\.\d+", out, re.M), out
        assert re.search(rf"^{row}: final weights equal \(torch.equal\) in all \d+ runs$", out, re.M), out
        assert re.search(rf"^\| {row} \| {processes[0]} \| \d+ \| .* \| \d+/\d+ \|", out, re.M), out
    assert "WRONG" not in out
