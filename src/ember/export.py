"""Export a LightningModule for inference: ONNX, TorchScript and ``torch.export``.

Each function is what the matching ``LightningModule`` method calls; they take the model as their
first argument so they also work on a plain ``nn.Module``:

==========================================  ===========================================================
``model.to_onnx(path, input_sample)``       ``torch.onnx.export``; run the file with onnxruntime
``model.to_torchscript(path, method=...)``  ``torch.jit.script`` or ``torch.jit.trace``; ``torch.jit.load``
``model.to_exported_program(input_sample)`` ``torch.export.export``, the modern path; ``torch.export.load``
==========================================  ===========================================================

All three:

* take the input from ``input_sample`` or else ``model.example_input_array`` (a tensor, a tuple of
  positional inputs, or a dict of keyword inputs), moved to the model's device;
* run the export with every submodule in eval mode (dropout off, batch norm on its running
  statistics) and give each submodule back the train/eval mode it had;
* let ``model.trainer`` answer ``None`` instead of raising while the exporter inspects the model.

``torch.jit.script(model)`` and ``torch.jit.trace(model, x)`` called directly on a module that is not
attached to a Trainer fail, because TorchScript reads every attribute of the module and
``model.trainer`` raises outside a Trainer. Call ``model.to_torchscript(...)`` instead, or wrap the
call in :func:`detached_for_jit`.

>>> import torch, ember
>>> class Net(ember.LightningModule):
...     def __init__(self):
...         super().__init__()
...         self.layer = torch.nn.Linear(4, 2)
...         self.example_input_array = torch.zeros(1, 4)
...     def forward(self, x):
...         return self.layer(x)
>>> scripted = Net().to_torchscript()
>>> scripted(torch.ones(3, 4)).shape
torch.Size([3, 2])
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple, Union

import torch
from torch import nn

from ember._utils import move_data_to_device

_PathLike = Union[str, "os.PathLike[str]"]


# --- the three helpers every export shares ---------------------------------------------------------------
def _input_sample(model: nn.Module, input_sample: Any, what: str) -> Any:
    """``input_sample``, else ``model.example_input_array``, moved to the model's device."""
    if input_sample is None:
        input_sample = getattr(model, "example_input_array", None)
    if input_sample is None:
        raise ValueError(
            f"{what} needs an example input to run the model on, and received none: pass `input_sample=` "
            f"(or `example_inputs=` for tracing), or set `self.example_input_array = torch.rand(...)` in "
            f"`{type(model).__name__}.__init__`."
        )
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        input_sample = move_data_to_device(input_sample, device)
    return input_sample


def _as_args(sample: Any) -> Tuple[tuple, dict]:
    """Split a sample into ``(args, kwargs)``: a tuple holds positional inputs, a dict keyword inputs."""
    if isinstance(sample, dict):
        return (), dict(sample)
    if isinstance(sample, tuple):
        return sample, {}
    return (sample,), {}


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then give each back the mode it had."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def detached_for_jit(model: nn.Module) -> Iterator[nn.Module]:
    """Let TorchScript inspect a module that is not attached to a Trainer.

    ``torch.jit.script`` and ``torch.jit.trace`` read every attribute of a module; ``model.trainer``
    raises outside a Trainer. Inside this block it answers ``None``.

    >>> import torch, ember
    >>> model = ember.LightningModule()
    >>> with detached_for_jit(model):
    ...     model.trainer is None
    True
    """
    lightning = [m for m in model.modules() if hasattr(m, "_jit_is_scripting")]
    previous = [m._jit_is_scripting for m in lightning]
    for m in lightning:
        m._jit_is_scripting = True
    try:
        yield model
    finally:
        for m, flag in zip(lightning, previous):
            m._jit_is_scripting = flag


# --- ONNX ---------------------------------------------------------------------------------------------
def to_onnx(model: nn.Module, file_path: _PathLike, input_sample: Any = None, **kwargs: Any) -> Any:
    """Write ``model`` to ``file_path`` as ONNX with ``torch.onnx.export``; returns what it returns.

    ``kwargs`` go to ``torch.onnx.export`` as they are (``input_names``, ``output_names``,
    ``dynamic_axes`` or ``dynamic_shapes``, ``opset_version``, ``dynamo``...). Since torch 2.9 the default
    exporter is the ``torch.export``-based one (``dynamo=True``), which needs the ``onnxscript`` package;
    ``dynamo=False`` picks the older TorchScript-based exporter, which does not.

    Check the file with onnxruntime::

        import onnxruntime
        session = onnxruntime.InferenceSession(str(file_path))
        name = session.get_inputs()[0].name
        (out,) = session.run(None, {name: x.numpy()})
    """
    sample = _input_sample(model, input_sample, "to_onnx")
    args, sample_kwargs = _as_args(sample)
    if sample_kwargs:
        kwargs.setdefault("kwargs", sample_kwargs)
    with _eval_mode(model), detached_for_jit(model):
        return torch.onnx.export(model, args, str(file_path), **kwargs)


# --- TorchScript ----------------------------------------------------------------------------------------
def to_torchscript(model: nn.Module, file_path: Optional[_PathLike] = None, method: str = "script",
                   example_inputs: Any = None, **kwargs: Any) -> torch.jit.ScriptModule:
    """Compile ``model`` with ``torch.jit.script`` (``method="script"``) or ``torch.jit.trace``
    (``method="trace"``, run on ``example_inputs`` or ``model.example_input_array``).

    Saves it with ``torch.jit.save`` when ``file_path`` is given, and returns the ``ScriptModule``
    (reload it with ``torch.jit.load``). ``kwargs`` go to ``torch.jit.script``/``torch.jit.trace``.
    Scripting compiles ``forward`` and the properties of your class: list those TorchScript cannot
    compile in ``__jit_unused_properties__ = LightningModule.__jit_unused_properties__ + ["name"]``.
    """
    if method not in ("script", "trace"):
        raise ValueError(
            f"to_torchscript(method={method!r}) is not a TorchScript method: use method='script' "
            "(torch.jit.script, keeps Python control flow) or method='trace' (torch.jit.trace, records one "
            "run on `example_inputs`). For torch.compile or torch.export use `to_exported_program()`."
        )
    with _eval_mode(model), detached_for_jit(model):
        if method == "script":
            scripted = torch.jit.script(model, **kwargs)
        else:
            sample = _input_sample(model, example_inputs, "to_torchscript(method='trace')")
            args, sample_kwargs = _as_args(sample)
            if sample_kwargs:
                scripted = torch.jit.trace(model, example_kwarg_inputs=sample_kwargs, **kwargs)
            else:
                scripted = torch.jit.trace(model, args, **kwargs)
    if file_path is not None:
        torch.jit.save(scripted, str(file_path))
    return scripted


# --- torch.export ---------------------------------------------------------------------------------------
def to_exported_program(model: nn.Module, input_sample: Any = None, file_path: Optional[_PathLike] = None,
                        **kwargs: Any) -> "torch.export.ExportedProgram":
    """Capture ``model`` as a ``torch.export.ExportedProgram`` (the graph ``torch.compile``, AOTInductor
    and the ONNX exporter start from); ``program.module()(x)`` runs it.

    Saves it with ``torch.export.save`` when ``file_path`` is given (a ``.pt2`` file; reload with
    ``torch.export.load``). ``kwargs`` go to ``torch.export.export`` (``dynamic_shapes``, ``strict``...).
    """
    sample = _input_sample(model, input_sample, "to_exported_program")
    args, sample_kwargs = _as_args(sample)
    with _eval_mode(model), detached_for_jit(model):
        program = torch.export.export(model, args, kwargs=sample_kwargs or None, **kwargs)
    if file_path is not None:
        torch.export.save(program, str(file_path))
    return program
