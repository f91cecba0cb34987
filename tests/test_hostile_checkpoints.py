"""Hostile and damaged checkpoints, faults while saving, and runs sharing a folder (issue 14, checkpoint side).

Each test feeds one bad input or fault and asserts what a user sees: the message (the field or file, the value
found, what to do) or the files left on disk.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

import ember
from ember.callbacks import Callback, ModelCheckpoint

from conftest import BoringModel, random_loader

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, accelerator="cpu")


def _fit(root: Path, max_epochs: int = 1, model=None, ckpt_path=None, callbacks=(), **trainer_kwargs):
    trainer = ember.Trainer(default_root_dir=root, max_epochs=max_epochs, callbacks=list(callbacks), **QUIET,
                            **trainer_kwargs)
    trainer.fit(model or BoringModel(), random_loader(), ckpt_path=ckpt_path)  # 8 batches per epoch
    return trainer


@pytest.fixture
def saved(tmp_path):
    """A folder with two checkpoints of a BoringModel run: end of epoch 0 and mid-epoch 1 (step 11)."""
    folder = tmp_path / "ckpts"
    _fit(tmp_path, max_epochs=2, max_steps=11,
         callbacks=[ModelCheckpoint(dirpath=folder, filename="{epoch}-{step}", every_n_train_steps=1,
                                    save_top_k=-1)])
    return folder


def _rewrite(source: Path, target: Path, change) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


# --- 1. loop counters out of range -------------------------------------------------------------------
def test_a_batch_index_past_the_epoch_is_refused_before_the_loader_is_fast_forwarded(saved):
    """Before: batch_idx=10**12 in a mid-epoch checkpoint made fit fetch and drop 10**12 batches (a hang)."""
    def huge(c):
        c["loops"]["ember"]["batch_idx"] = 10**12
        c["loops"]["ember"]["batches_seen"] = 10**12

    bad = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "hostile.ckpt", huge)
    assert "epoch_start_rng" in torch.load(bad, weights_only=True)["loops"]["ember"]  # a mid-epoch resume
    trainer = ember.Trainer(max_epochs=3, enable_checkpointing=False, **QUIET)
    with pytest.raises(ValueError) as raised:
        trainer.fit(BoringModel(), random_loader(), ckpt_path=str(bad))
    message = str(raised.value)
    assert "batch_idx=1000000000000" in message and "between 0 and 8" in message, message
    assert "earlier checkpoint" in message and "epoch=1-step=11.ckpt" in message, message
    assert trainer.global_step == 0


@pytest.mark.parametrize("field, value, expected", [
    ("epoch", -1, r"epoch=-1; it must be >= 0"),
    ("optimizer_steps", -5, r"optimizer_steps=-5; it must be >= 0"),
    ("batch_idx", 2.5, r"batch_idx=2\.5 \(a float\); it must be an int >= 0"),
    ("epoch", "3", r"epoch='3' \(a str\)"),
    ("epoch_done", 1, r"epoch_done=1 \(a int\); it must be True or False"),
    ("batches_stepped", None, r"batches_stepped=None \(a NoneType\)"),
    ("accumulated", 9, r"accumulated=9 .* must be between 0 and 3"),
    ("batches_stepped", 500, r"batches_stepped=500 but batches_seen=11"),
    ("rng", {"torch": [1, 2, 3]}, r"'rng' entry that is not a generator state"),
])
def test_a_counter_of_the_wrong_type_or_range_is_refused_naming_it(saved, field, value, expected):
    bad = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "hostile.ckpt",
                   lambda c: c["loops"]["ember"].__setitem__(field, value))
    with pytest.raises((ValueError, TypeError), match=expected) as raised:
        _fit(saved.parent, max_epochs=3, ckpt_path=str(bad), enable_checkpointing=False)
    assert f"Cannot resume training from {bad}" in str(raised.value)


def test_a_missing_counter_is_refused_naming_it(saved):
    bad = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "hostile.ckpt",
                   lambda c: c["loops"]["ember"].pop("batches_seen"))
    with pytest.raises(ValueError, match="the saved progress has no batches_seen"):
        _fit(saved.parent, max_epochs=3, ckpt_path=str(bad), enable_checkpointing=False)


def test_steps_past_max_steps_are_refused_with_the_limit(saved):
    with pytest.raises(ValueError, match=r"optimizer_steps=11 .*max_steps=5\): it must be between 0 and 5"):
        _fit(saved.parent, max_epochs=3, max_steps=5, ckpt_path=str(saved / "epoch=1-step=11.ckpt"),
             enable_checkpointing=False)


def test_epochs_past_max_epochs_are_refused_with_the_limit(saved):
    end_of_epoch = saved / "epoch=0-step=8.ckpt"  # epoch 0's batches all trained
    assert _fit(saved.parent, max_epochs=1, ckpt_path=str(end_of_epoch), enable_checkpointing=False).global_step == 8
    bad = _rewrite(end_of_epoch, saved / "hostile.ckpt", lambda c: c["loops"]["ember"].__setitem__("epoch", 7))
    expected = r"7 finished epochs \(epoch=7, epoch_done=False\), past Trainer\(max_epochs=3\)"
    with pytest.raises(ValueError, match=expected):
        _fit(saved.parent, max_epochs=3, ckpt_path=str(bad), enable_checkpointing=False)


def test_a_mid_epoch_checkpoint_resumed_on_shorter_data_is_refused(saved):
    trainer = ember.Trainer(max_epochs=3, enable_checkpointing=False, limit_train_batches=2, **QUIET)
    with pytest.raises(ValueError, match=r"batch_idx=3, but an epoch of this run's training data has 2 batches"):
        trainer.fit(BoringModel(), random_loader(), ckpt_path=str(saved / "epoch=1-step=11.ckpt"))


def test_a_mid_epoch_checkpoint_resumed_on_iterable_data_that_ends_sooner_is_refused(saved):
    """An iterable dataset has no length to check at restore: the fast-forward itself stops at its end."""
    class TwoBatches(torch.utils.data.IterableDataset):
        def __iter__(self):
            g = torch.Generator().manual_seed(0)
            return iter([(torch.randn(8, 32, generator=g), torch.randn(8, 2, generator=g)) for _ in range(2)])

    loader = torch.utils.data.DataLoader(TwoBatches(), batch_size=None)
    trainer = ember.Trainer(max_epochs=3, enable_checkpointing=False, **QUIET)
    with pytest.warns(UserWarning, match="Resuming mid-epoch on a loader without a sampler"), \
            pytest.raises(ValueError, match=r"resumes at batch_idx=3 of its epoch, but this training data ended "
                                            r"after 2 batches"):
        trainer.fit(BoringModel(), loader, ckpt_path=str(saved / "epoch=1-step=11.ckpt"))


# --- 2. another optimizer ----------------------------------------------------------------------------
class AdamModel(BoringModel):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_resuming_with_another_optimizer_class_names_both(saved):
    """Before: KeyError: 'betas'."""
    assert torch.load(saved / "epoch=1-step=11.ckpt", weights_only=True)["loops"]["ember_optimizer_classes"] == [
        "torch.optim.sgd.SGD"]
    with pytest.raises(ValueError, match=r"optimizer 0 is a torch\.optim\.sgd\.SGD, but configure_optimizers "
                                         r"returned a torch\.optim\.adam\.Adam"):
        _fit(saved.parent, max_epochs=3, model=AdamModel(), ckpt_path=str(saved / "epoch=1-step=11.ckpt"),
             enable_checkpointing=False)


def test_another_optimizer_is_recognised_in_a_checkpoint_without_class_names(saved):
    old = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "old.ckpt",
                   lambda c: c["loops"].pop("ember_optimizer_classes"))
    with pytest.raises(ValueError, match=r"hyperparameters .*'momentum'.* but Adam has .*'betas'"):
        _fit(saved.parent, max_epochs=3, model=AdamModel(), ckpt_path=str(old), enable_checkpointing=False)


class TwoGroups(BoringModel):
    def configure_optimizers(self):
        return torch.optim.SGD([{"params": [self.layer.weight]}, {"params": [self.layer.bias], "lr": 0.01}], lr=0.1)


def test_another_param_group_layout_is_refused_before_loading(saved):
    with pytest.raises(ValueError, match=r"param groups of \[2\] parameters, but the configured one has \[1, 1\]"):
        _fit(saved.parent, max_epochs=3, model=TwoGroups(), ckpt_path=str(saved / "epoch=1-step=11.ckpt"),
             enable_checkpointing=False)


# --- 3. full disk while saving -------------------------------------------------------------------------
class _FullDisk:
    """A file whose writes fail with ENOSPC once ``budget`` bytes are written (None: no limit)."""
    budget = None

    def __init__(self, f):
        self._f = f
        self.written = 0

    def write(self, data):
        if _FullDisk.budget is not None and self.written + len(data) > _FullDisk.budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


class _FillDiskAtEpoch1(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            _FullDisk.budget = 1000  # the next checkpoint fails part-way through


def test_a_full_disk_while_saving_raises_an_oserror_naming_the_file_and_keeps_earlier_ones(tmp_path, monkeypatch):
    """Before: torch's RuntimeError '[enforce fail at inline_container.cc] unexpected pos'."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))
    monkeypatch.setattr(_FullDisk, "budget", None)
    folder = tmp_path / "ckpts"
    with pytest.raises(OSError) as raised:
        _fit(tmp_path, max_epochs=2, callbacks=[_FillDiskAtEpoch1(),
                                                 ModelCheckpoint(dirpath=folder, save_top_k=-1, save_last=True)])
    error = raised.value
    assert error.errno == errno.ENOSPC, repr(error)
    assert re.search(re.escape(str(folder)) + r"/epoch=1-step=16\.ckpt failed", str(error)), str(error)
    assert "previous checkpoints are untouched" in str(error)
    assert isinstance(error.__cause__, RuntimeError)  # torch's own error, chained
    assert sorted(os.listdir(folder)) == ["epoch=0-step=8.ckpt", "last.ckpt"]  # no temporary, no half file
    for name in ("epoch=0-step=8.ckpt", "last.ckpt"):
        assert torch.load(folder / name, weights_only=True)["global_step"] == 8


# --- 4. damaged files ------------------------------------------------------------------------------
def _damaged_messages(saved: Path, name: str, content: bytes) -> list:
    bad = saved / name
    bad.write_bytes(content)
    messages = []
    with pytest.raises(RuntimeError) as raised:
        _fit(saved.parent, max_epochs=3, ckpt_path=str(bad), enable_checkpointing=False)
    messages.append(str(raised.value))
    with pytest.raises(RuntimeError) as raised:
        BoringModel.load_from_checkpoint(bad)
    messages.append(str(raised.value))
    return messages


def test_a_truncated_checkpoint_is_called_incomplete_and_the_others_are_listed(saved):
    """Before: OSError: [Errno 22] Invalid argument, without a path."""
    data = (saved / "epoch=1-step=11.ckpt").read_bytes()
    for message in _damaged_messages(saved, "cut.ckpt", data[: len(data) // 2]):
        assert f"Checkpoint {saved / 'cut.ckpt'} is incomplete or corrupt" in message, message
        assert re.search(r"newest first: epoch=1-step=11\.ckpt, epoch=1-step=10\.ckpt", message), message


def test_an_empty_checkpoint_says_so(saved):
    """Before: a bare EOFError."""
    for message in _damaged_messages(saved, "empty.ckpt", b""):
        assert f"Checkpoint {saved / 'empty.ckpt'} is empty (0 bytes)" in message, message
        assert "Resume from an earlier checkpoint" in message and "epoch=1-step=11.ckpt" in message, message


def test_random_bytes_are_called_corrupt_not_a_refused_object(saved):
    for message in _damaged_messages(saved, "noise.ckpt", os.urandom(4096)):
        assert "is incomplete or corrupt" in message and "noise.ckpt" in message, message
        assert "arbitrary code" not in message


def test_a_folder_or_a_missing_file_is_named(saved):
    with pytest.raises(IsADirectoryError, match=re.escape(f"{saved} is a folder, not a checkpoint file")):
        BoringModel.load_from_checkpoint(saved)
    with pytest.raises(FileNotFoundError, match=r"not found: .*nope\.ckpt; other checkpoints in .*epoch=1-step=11"):
        BoringModel.load_from_checkpoint(saved / "nope.ckpt")


class Wider(BoringModel):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)


def test_a_checkpoint_of_another_model_names_the_missing_and_unexpected_keys(saved):
    other = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "other.ckpt",
                     lambda c: c["state_dict"].__setitem__("ghost.weight", torch.zeros(1)))
    for run in (lambda: Wider.load_from_checkpoint(other),
                lambda: _fit(saved.parent, max_epochs=3, model=Wider(), ckpt_path=str(other),
                             enable_checkpointing=False)):
        with pytest.raises(RuntimeError) as raised:
            run()
        message = str(raised.value)
        assert f"The weights in {other} do not fit Wider" in message, message
        assert 'Missing key(s) in state_dict: "head.weight", "head.bias"' in message, message
        assert 'Unexpected key(s) in state_dict: "ghost.weight"' in message, message
        assert "self.strict_loading = False" in message


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_with_a_pickled_object_is_refused_and_runs_nothing(saved):
    marker = saved.parent / "pwned"
    crafted = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "crafted.ckpt",
                       lambda c: c.__setitem__("payload", _RunsCode(str(marker))))
    for run in (lambda: BoringModel.load_from_checkpoint(crafted),
                lambda: _fit(saved.parent, max_epochs=3, ckpt_path=str(crafted), enable_checkpointing=False)):
        with pytest.raises(pickle.UnpicklingError, match=r"Refused to load .*crafted\.ckpt.*weights_only=True"):
            run()
    assert not marker.exists()


# --- 5. two runs in one folder -----------------------------------------------------------------------
class _AnotherRun(Callback):
    """Writes into the checkpoint folder as another run would, just before this run's save at epoch ``epoch``."""

    def __init__(self, folder: Path, epoch: int, name: str):
        self.folder, self.epoch, self.name = folder, epoch, name

    def on_train_epoch_end(self, trainer, pl_module):  # other callbacks run before ModelCheckpoint saves
        if trainer.current_epoch == self.epoch:
            tmp = self.folder / ".other.tmp"
            torch.save({"written_by": "the other run"}, tmp)
            os.replace(tmp, self.folder / self.name)


def test_a_file_another_run_wrote_under_the_next_name_is_kept(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    with pytest.warns(UserWarning, match=r"epoch=0-step=8\.ckpt was written by another run .*never replaces it"):
        _fit(tmp_path, callbacks=[_AnotherRun(folder, 0, "epoch=0-step=8.ckpt"),
                                  ModelCheckpoint(dirpath=folder, save_top_k=-1)])
    assert torch.load(folder / "epoch=0-step=8.ckpt", weights_only=True) == {"written_by": "the other run"}
    assert torch.load(folder / "epoch=0-step=8-v1.ckpt", weights_only=True)["global_step"] == 8


def test_a_last_ckpt_another_run_replaced_is_not_overwritten(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    with pytest.warns(UserWarning, match=r"last\.ckpt was written by another run"):
        _fit(tmp_path, max_epochs=2, callbacks=[_AnotherRun(folder, 1, "last.ckpt"),
                                                ModelCheckpoint(dirpath=folder, save_last=True)])
    assert torch.load(folder / "last.ckpt", weights_only=True) == {"written_by": "the other run"}
    assert torch.load(folder / "last-v1.ckpt", weights_only=True)["global_step"] == 16


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_name_is_chosen_and_written_under_a_lock_other_runs_wait_for(tmp_path):
    import fcntl

    folder = tmp_path / "ckpts"
    seen = []

    class Probe(Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):  # while ModelCheckpoint is saving
            fd = os.open(folder, os.O_RDONLY)  # what another run's ModelCheckpoint does
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
            finally:
                os.close(fd)

    _fit(tmp_path, callbacks=[Probe(), ModelCheckpoint(dirpath=folder, save_last=True)])
    assert seen == ["held", "held"]  # epoch=0-step=8.ckpt and last.ckpt
    assert sorted(os.listdir(folder)) == ["epoch=0-step=8.ckpt", "last.ckpt"]  # the lock leaves no file


def test_this_runs_own_files_are_still_replaced_without_a_warning(tmp_path, recwarn):
    folder = tmp_path / "ckpts"
    _fit(tmp_path, max_epochs=3, callbacks=[ModelCheckpoint(dirpath=folder, save_last=True),
                                            ModelCheckpoint(dirpath=folder, save_top_k=-1)])
    # the second callback takes -v1 beside the first one's files; the first replaces its own as it goes
    assert sorted(os.listdir(folder)) == ["epoch=0-step=8-v1.ckpt", "epoch=1-step=16-v1.ckpt",
                                          "epoch=2-step=24-v1.ckpt", "epoch=2-step=24.ckpt", "last.ckpt"]
    assert not [w for w in recwarn if "another run" in str(w.message)]


# --- 6. strict_loading on resume ------------------------------------------------------------------------
class Loose(BoringModel):
    """A head the checkpoint lacks (left out of the optimizer, e.g. added for a new task), loaded leniently."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.strict_loading = False

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.1)


def test_fit_resume_honours_strict_loading(saved):
    assert BoringModel().strict_loading is True
    extra = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "extra.ckpt",
                     lambda c: c["state_dict"].__setitem__("ghost.weight", torch.zeros(1)))
    model = Loose()
    head = model.head.weight.detach().clone()
    trainer = _fit(saved.parent, max_epochs=2, model=model, ckpt_path=str(extra), enable_checkpointing=False)
    assert trainer.global_step == 16  # resumed at step 11, finished epoch 1
    assert torch.equal(model.head.weight, head)  # not in the checkpoint, not trained
    strict = Loose()
    strict.strict_loading = True
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "head.weight"'):
        _fit(saved.parent, max_epochs=2, model=strict, ckpt_path=str(extra), enable_checkpointing=False)


def test_validate_with_ckpt_path_honours_strict_loading(saved):
    extra = _rewrite(saved / "epoch=1-step=11.ckpt", saved / "extra.ckpt",
                     lambda c: c["state_dict"].__setitem__("ghost.weight", torch.zeros(1)))
    model = Loose()
    trainer = ember.Trainer(enable_checkpointing=False, **QUIET)
    trainer.validate(model, random_loader(), ckpt_path=str(extra), verbose=False)
    saved_weight = torch.load(extra, weights_only=True)["state_dict"]["layer.weight"]
    assert torch.equal(model.layer.weight, saved_weight)
