"""``lightning.pytorch.demos``: small models and data for trying ember (BoringModel, a Transformer and an LSTM
language model on WikiText-2). Imported only when asked for."""
from ember.demos.boring_classes import BoringDataModule, BoringModel, DemoModel
from ember.demos.lstm import LightningLSTM, SequenceSampler, SimpleLSTM
from ember.demos.transformer import LightningTransformer, Transformer, WikiText2

__all__ = [
    "LightningLSTM",
    "SequenceSampler",
    "SimpleLSTM",
    "LightningTransformer",
    "Transformer",
    "WikiText2",
    "BoringModel",
    "BoringDataModule",
    "DemoModel",
]
