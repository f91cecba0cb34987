"""Giving each rank its share of the data, keeping every other setting of the user's DataLoader.

Training: a ``DistributedSampler`` that shuffles only if the user's loader shuffles (Lightning shuffles
every training loader under DDP; ember does what the loader says). Shards are padded to equal length, as
``DistributedSampler`` does, so every rank runs the same number of steps and no collective waits forever.
A custom sampler is wrapped: its order is computed on every rank and split.

Evaluation and prediction: each rank takes every ``world_size``-th sample, without padding, so no sample
is counted twice in a metric; ``self.log(..., sync_dist=True)`` then gives the exact mean over the data set.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any, Iterator

from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler,
                              SequentialSampler)


class _ShardedSampler(Sampler):
    """Rank ``rank`` of ``num_replicas`` takes every num_replicas-th index of ``sampler``'s order; with
    ``pad``, shards are made equal by repeating indices from the start, as DistributedSampler does."""

    def __init__(self, sampler: Any, num_replicas: int, rank: int, pad: bool) -> None:
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank
        self.pad = pad

    def __len__(self) -> int:
        n = len(self.sampler)
        if self.pad:
            return math.ceil(n / self.num_replicas)
        return len(range(self.rank, n, self.num_replicas))

    def __iter__(self) -> Iterator:
        indices = list(self.sampler)
        if self.pad and len(indices) % self.num_replicas:
            total = math.ceil(len(indices) / self.num_replicas) * self.num_replicas
            indices += (indices * math.ceil(total / max(len(indices), 1)))[: total - len(indices)]
        return iter(indices[self.rank::self.num_replicas])

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def distribute_loader(loader: Any, num_replicas: int, rank: int, train: bool) -> Any:
    """A copy of ``loader`` whose sampler gives this rank its share (the loader itself when it needs none)."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        if isinstance(loader, DataLoader):
            warnings.warn(
                f"The DataLoader's dataset is an IterableDataset ({type(loader.dataset).__name__}); ember cannot split "
                "it between ranks, so every rank reads it whole. Shard it in the dataset's __iter__ using "
                "torch.distributed.get_rank() and get_world_size().", stacklevel=4)
        return loader
    sampler = loader.sampler
    batch_sampler = loader.batch_sampler
    if isinstance(sampler, (DistributedSampler, _ShardedSampler)):
        return loader  # already split by the user
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        warnings.warn(
            f"The DataLoader uses a custom batch_sampler ({type(batch_sampler).__name__}); ember leaves it as it is, "
            "so every rank reads the same batches. Split it between ranks yourself, or pass "
            "Trainer(use_distributed_sampler=False) to silence this.", stacklevel=4)
        return loader
    if train and type(sampler) in (RandomSampler, SequentialSampler):
        new_sampler: Sampler = DistributedSampler(
            loader.dataset, num_replicas=num_replicas, rank=rank, shuffle=isinstance(sampler, RandomSampler),
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
    else:
        new_sampler = _ShardedSampler(sampler, num_replicas, rank, pad=train)
    return _rebuild(loader, new_sampler)


def _rebuild(loader: DataLoader, sampler: Sampler) -> DataLoader:
    batch_size = loader.batch_size if loader.batch_sampler is not None else None
    drop_last = loader.drop_last if loader.batch_sampler is not None else False
    kwargs: dict = dict(batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=loader.num_workers,
                        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=drop_last,
                        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                        multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                        persistent_workers=loader.persistent_workers,
                        pin_memory_device=getattr(loader, "pin_memory_device", ""))
    if loader.num_workers:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    return DataLoader(loader.dataset, **kwargs)  # a DataLoader subclass's own arguments cannot be known: a plain one
