"""Bytecodes ember itself runs per training step: a deterministic measure of the Trainer's per-step Python.

Timing a tiny step on a shared 2-core machine moves by ±2 µs between identical runs; counting the bytecodes
executed in ``src/ember`` frames does not move at all. Runs ``fit`` for 100 and for 600 steps under
``sys.settrace`` (with ``frame.f_trace_opcodes``) and prints the difference divided by 500.

    python benchmarks/opcodes.py              # bare Trainer, no-op module (one parameter)
    python benchmarks/opcodes.py --defaults   # progress bar, summary, logger, checkpoint
    python benchmarks/opcodes.py --model mlp  # the tiny MLP of overhead.py
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402

import ember  # noqa: E402

BARE = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False)


def ember_opcodes(steps: int, defaults: bool, model: str) -> int:
    loader = DataLoader(overhead.make_data(16 * steps), batch_size=16)
    trainer = ember.Trainer(max_epochs=1, accelerator="cpu", default_root_dir=tempfile.mkdtemp(),
                            **({} if defaults else BARE))
    module = overhead.MLP() if model == "mlp" else overhead.OneParameter()
    count = [0]

    def local(frame, event, arg):
        if event == "opcode" and "/ember/" in frame.f_code.co_filename:
            count[0] += 1
        return local

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        return local

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        sys.settrace(tracer)
        try:
            trainer.fit(module, loader)
        finally:
            sys.settrace(None)
    return count[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defaults", action="store_true", help="the default callbacks and logger")
    parser.add_argument("--model", choices=("noop", "mlp"), default="noop")
    args = parser.parse_args()
    torch.set_num_threads(1)
    short, long = (ember_opcodes(n, args.defaults, args.model) for n in (100, 600))
    print(f"ember bytecodes per step ({'defaults' if args.defaults else 'bare'}, {args.model}): "
          f"{(long - short) / 500:.1f}")


if __name__ == "__main__":
    main()
