"""A small DDP training run on CPU (gloo) that tests start as real processes.

    python tests/ddp_train.py --out DIR [--devices 2] [--num-nodes 1] [--max-epochs 2] [--batch-size 4]
        [--shuffle] [--accumulate 1] [--dropout 0.0] [--ckpt last] [--sigterm-at STEP] [--die-at STEP]

Started with plain ``python``, ember starts the second process itself; under ``torchrun`` it joins
torchrun's group. Each rank writes ``DIR/rank<R>.pt`` (plain data, loads with ``weights_only=True``):
its weights, the sample indices it trained on per epoch, the callback metrics, collectives' results.
Checkpoints go to ``DIR/ckpts``. ``--sigterm-at K`` makes rank 1 send SIGTERM to itself when global step K
begins (only that rank is signalled); ``--die-at K`` makes rank 1 kill itself with SIGKILL there.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import torch
from torch.utils.data import DataLoader, Dataset

import ember
from ember.callbacks import ModelCheckpoint

N_TRAIN, N_VAL = 64, 37  # 37: the validation shards are uneven (19 and 18)


class Indexed(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return i, self.x[i], self.y[i]


class Net(ember.LightningModule):
    def __init__(self, dropout: float = 0.0, sigterm_at: int = -1, die_at: int = -1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(16, 1))
        self.sigterm_at, self.die_at = sigterm_at, die_at
        self.seen: dict = {}

    def training_step(self, batch, batch_idx):
        if self.global_rank == 1 and self.global_step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.global_rank == 1 and self.global_step == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        print(f"STEP {self.global_rank} {self.global_step}", flush=True)
        idx, x, y = batch
        self.seen.setdefault(self.current_epoch, []).extend(idx.tolist())
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, sync_dist=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        idx, x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y, reduction="sum") / len(x)
        self.log("val_loss", loss, sync_dist=True)
        self.log("val_loss_local", loss)
        self.log("val_samples", float(len(x)), reduce_fx="sum", sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--num-nodes", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--sigterm-at", type=int, default=-1)
    ap.add_argument("--die-at", type=int, default=-1)
    args = ap.parse_args()

    ember.seed_everything(7)
    model = Net(args.dropout, args.sigterm_at, args.die_at)
    train = DataLoader(Indexed(N_TRAIN, 0), batch_size=args.batch_size, shuffle=args.shuffle)
    val = DataLoader(Indexed(N_VAL, 1), batch_size=5)
    trainer = ember.Trainer(
        accelerator="cpu", devices=args.devices, num_nodes=args.num_nodes, max_epochs=args.max_epochs,
        accumulate_grad_batches=args.accumulate, enable_progress_bar=False, enable_model_summary=False,
        logger=False, num_sanity_val_steps=0, default_root_dir=args.out,
        callbacks=[ModelCheckpoint(dirpath=os.path.join(args.out, "ckpts"), save_last=True)])
    trainer.fit(model, train, val, ckpt_path=args.ckpt)

    rank = trainer.global_rank
    if rank == 0:  # one rank alone saving must not wait for the others
        trainer.save_checkpoint(os.path.join(args.out, "rank0_only.ckpt"))
    gathered = model.all_gather(torch.tensor([float(rank)]))
    result = {
        "rank": rank, "world_size": trainer.world_size, "local_rank": trainer.local_rank,
        "node_rank": trainer.node_rank, "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "seen": {int(k): v for k, v in model.seen.items()},
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "all_gather": gathered, "broadcast": trainer.strategy.broadcast(f"from rank {rank}"),
        "any": trainer.strategy.reduce_boolean_decision(rank == 1, all=False),
        "all": trainer.strategy.reduce_boolean_decision(rank == 1, all=True),
        "train_batches": len(trainer.train_dataloader),
    }
    trainer.strategy.barrier()
    torch.save(result, os.path.join(args.out, f"rank{rank}.pt"))
    print(f"DONE {rank}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
