"""Every counter of a run and the data position, in one object that saves and restores itself."""
from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any, Optional

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

    def restore_rng(self) -> None:
        if self.rng_to_restore:
            set_rng_state(self.rng_to_restore)
            self.rng_to_restore = None


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
