"""``lightning.pytorch.demos.lstm``: a word-level LSTM language model on WikiText2, with truncated
backpropagation through time (the hidden state carries over between consecutive batches)."""
from __future__ import annotations

from typing import Iterator, Optional, Sized

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from ember.demos.transformer import WikiText2
from ember.module import LightningModule


class SimpleLSTM(nn.Module):
    """Embedding -> LSTM (batch first) -> linear decoder; returns log-probabilities and the new hidden state."""

    def __init__(self, vocab_size: int = 33278, ninp: int = 512, nhid: int = 512, nlayers: int = 4,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, vocab_size)
        self.nlayers = nlayers
        self.nhid = nhid
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input: Tensor, hidden: tuple) -> tuple:
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.vocab_size)
        return torch.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, batch_size: int) -> tuple:
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, batch_size, self.nhid),
                weight.new_zeros(self.nlayers, batch_size, self.nhid))


class SequenceSampler(Sampler):
    """Batches of ``batch_size`` indices spread evenly over the data set, advancing by one each batch, so that
    row j of consecutive batches reads consecutive blocks of text (what carrying the hidden state needs)."""

    def __init__(self, dataset: Sized, batch_size: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.chunk_size = len(dataset) // batch_size

    def __iter__(self) -> Iterator[list]:
        n = len(self.dataset)
        for i in range(self.chunk_size):
            yield list(range(i, n - n % self.batch_size, self.chunk_size))

    def __len__(self) -> int:
        return self.chunk_size


class LightningLSTM(LightningModule):
    """``SimpleLSTM`` with truncated BPTT on WikiText2 (``./data``), SGD(lr=20)."""

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = SimpleLSTM(vocab_size=vocab_size)
        self.hidden: Optional[tuple] = None

    def on_train_epoch_end(self) -> None:
        self.hidden = None

    def training_step(self, batch: tuple, batch_idx: int) -> Tensor:
        input, target = batch
        if self.hidden is None:
            self.hidden = self.model.init_hidden(input.size(0))
        self.hidden = (self.hidden[0].detach(), self.hidden[1].detach())
        output, self.hidden = self.model(input, self.hidden)
        loss = nn.functional.nll_loss(output, target.view(-1))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader:
        dataset = WikiText2()
        return DataLoader(dataset, batch_sampler=SequenceSampler(dataset, batch_size=20))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=20.0)


__all__ = ["LightningLSTM", "SequenceSampler", "SimpleLSTM"]
