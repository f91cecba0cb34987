"""``grad_norm``: the norm of each parameter's gradient and of all of them together, ready for ``self.log_dict``."""
from __future__ import annotations

from typing import Union

import torch
from torch.nn import Module


def grad_norm(module: Module, norm_type: Union[float, int, str], group_separator: str = "/") -> dict:
    """``{"grad_2.0_norm/layer.weight": tensor, ..., "grad_2.0_norm_total": tensor}`` for the parameters that
    have a gradient; the total is the norm of all gradients seen as one vector. ``norm_type`` may be ``"inf"``.

    Typical use, as in Lightning::

        def on_before_optimizer_step(self, optimizer):
            self.log_dict(grad_norm(self, norm_type=2))

    >>> layer = torch.nn.Linear(2, 1)
    >>> layer(torch.ones(1, 2)).sum().backward()
    >>> sorted(grad_norm(layer, 2))
    ['grad_2.0_norm/bias', 'grad_2.0_norm/weight', 'grad_2.0_norm_total']
    """
    p_norm = float(norm_type)
    if not p_norm > 0:
        raise ValueError(f"grad_norm(norm_type={norm_type!r}): the norm type must be a positive number or 'inf'.")
    norms = {f"grad_{p_norm}_norm{group_separator}{name}": p.grad.detach().norm(p_norm)
             for name, p in module.named_parameters() if p.grad is not None}
    if norms:
        norms[f"grad_{p_norm}_norm_total"] = torch.stack([n.float() for n in norms.values()]).norm(p_norm)
    return norms


__all__ = ["grad_norm"]
