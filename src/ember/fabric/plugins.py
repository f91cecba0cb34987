"""``lightning.fabric.plugins``: the plugins (``ember.plugins``), shared with the Trainer: cluster environments, and
Lightning's precision and checkpoint-I/O classes, which raise naming the argument to use.

``from lightning.fabric.plugins import X`` ported to ``from ember.fabric.plugins import X`` gets ember's
``ember.plugins.X`` (the same object), and ``L.fabric.plugins.<submodule>`` gets ``ember.plugins.<submodule>``.
"""
from ember.fabric._shared import attributes_of
from ember.plugins import *  # noqa: F401,F403
from ember.plugins import __all__  # noqa: F401


__getattr__ = attributes_of(__name__, "ember.plugins")
