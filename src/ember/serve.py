"""Load an exported model and predict with it: the last step from experiment to product.

``load(path)`` picks the runtime from the file's extension and returns ``predict(x) -> Tensor``:

=================  ===========================================  ==========================================
extension          written by                                   loaded with
=================  ===========================================  ==========================================
``.onnx``          ``model.to_onnx(path)``                      ``onnxruntime.InferenceSession`` (no torch
                                                                needed to run it, only to build the tensor)
``.pt``, ``.ts``,  ``model.to_torchscript(path)``               ``torch.jit.load``
``.pth``, ``.jit``
``.pt2``           ``model.to_exported_program(file_path=...)``  ``torch.export.load``
=================  ===========================================  ==========================================

The model's ``forward`` takes one tensor and returns one tensor in this recipe; for several inputs call
``predict(x1, x2)``. No Trainer, no LightningModule class and no training code is needed to load the file.

>>> import torch, ember, tempfile, os
>>> class Net(ember.LightningModule):
...     def __init__(self):
...         super().__init__()
...         self.layer = torch.nn.Linear(4, 2)
...         self.example_input_array = torch.zeros(1, 4)
...     def forward(self, x):
...         return self.layer(x)
>>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
>>> _ = Net().to_torchscript(path)
>>> predict = load(path)
>>> predict(torch.ones(3, 4)).shape
torch.Size([3, 2])

Serving it, with only the standard library (one process, one request at a time; put a real server such as
gunicorn or a model server in front of it for production)::

    import json
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import torch
    from ember.serve import load

    predict = load("model.onnx")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            x = torch.tensor(json.loads(body)["inputs"], dtype=torch.float32)
            out = json.dumps({"outputs": predict(x).tolist()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out)

    HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()

    # curl -X POST 127.0.0.1:8000 -d '{"inputs": [[[[0.0, ...]]]]}'
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Union

import torch

__all__ = ["load"]

_TORCHSCRIPT = (".pt", ".ts", ".pth", ".jit")


def load(path: Union[str, "os.PathLike[str]"], map_location: Any = "cpu") -> Callable[..., torch.Tensor]:
    """Load ``path`` (``.onnx``, ``.pt2`` or a TorchScript file) and return ``predict(*inputs) -> Tensor``.

    ``predict`` runs without gradients, on the model in eval mode. Inputs are moved to ``map_location``
    for the torch formats (ONNX runs on onnxruntime's CPU provider).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ember.serve.load({str(path)!r}): no such file. Export one first with "
                                "`model.to_onnx`, `model.to_torchscript` or `model.to_exported_program`.")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(path)
    if suffix == ".pt2":
        module = torch.export.load(str(path)).module()
        return _torch_predict(module, map_location)
    if suffix in _TORCHSCRIPT:
        module = torch.jit.load(str(path), map_location=map_location)
        module.eval()
        return _torch_predict(module, map_location)
    raise ValueError(
        f"ember.serve.load cannot tell the format of {path.name!r} from its extension {suffix!r}: use '.onnx' "
        f"(ONNX), '.pt2' (torch.export) or one of {', '.join(repr(s) for s in _TORCHSCRIPT)} (TorchScript)."
    )


def _torch_predict(module: Callable[..., Any], device: Any) -> Callable[..., torch.Tensor]:
    def predict(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(*(torch.as_tensor(x).to(device) for x in inputs))

    return predict


def _load_onnx(path: Path) -> Callable[..., torch.Tensor]:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"Loading {path.name!r} needs onnxruntime: `pip install onnxruntime`.") from err

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def predict(*inputs: Any) -> torch.Tensor:
        if len(inputs) != len(names):
            raise ValueError(f"{path.name} takes {len(names)} input(s) ({', '.join(names)}); received {len(inputs)}.")
        feed = {name: torch.as_tensor(x).detach().cpu().numpy() for name, x in zip(names, inputs)}
        return torch.from_numpy(session.run(None, feed)[0])

    return predict
