"""Every counter of a run and the data position, in one object that saves and restores itself."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

import torch


@dataclass
class Progress:
    """Where training stands.

    ``optimizer_steps`` is ``trainer.global_step``; ``batches_seen`` counts training batches whatever
    the accumulation; ``batches_stepped`` counts batches that ended with an optimizer step (the step
    number loggers see); ``accumulated`` is the accumulation phase (batches waiting for a step).
    """

    epoch: int = 0
    batch_idx: int = 0  # batches of the current epoch already trained
    batches_seen: int = 0
    optimizer_steps: int = 0
    batches_stepped: int = 0
    accumulated: int = 0
    epoch_done: bool = False  # the current epoch's training batches have all run
    epoch_start_rng: Optional[dict] = field(default=None, repr=False)  # the generators when the epoch's data began
    rng_to_restore: Optional[dict] = field(default=None, repr=False)

    def state_dict(self) -> dict:
        # a shallow copy: dataclasses.asdict would deep-copy the generator-state tensors at every save
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rng_to_restore"}
        if not self.batch_idx or self.epoch_done:
            state.pop("epoch_start_rng")
        state["rng"] = rng_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        for key in ("epoch", "batch_idx", "batches_seen", "optimizer_steps", "batches_stepped", "accumulated",
                    "epoch_done"):
            if key in state:
                setattr(self, key, type(getattr(self, key))(state[key]))
        if self.epoch_done:  # saved after the epoch finished (its end-of-epoch work included): start the next one
            self.epoch += 1
            self.batch_idx = 0
            self.epoch_done = False
        # restored right before training resumes, so that set-up work in between draws nothing from them
        self.rng_to_restore = state.get("rng")
        self.epoch_start_rng = state.get("epoch_start_rng") if self.batch_idx else None

    @staticmethod
    def check_state(state: Any, batches_per_epoch: Union[int, float] = math.inf, max_epochs: int = -1,
                    max_steps: int = -1) -> None:
        """Refuse a saved progress that this run cannot continue, before anything is loaded: a missing counter,
        one that is not an int, negative, a batch index past the epoch's ``batches_per_epoch`` (a resume
        fast-forwards the loader that far: a huge value would hang), or steps/epochs past ``max_steps`` /
        ``max_epochs`` (-1: no limit). Raises ``ValueError`` (``TypeError`` for a wrong type) saying the field,
        the value found and the allowed range."""
        if not isinstance(state, dict):
            raise TypeError(f"the saved progress is a {type(state).__name__}, not a dict")
        missing = [k for k in _COUNTERS + ("epoch_done",) if k not in state]
        if missing:
            raise ValueError(f"the saved progress has no {', '.join(missing)} (found: {', '.join(map(str, state))})")
        for key in _COUNTERS:
            value = state[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"the saved progress has {key}={value!r} (a {type(value).__name__}); it must be an "
                                "int >= 0")
            if value < 0:
                raise ValueError(f"the saved progress has {key}={value}; it must be >= 0")
        if not isinstance(state["epoch_done"], bool):
            raise TypeError(f"the saved progress has epoch_done={state['epoch_done']!r} (a "
                            f"{type(state['epoch_done']).__name__}); it must be True or False")
        batch_idx, seen = state["batch_idx"], state["batches_seen"]
        if not state["epoch_done"] and batches_per_epoch and batch_idx > batches_per_epoch:
            raise ValueError(f"the saved progress has batch_idx={batch_idx}, but an epoch of this run's training "
                             f"data has {batches_per_epoch} batches: batch_idx must be between 0 and "
                             f"{batches_per_epoch} (resuming fast-forwards the data that far)")
        if batch_idx > seen:
            raise ValueError(f"the saved progress has batch_idx={batch_idx} (batches trained in its epoch) but "
                             f"batches_seen={seen} (in the whole run); batch_idx must be between 0 and {seen}")
        if state["batches_stepped"] > seen:
            raise ValueError(f"the saved progress has batches_stepped={state['batches_stepped']} but "
                             f"batches_seen={seen}; batches_stepped must be between 0 and {seen}")
        if state["accumulated"] > batch_idx:
            raise ValueError(f"the saved progress has accumulated={state['accumulated']} (batches waiting for an "
                             f"optimizer step) but batch_idx={batch_idx}; accumulated must be between 0 and "
                             f"{batch_idx}")
        if max_steps != -1 and state["optimizer_steps"] > max_steps:
            raise ValueError(f"the saved progress has optimizer_steps={state['optimizer_steps']} (global_step), "
                             f"past Trainer(max_steps={max_steps}): it must be between 0 and {max_steps}; raise "
                             "max_steps to train further")
        done = state["epoch"] + bool(state["epoch_done"])  # epochs finished: the resumed run starts in this one
        if max_epochs != -1 and done > max_epochs:
            raise ValueError(f"the saved progress has {done} finished epochs (epoch={state['epoch']}, epoch_done="
                             f"{state['epoch_done']}), past Trainer(max_epochs={max_epochs}): finished epochs must "
                             f"be between 0 and {max_epochs}; raise max_epochs to train further")
        for key in ("rng", "epoch_start_rng"):
            if state.get(key) is not None:
                _check_rng_state(key, state[key])

    def restore_rng(self) -> None:
        if self.rng_to_restore:
            set_rng_state(self.rng_to_restore)
            self.rng_to_restore = None


_COUNTERS = ("epoch", "batch_idx", "batches_seen", "optimizer_steps", "batches_stepped", "accumulated")


def _check_rng_state(key: str, state: Any) -> None:
    """What ``set_rng_state`` reads, checked before the run starts (it is applied after set-up work)."""
    torch_state = state.get("torch") if isinstance(state, dict) else None
    if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8):
        raise TypeError(f"the saved progress has a '{key}' entry that is not a generator state (a dict whose "
                        "'torch' entry is a uint8 tensor, as rng_state() writes)")
    python = state.get("python")
    if python is not None and not (isinstance(python, (tuple, list)) and len(python) == 3):
        raise TypeError(f"the saved progress has a '{key}' entry whose 'python' state is not (version, state, gauss)")


def rng_state() -> dict:
    """The state of every global generator, as data that ``torch.load(weights_only=True)`` accepts."""
    state: dict = {"torch": torch.get_rng_state(), "python": _python_state_to_plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        version, internal, gauss = state["python"]
        if isinstance(internal, torch.Tensor):
            internal = internal.tolist()
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "numpy" in state:
        import numpy as np

        s = state["numpy"]
        np.random.set_state((s["kind"], s["keys"].numpy().astype("uint32"), s["pos"], s["has_gauss"],
                             s["cached_gaussian"]))


def _python_state_to_plain(state: Any) -> Any:
    """``random.getstate()`` with its 625 numbers in one int64 tensor: as a list, pickling them one by one took
    more than half of ``torch.save``'s time for a small model's checkpoint (checkpoints from before hold a list)."""
    version, internal, gauss = state
    return (version, torch.tensor(internal, dtype=torch.int64), gauss)
