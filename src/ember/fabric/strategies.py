"""``lightning.fabric.strategies``: the strategies the Trainer runs on (``ember.strategies``):
``Fabric(strategy=DDPStrategy(...))`` takes the same objects.

``from lightning.fabric.strategies import X`` ported to ``from ember.fabric.strategies import X`` gets ember's
``ember.strategies.X`` (the same object), and ``L.fabric.strategies.<submodule>`` gets
``ember.strategies.<submodule>``.
"""
from ember.fabric._shared import attributes_of
from ember.strategies import *  # noqa: F401,F403
from ember.strategies import __all__  # noqa: F401


__getattr__ = attributes_of(__name__, "ember.strategies")
