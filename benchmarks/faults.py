"""Fault injection, many times over: real training processes preempted, killed and resumed.

    python benchmarks/faults.py --sigterm 10 --sigkill 20 [--seed 0] [--keep DIR]

Runs the scenarios of tests/test_faults.py with fresh random moments (drawn from ``--seed``) and prints

    scenario | faults injected | resumes | bit-identical outcomes | corrupt checkpoints | seconds

A SIGTERM-type fault is one run signalled at a random moment and resumed from ``last.ckpt`` in a new
process; its outcome is bit-identical when the final weights equal (``torch.equal``, every tensor) those of
a run nobody interrupted. SIGKILL faults come in series of up to 5 kills of one run that checkpoints every
step, each kill followed by a resume from ``last.ckpt``; a series' outcome is its final weights. A corrupt
checkpoint is a ``*.ckpt`` that does not load with ``torch.load(weights_only=True)`` (or a stray file that
looks like one). Exits 1 if any outcome is wrong.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fault_train as ft  # noqa: E402  (the training script and its launcher)

MAX_EPOCHS = 3
TOTAL = MAX_EPOCHS * ft.BATCHES_PER_EPOCH
SERIES = 5  # SIGKILLs per run before its final resume


def _resumed_ok(root: Path, from_step: int, expected: dict, **options) -> tuple[bool, bool]:
    """(resumed: the new process started at ``from_step`` and finished, bit-identical: same final weights)."""
    run = ft.resume(root, max_epochs=MAX_EPOCHS, **options)
    resumed = run.proc.returncode == 0 and run.steps[:1] == [from_step] and f"DONE {TOTAL}" in run.lines
    return resumed, resumed and not ft.differing(ft.load_weights(root / "final.pt"), expected)


def sigterm_fault(root: Path, rng: random.Random, expected: dict, group: bool = False, **options) -> dict:
    """One signalled run and its resume: {"injected", "resumed", "identical", "corrupt", "note"}."""
    if group:  # SIGTERM to the process group, DataLoader workers included (SLURM's scancel)
        run = ft.start(root, max_epochs=MAX_EPOCHS, slow_ms=20, **options)
        target = rng.randrange(MAX_EPOCHS) * ft.BATCHES_PER_EPOCH + rng.randrange(1, ft.BATCHES_PER_EPOCH - 1)
        line = run.wait_for(lambda ln: ln.startswith("STEP ") and int(ln.split()[1]) >= target)
        if line is not None:
            os.killpg(run.proc.pid, signal.SIGTERM)
        run.finish()
    else:
        run, _ = ft.interrupt(root, rng, signal.SIGTERM, max_epochs=MAX_EPOCHS, **options)
    folder = root / "ckpts"
    corrupt = len(ft.checkpoint_problems(folder)) if folder.exists() else 0
    last = folder / "last.ckpt"
    if run.proc.returncode != 143 or not last.exists() or corrupt:
        tail = run.stderr().strip().splitlines()[-1:] or [""]
        return {"injected": 1, "resumed": False, "identical": False, "corrupt": corrupt,
                "note": f"exit {run.proc.returncode}, last.ckpt {'present' if last.exists() else 'missing'}: {tail[0]}"}
    step = ft.load_weights(last)["global_step"]
    resume_options = {k: v for k, v in options.items() if k not in ("slow_ms", "slow_val_ms", "during")}
    resumed, identical = _resumed_ok(root, step, expected, **resume_options)
    return {"injected": 1, "resumed": resumed, "identical": identical, "corrupt": corrupt,
            "note": "" if identical else f"resume from step {step}: resumed={resumed}, identical={identical}"}


def sigkill_series(root: Path, rng: random.Random, kills: int, expected: dict) -> dict:
    options = dict(every_n_train_steps=1, slow_ms=5)
    records = ft.kill_at_random_moments(root, rng, kills, max_epochs=MAX_EPOCHS, **options)
    killed = sum(r["killed"] for r in records)
    corrupt = sum(len(r["problems"]) for r in records)
    notes = [p for r in records for p in r["problems"]]
    # a restart after a kill is a good resume when it trained first the step last.ckpt held (0: none yet)
    resumes = sum(r["first_step"] == (r["started_from"] or 0) for r in records[1:])
    last_step = records[-1]["last_step"] if records else None
    resumed, identical = _resumed_ok(root, last_step or 0, expected, every_n_train_steps=1)
    if not identical:
        notes.append(f"final resume from step {last_step}: resumed={resumed}, identical={identical}")
    return {"injected": killed, "resumes": resumes + resumed, "identical": identical, "corrupt": corrupt,
            "note": "; ".join(notes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigterm", type=int, default=10, help="SIGTERM faults per SIGTERM scenario")
    parser.add_argument("--sigkill", type=int, default=20, help="SIGKILLs in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="ember-faults-"))
    rng = random.Random(args.seed)

    configs = {"plain": {}, "workers": {"num_workers": 2}, "val": {"val_check_interval": 0.5}}
    refs = {name: ft.reference(work / f"reference-{name}", max_epochs=MAX_EPOCHS, **opts)
            for name, opts in configs.items()}  # run side by side with the first faults
    weights: dict = {}

    def expected(name: str) -> dict:
        if name not in weights:
            code = refs[name].finish()
            if code != 0:
                sys.exit(f"the uninterrupted {name} run failed (exit {code})\n{refs[name].stderr()}")
            weights[name] = ft.load_weights(work / f"reference-{name}" / "final.pt")
        return weights[name]

    scenarios = [
        ("SIGTERM mid-epoch, num_workers=0", "plain", {}),
        ("SIGTERM mid-epoch, num_workers=2", "workers", {"num_workers": 2}),
        ("SIGTERM during validation", "val", {"during": "validation", "val_check_interval": 0.5}),
        ("SIGTERM to process group, num_workers=2", "workers", {"group": True, "num_workers": 2}),
    ]
    rows, wrong = [], []
    for title, ref, options in scenarios if args.sigterm > 0 else []:
        started, outcomes = time.monotonic(), []
        for i in range(args.sigterm):
            root = work / f"{title.split(',')[0].replace(' ', '-')}-{ref}-{i}"
            outcome = sigterm_fault(root, random.Random(rng.random()), expected(ref), **options)
            outcomes.append(outcome)
            if not outcome["identical"] or outcome["corrupt"]:
                wrong.append(f"{title} #{i}: {outcome['note']}")
        rows.append((title, sum(o["injected"] for o in outcomes),
                     f"{sum(o['resumed'] for o in outcomes)}/{len(outcomes)}",
                     f"{sum(o['identical'] for o in outcomes)}/{len(outcomes)}",
                     sum(o["corrupt"] for o in outcomes), time.monotonic() - started))

    started, outcomes, left, i = time.monotonic(), [], args.sigkill, 0
    while left > 0:
        kills = min(SERIES, left)
        outcome = sigkill_series(work / f"sigkill-{i}", random.Random(rng.random()), kills, expected("plain"))
        outcomes.append(outcome)
        if not outcome["identical"] or outcome["corrupt"] or outcome["injected"] < kills:
            wrong.append(f"SIGKILL series #{i}: {outcome['injected']}/{kills} kills landed; {outcome['note']}")
        left -= kills
        i += 1
    if outcomes:
        rows.append(("SIGKILL at random moments, ckpt every step", sum(o["injected"] for o in outcomes),
                     f"{sum(o['resumes'] for o in outcomes)}/{sum(o['injected'] for o in outcomes)}",
                     f"{sum(o['identical'] for o in outcomes)}/{len(outcomes)} runs",
                     sum(o["corrupt"] for o in outcomes), time.monotonic() - started))

    header = ("scenario", "faults injected", "resumes", "bit-identical outcomes", "corrupt checkpoints", "seconds")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for title, injected, resumes, identical, corrupt, seconds in rows:
        print(f"| {title} | {injected} | {resumes} | {identical} | {corrupt} | {seconds:.0f} |")
    for problem in wrong:
        print("WRONG:", problem)
    for run in refs.values():
        run.kill()
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
