"""``lightning.pytorch.plugins.precision``: ember chooses precision from ``Trainer(precision=...)`` alone.

Each of Lightning's precision plugins is importable (so class definitions and ``isinstance`` checks in a ported
program load) and raises when constructed, naming the ``precision=`` value that does the same in ember.
"""
from ember._missing import missing_class

_WHY = "ember sets precision with Trainer(precision=...), not with plugin objects"
Precision = missing_class("plugins.precision.Precision", "ember has no custom precision plugins: " + _WHY,
                          "Trainer(precision='32-true' | '16-mixed' | 'bf16-mixed' | '16-true' | 'bf16-true' | "
                          "'64-true'), or torch.autocast inside your step")
MixedPrecision = missing_class("plugins.precision.MixedPrecision", _WHY,
                               "Trainer(precision='16-mixed') or Trainer(precision='bf16-mixed')")
HalfPrecision = missing_class("plugins.precision.HalfPrecision", _WHY,
                              "Trainer(precision='16-true') or Trainer(precision='bf16-true')")
DoublePrecision = missing_class("plugins.precision.DoublePrecision", _WHY, "Trainer(precision='64-true')")
FSDPPrecision = missing_class("plugins.precision.FSDPPrecision", _WHY,
                              "Trainer(strategy='fsdp', precision='bf16-mixed') (or another precision value)")
BitsandbytesPrecision = missing_class("plugins.precision.BitsandbytesPrecision",
                                      "ember does not quantize models with bitsandbytes",
                                      "bitsandbytes' layers in your model before fit, with Trainer(precision=...)")
TransformerEnginePrecision = missing_class("plugins.precision.TransformerEnginePrecision",
                                           "ember does not run NVIDIA Transformer Engine's FP8",
                                           "Trainer(precision='bf16-mixed'), or Transformer Engine's modules and "
                                           "fp8_autocast inside your step")
DeepSpeedPrecision = missing_class("plugins.precision.DeepSpeedPrecision", "ember has no DeepSpeed strategy",
                                   "Trainer(strategy='fsdp', precision=...)")
XLAPrecision = missing_class("plugins.precision.XLAPrecision", "ember does not run on TPUs (XLA)",
                             "a CUDA, MPS or CPU device with Trainer(precision=...)")

__all__ = ["BitsandbytesPrecision", "DeepSpeedPrecision", "DoublePrecision", "FSDPPrecision", "HalfPrecision",
           "MixedPrecision", "Precision", "TransformerEnginePrecision", "XLAPrecision"]
