"""``lightning.pytorch.demos.transformer``: a small word-level Transformer language model on WikiText-2.

``WikiText2(data_dir)`` reads ``data_dir/wikitext-2.txt``; with ``download=True`` (the default, as in Lightning)
a missing file is first fetched from the PyTorch examples repository. Without network access, put the file
there yourself (any plain text file works) and pass ``download=False``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ember.module import LightningModule

_WIKITEXT2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/train.txt"


class Transformer(nn.Module):
    """Embedding + positional encoding + ``nn.Transformer`` (encoder-decoder, batch first) + a linear decoder;
    ``forward(inputs, target)`` returns log-probabilities of shape ``(batch * length, vocab_size)``."""

    def __init__(self, vocab_size: int = 33278, ninp: int = 200, nhead: int = 2, nhid: int = 200, nlayers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.embedding = nn.Embedding(vocab_size, ninp)
        self.transformer = nn.Transformer(d_model=ninp, nhead=nhead, num_encoder_layers=nlayers,
                                          num_decoder_layers=nlayers, dim_feedforward=nhid, dropout=dropout,
                                          batch_first=True)
        self.decoder = nn.Linear(ninp, vocab_size)
        self.ninp = ninp
        self.vocab_size = vocab_size

    @staticmethod
    def generate_square_subsequent_mask(size: int) -> Tensor:
        """``-inf`` above the diagonal: position i attends to positions <= i only."""
        return torch.full((size, size), float("-inf")).triu(diagonal=1)

    def forward(self, inputs: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        length = target.size(1)
        if mask is None:
            mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        scale = math.sqrt(self.ninp)
        src = self.pos_encoder(self.embedding(inputs) * scale)
        tgt = self.pos_encoder(self.embedding(target) * scale)
        output = self.decoder(self.transformer(src, tgt, tgt_mask=mask))
        return torch.log_softmax(output, dim=-1).view(-1, self.vocab_size)


class PositionalEncoding(nn.Module):
    """Adds the sine/cosine position signal of "Attention is all you need", then dropout."""

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term[: dim // 2])
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)  # moves with the module; not in checkpoints

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.pe[:, : x.size(1)])


class Dictionary:
    """Word <-> index."""

    def __init__(self) -> None:
        self.word2idx: dict = {}
        self.idx2word: list = []

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def tokenize(path: Union[str, Path]) -> tuple:
    """The word indices of the text file at ``path`` (each line ends with ``<eos>``), and the Dictionary."""
    dictionary = Dictionary()
    ids = []
    with open(path, encoding="utf8") as f:
        for line in f:
            ids.extend(dictionary.add_word(word) for word in line.split() + ["<eos>"])
    return torch.tensor(ids, dtype=torch.int64), dictionary


class WikiText2(Dataset):
    """Blocks of ``block_size`` word indices and the same block shifted by one word (the targets)."""

    def __init__(self, data_dir: Union[str, Path] = Path("./data"), block_size: int = 35, download: bool = True) -> None:
        super().__init__()
        self.path = Path(data_dir) / "wikitext-2.txt"
        if download:
            self.download(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"WikiText2: {self.path} does not exist. Pass download=True to fetch it, or put "
                                    f"a text file there (the PyTorch examples' wikitext-2 train.txt: {_WIKITEXT2_URL}).")
        self.data, self.dictionary = tokenize(self.path)
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return len(self.dictionary)

    def __len__(self) -> int:
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index: int) -> tuple:
        start = index * self.block_size
        return self.data[start:start + self.block_size], self.data[start + 1:start + self.block_size + 1]

    @staticmethod
    def download(destination: Union[str, Path]) -> None:
        """Fetch the text to ``destination`` unless it exists (written to a temporary file, then renamed)."""
        destination = Path(destination)
        if destination.exists():
            return
        import urllib.request

        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(f".{destination.name}.tmp{os.getpid()}")
        try:
            with urllib.request.urlopen(_WIKITEXT2_URL, timeout=60) as response:
                tmp.write_bytes(response.read())
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"WikiText2 could not download {_WIKITEXT2_URL} ({error}). Without network access, "
                               f"save that file as {destination} and pass download=False.") from error
        os.replace(tmp, destination)


class LightningTransformer(LightningModule):
    """``Transformer`` trained with NLL loss and SGD(lr=0.1) on WikiText2 (``./data``)."""

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=vocab_size)

    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.model(inputs, target)

    def training_step(self, batch: tuple, batch_idx: int) -> Tensor:
        inputs, target = batch
        return nn.functional.nll_loss(self(inputs, target), target.view(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1)

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(WikiText2())


__all__ = ["Dictionary", "LightningTransformer", "PositionalEncoding", "Transformer", "WikiText2", "tokenize"]
