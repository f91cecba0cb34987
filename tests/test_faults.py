"""Faults as a user meets them, with real processes: preemption signals, SIGKILL, a full disk, a read-only folder.

Each test starts ``tests/fault_train.py`` as a subprocess, interrupts it, resumes it from ``last.ckpt`` in a
new process, and compares the final weights with those of a run nobody interrupted (``torch.equal`` on
every tensor). Moments are drawn from ``random.Random`` with fixed seeds, so a failure replays.
"""
from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import fault_train as ft
from fault_train import BATCHES_PER_EPOCH, checkpoint_problems, differing, interrupt, load_weights, resume

MAX_EPOCHS = 3
TOTAL_STEPS = MAX_EPOCHS * BATCHES_PER_EPOCH

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


# --- uninterrupted runs, one per training configuration, started early so they run beside the test -----
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(**options).weights()``: the final weights of an uninterrupted run with these options.

    Only options that change training belong here (``num_workers``, ``val_check_interval``, ...); how
    often checkpoints are written or logs kept must not change the weights."""
    runs: dict = {}

    class Handle:
        def __init__(self, options):
            self.root = tmp_path_factory.mktemp("reference")
            self.run = ft.reference(self.root, max_epochs=MAX_EPOCHS, **options)
            self._weights = None

        def weights(self) -> dict:
            if self._weights is None:
                code = self.run.finish()
                assert code == 0, f"the uninterrupted reference run failed (exit code {code})\n{self.run.stderr()}"
                self._weights = load_weights(self.root / "final.pt")
            return self._weights

    defaults = {"num_workers": 0, "val_check_interval": 1.0}

    def get(**options) -> Handle:
        options = {k: v for k, v in options.items() if defaults.get(k, object()) != v}
        key = tuple(sorted(options.items()))
        if key not in runs:
            runs[key] = Handle(options)
        return runs[key]

    yield get
    for handle in runs.values():
        handle.run.kill()


def _assert_loads(path: Path) -> dict:
    assert path.is_file(), f"no checkpoint at {path}; the folder holds {sorted(os.listdir(path.parent))}"
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{path} does not load with torch.load(weights_only=True): {e}") from e


def _assert_resumes_bit_identical(root: Path, expected: dict, from_step: int, **options) -> None:
    """A new process resumes from last.ckpt at ``from_step`` (not from scratch) and ends with ``expected``."""
    run = resume(root, max_epochs=MAX_EPOCHS, **options)
    assert run.proc.returncode == 0, f"resuming from last.ckpt failed (exit code {run.proc.returncode})\n{run.stderr()}"
    assert run.steps and run.steps[0] == from_step, (
        f"the resumed run should start at step {from_step}, where last.ckpt stopped; its first steps were "
        f"{run.steps[:3]}")
    assert f"DONE {TOTAL_STEPS}" in run.lines, f"the resumed run did not reach step {TOTAL_STEPS}: {run.lines[-3:]}"
    different = differing(load_weights(root / "final.pt"), expected)
    assert not different, (f"after resuming, these tensors differ from the uninterrupted run's: {different}. "
                           "The resumed run did not continue exactly where the interrupted one stopped.")


# --- preemption: SIGTERM / SIGUSR1 / SIGINT ------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_sigterm_mid_epoch_saves_last_and_resumes_bit_identical(tmp_path, reference, num_workers):
    expected = reference(num_workers=num_workers)
    run, step = interrupt(tmp_path, random.Random(10 + num_workers), signal.SIGTERM, num_workers=num_workers)

    assert run.proc.returncode == 128 + signal.SIGTERM, (
        f"after SIGTERM the process should exit with 143 (128 + SIGTERM), got {run.proc.returncode}\n{run.stderr()}")
    ckpt = _assert_loads(tmp_path / "ckpts" / "last.ckpt")
    progress = ckpt["loops"]["ember"]
    assert step < ckpt["global_step"] < TOTAL_STEPS, (
        f"SIGTERM arrived during training step {step}: last.ckpt should hold that step finished and the run "
        f"unfinished, but holds global_step={ckpt['global_step']}")
    assert 0 < progress["batch_idx"] < BATCHES_PER_EPOCH, f"the signal was meant to land mid-epoch: {progress}"
    assert progress["optimizer_steps"] == ckpt["global_step"]
    assert any(line.startswith("ember: received SIGTERM") for line in run.lines), \
        f"the process should say it was preempted and where it saved; stdout ended with {run.lines[-3:]}"

    _assert_resumes_bit_identical(tmp_path, expected.weights(), ckpt["global_step"], num_workers=num_workers)


def test_sigterm_to_the_whole_process_group_with_workers(tmp_path, reference):
    """SLURM's ``scancel`` and ``kill -TERM -<pgid>`` signal the DataLoader workers too: the main process must
    still finish its batch, save last.ckpt and exit 143, not die of a "DataLoader worker is killed" error."""
    expected = reference(num_workers=2)
    rng = random.Random(21)
    target = BATCHES_PER_EPOCH + rng.randrange(1, BATCHES_PER_EPOCH - 1)
    run = ft.start(tmp_path, max_epochs=MAX_EPOCHS, slow_ms=20, num_workers=2)
    line = run.wait_for(lambda ln: ln.startswith("STEP ") and int(ln.split()[1]) >= target)
    assert line is not None, run.stderr()
    os.killpg(run.proc.pid, signal.SIGTERM)  # the session start() made: the trainer and its workers
    run.finish()

    assert run.proc.returncode == 143, (
        f"SIGTERM to the process group (main process and DataLoader workers) should end with 143 after saving "
        f"last.ckpt, got exit code {run.proc.returncode}\n{run.stderr()}")
    ckpt = _assert_loads(tmp_path / "ckpts" / "last.ckpt")
    assert ckpt["global_step"] > int(line.split()[1])
    _assert_resumes_bit_identical(tmp_path, expected.weights(), ckpt["global_step"], num_workers=2)


def test_sigterm_during_validation_resumes_bit_identical(tmp_path, reference):
    options = dict(val_check_interval=0.5)  # validation mid-epoch and at the epoch's end: either may be hit
    expected = reference(**options)
    run, step = interrupt(tmp_path, random.Random(3), signal.SIGTERM, during="validation", **options)

    assert run.proc.returncode == 143, \
        f"expected exit code 143 after SIGTERM, got {run.proc.returncode}\n{run.stderr()}"
    ckpt = _assert_loads(tmp_path / "ckpts" / "last.ckpt")
    assert ckpt["global_step"] == step, (f"SIGTERM arrived while validating at global step {step}; no training "
                                         f"happens during validation, yet last.ckpt holds step {ckpt['global_step']}")
    _assert_resumes_bit_identical(tmp_path, expected.weights(), step, **options)


def test_sigusr1_saves_into_the_default_checkpoint_folder_and_flushes_the_csv_logger(tmp_path, reference):
    """No ModelCheckpoint of the user's: last.ckpt goes where the default one keeps checkpoints, the CSV rows
    of every finished step are on disk, and ``ckpt_path="last"`` in a new process (a new logger version)
    finds it."""
    expected = reference()
    run, step = interrupt(tmp_path, random.Random(5), signal.SIGUSR1, default_checkpoint=True, csv=True)

    assert run.proc.returncode == 128 + signal.SIGUSR1, (
        f"after SIGUSR1 the process should exit with {128 + signal.SIGUSR1}, got {run.proc.returncode}\n{run.stderr()}")
    version = tmp_path / "lightning_logs" / "version_0"
    ckpt = _assert_loads(version / "checkpoints" / "last.ckpt")
    with open(version / "metrics.csv", newline="") as f:
        logged_steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train_loss")]
    assert logged_steps and max(logged_steps) == ckpt["global_step"] - 1, (
        f"metrics.csv should hold train_loss for every step up to the checkpoint's (steps 0..{ckpt['global_step'] - 1})"
        f"; it holds steps up to {max(logged_steps, default=None)}: the logger was not flushed on preemption")

    _assert_resumes_bit_identical(tmp_path, expected.weights(), ckpt["global_step"], default_checkpoint=True, csv=True)
    assert (tmp_path / "lightning_logs" / "version_1").is_dir(), "the resumed run should log as a new version"


def test_sigint_saves_last_then_raises_keyboard_interrupt(tmp_path):
    run, step = interrupt(tmp_path, random.Random(7), signal.SIGINT)

    # an uncaught KeyboardInterrupt ends CPython by SIGINT (-2); some wrappers report it as 130
    assert run.proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), \
        f"Ctrl-C should end the process as KeyboardInterrupt does, got exit code {run.proc.returncode}"
    assert "KeyboardInterrupt" in run.stderr(), f"no KeyboardInterrupt traceback\n{run.stderr()}"
    ckpt = _assert_loads(tmp_path / "ckpts" / "last.ckpt")
    assert ckpt["global_step"] > step, f"last.ckpt should hold step {step} finished, holds {ckpt['global_step']}"


def _signal_storm(signum: int, root: Path, seed: int, gap_s: float = 0.002) -> tuple[ft.Run, int, int]:
    """Send ``signum`` mid-epoch, then again every ``gap_s`` until the process says it has saved (or exits):
    they land while the (deliberately slow, 64 MB) checkpoint is being written. Returns the run, the step
    it had reached, and the number of signals sent."""
    rng = random.Random(seed)
    run = ft.start(root, max_epochs=MAX_EPOCHS, slow_ms=20, ballast_mb=64)
    target = rng.randrange(2, BATCHES_PER_EPOCH - 2)
    line = run.wait_for(lambda ln: ln.startswith("STEP ") and int(ln.split()[1]) >= target)
    assert line is not None, f"the run ended before step {target}\n{run.stderr()}"
    sent = 0
    while run.proc.poll() is None and not any(ln.startswith("ember: received") for ln in run.read_available()):
        try:
            os.kill(run.proc.pid, signum)
            sent += 1
        except ProcessLookupError:
            break
        try:
            run.proc.wait(timeout=gap_s)
        except subprocess.TimeoutExpired:
            pass
    run.finish()
    return run, int(line.split()[1]), sent


def test_repeated_sigterm_while_saving_still_leaves_a_complete_last_ckpt(tmp_path, reference):
    expected = reference()
    run, step, sent = _signal_storm(signal.SIGTERM, tmp_path, seed=11)

    assert sent > 1, "the test needs more than one SIGTERM to reach the process"
    assert any(ln.startswith("ember: received SIGTERM; saved") for ln in run.lines), \
        f"{sent} SIGTERMs: the process never said it saved last.ckpt: {run.lines[-3:]}\n{run.stderr()}"
    # 143 from ember; -15 when one of our SIGTERMs lands after fit returned the default handler, as the
    # interpreter shuts down: the checkpoint is complete either way
    assert run.proc.returncode in (143, -signal.SIGTERM), \
        f"{sent} SIGTERMs: expected exit code 143, got {run.proc.returncode}\n{run.stderr()}"
    assert checkpoint_problems(tmp_path / "ckpts") == []
    ckpt = _assert_loads(tmp_path / "ckpts" / "last.ckpt")
    assert ckpt["global_step"] > step, f"last.ckpt is not the preemption checkpoint: step {ckpt['global_step']}"
    _assert_resumes_bit_identical(tmp_path, expected.weights(), ckpt["global_step"], ballast_mb=64)


def test_repeated_sigint_never_leaves_a_partial_checkpoint(tmp_path):
    """A second Ctrl-C may abort the save, but must not leave a half-written ``*.ckpt``."""
    run, _, sent = _signal_storm(signal.SIGINT, tmp_path, seed=12)
    assert sent > 1
    assert run.proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), run.stderr()
    folder = tmp_path / "ckpts"  # absent when the first save was interrupted: nothing written is fine too
    assert not folder.exists() or checkpoint_problems(folder) == []


# --- SIGKILL: no handler runs, only atomic writes protect the files --------------------------------
def test_sigkill_at_random_moments_leaves_every_checkpoint_loadable(tmp_path, reference):
    options = dict(every_n_train_steps=1, slow_ms=5)
    expected = reference()
    records = ft.kill_at_random_moments(tmp_path, random.Random(2024), kills=8, max_epochs=MAX_EPOCHS, **options)

    assert len(records) == 8 and all(r["killed"] for r in records), \
        f"each of 8 processes should have been killed while training: {records}"
    for i, record in enumerate(records):
        assert record["problems"] == [], f"after kill {i + 1}, the checkpoint folder has problems: {record['problems']}"
    for i, record in enumerate(records[1:], start=2):
        assert record["first_step"] == (record["started_from"] or 0), (
            f"process {i} should have started training at step {record['started_from'] or 0} (last.ckpt's), "
            f"but started at {record['first_step']}")
    # a kill before the first save leaves no last.ckpt; once there is one, it loads and never goes back
    last_steps = [r["last_step"] for r in records]
    written = last_steps[next((i for i, step in enumerate(last_steps) if step is not None), len(last_steps)):]
    assert written and None not in written, f"last.ckpt disappeared or stopped loading after a kill: {last_steps}"
    assert written == sorted(written), f"a kill moved last.ckpt back to an older step: {last_steps}"

    _assert_resumes_bit_identical(tmp_path, expected.weights(), written[-1], **options)


# --- a full disk and a read-only folder ---------------------------------------------------------------
def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"tmpfs{len(mounted)}"
        _mount_tmpfs(folder, size)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(".ckpt")}


def test_full_disk_raises_a_clear_error_and_keeps_earlier_checkpoints(tmpfs):
    disk = tmpfs("1m")
    # every step keeps a new ~200 kB checkpoint, so the 1 MB disk fills within a few steps
    args = ["--root", str(disk), "--max-epochs", "1", "--every-n-train-steps", "1", "--save-top-k", "-1",
            "--ballast-mb", "0.2"]
    with pytest.raises(OSError) as raised:
        ft.main(args)
    message = str(raised.value)
    assert re.search(re.escape(str(disk / "ckpts")) + r"/\S+\.ckpt", message), \
        f"the error should name the checkpoint file it could not write: {message}"
    assert "previous checkpoints are untouched" in message, message
    folder = disk / "ckpts"
    assert checkpoint_problems(folder) == [], "a checkpoint written before the disk filled no longer loads"
    assert len([p for p in folder.iterdir() if p.name.endswith(".ckpt")]) >= 2, sorted(os.listdir(folder))
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], \
        f"the failed write left its temporary file behind: {sorted(os.listdir(folder))}"


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_read_only_folder_raises_a_clear_error_and_keeps_earlier_checkpoints(tmp_path, tmpfs):
    """As root (who ignores permissions) the folder is a tmpfs remounted read-only; otherwise chmod 0o500."""
    if os.geteuid() == 0:
        root = tmpfs("8m")
    else:
        root = tmp_path / "run"
    ft.main(["--root", str(root), "--max-epochs", "1"])
    folder = root / "ckpts"
    before = _snapshot(folder)
    assert "last.ckpt" in before

    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    else:
        folder.chmod(0o500)
    try:
        with pytest.raises(OSError) as raised:
            ft.main(["--root", str(root), "--max-epochs", "2", "--ckpt", "last"])
    finally:
        if os.geteuid() != 0:
            folder.chmod(0o700)
    message = str(raised.value)
    assert str(folder) in message, f"the error should name the folder {folder}: {message}"
    assert "not writable" in message, message
    assert _snapshot(folder) == before, "the earlier checkpoints changed"
    assert checkpoint_problems(folder) == []
