"""A small trainer of our own, built on Lightning Fabric, driving a LightningModule on the 8x8 digits, in the style of
Lightning's `examples/fabric/build_your_own_trainer`; trained, checkpointed every epoch, and resumed from the middle.

Fabric features exercised: `import lightning as L`, `L.Fabric(..., callbacks=[...], loggers=CSVLogger(...))` with
`from lightning.fabric.loggers import CSVLogger` and `from lightning.fabric.utilities import rank_zero_warn`;
`L.seed_everything(..., verbose=False)`; `fabric.launch()`, `fabric.setup_dataloaders(train, val)`; an
`L.LightningModule` whose `configure_optimizers` returns `{"optimizer", "lr_scheduler": {"scheduler", "interval"}}`,
parsed by the trainer (an optimizer recognised by `L.fabric.utilities.types.Optimizable`, as Lightning's example
trainer does) and set up with `fabric.setup(model, optimizer)`; `fabric.call("on_train_epoch_start")`, `"on_train_batch_start"`,
`"on_before_backward"`, `"on_after_backward"`, `"on_before_optimizer_step"`, `"on_before_zero_grad"`,
`"on_train_batch_end"`, `"on_validation_epoch_start"`, `"on_validation_batch_end"`, `"on_validation_epoch_end"`,
`"on_train_epoch_end"` reaching both a callback object and the module's own hooks (the module joins Fabric's
callbacks when set up), and `on_after_setup`/`on_after_optimizer_step`, which Fabric calls itself; `self.log` and
`self.log_dict` inside the LightningModule (sent to `fabric.log_dict`), `self.optimizers()` and
`self.trainer.world_size` under Fabric; `optimizer.step(closure)` with the training step in the closure; gradient
accumulation with `fabric.no_backward_sync(model, enabled=...)`; `fabric.clip_gradients(model, optimizer,
clip_val=...)` inside the closure; `fabric.log_dict(..., step=global_step)` from the trainer; the CSV file read back
after `fabric.logger.finalize`; `fabric.save(path, {"model", "optim", "scheduler", "epoch", "global_step"})` every
epoch and `fabric.load(path, state)` into a fresh module and optimizer (the plain values replaced in the state dict);
a resume from epoch 2 that must end with the same weights as the uninterrupted run; `rank_zero_warn` when a
checkpoint leaves nothing to train.

Written for ember's compatibility corpus.
"""
import csv
import json
import os
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import lightning as L
from lightning.fabric.loggers import CSVLogger
from lightning.fabric.utilities import rank_zero_warn

MAX_EPOCHS = 4


class HookCounter:
    """A callback object: counts every hook the trainer (or Fabric) calls on it, keeps the last values it is given."""

    def __init__(self):
        self.calls = {}
        self.last = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_after_setup(self, fabric, module):
        self._count("on_after_setup")
        self.last["setup_module_is_wrapped"] = type(module) is not DigitsModule

    def on_train_epoch_start(self):
        self._count("on_train_epoch_start")

    def on_train_batch_start(self, batch, batch_idx):
        self._count("on_train_batch_start")

    def on_before_backward(self, loss):
        self._count("on_before_backward")

    def on_after_backward(self):
        self._count("on_after_backward")

    def on_before_optimizer_step(self, optimizer):
        self._count("on_before_optimizer_step")

    def on_after_optimizer_step(self, strategy, optimizer):
        self._count("on_after_optimizer_step")

    def on_before_zero_grad(self, optimizer):
        self._count("on_before_zero_grad")
        grads = [p.grad.norm() for p in optimizer.param_groups[0]["params"] if p.grad is not None]
        self.last["grad_norm_before_zero_grad"] = float(torch.stack(grads).norm())

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._count("on_train_batch_end")
        self.last["train_loss"] = float(outputs["loss"])

    def on_train_epoch_end(self):
        self._count("on_train_epoch_end")

    def on_validation_epoch_start(self):
        self._count("on_validation_epoch_start")

    def on_validation_batch_end(self, outputs, batch, batch_idx):
        self._count("on_validation_batch_end")

    def on_validation_epoch_end(self):
        self._count("on_validation_epoch_end")


class DigitsModule(L.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10)
        )
        self.epochs_started = 0
        self.val_outputs = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss)
        return {"loss": loss, "acc": (logits.argmax(-1) == y).float().mean()}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        out = {"loss": F.cross_entropy(logits, y, reduction="sum"), "correct": (logits.argmax(-1) == y).sum(),
               "count": len(y)}
        self.val_outputs.append(out)
        return out

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # hooks the trainer's fabric.call(...) reaches, because fabric.setup made the module one of Fabric's callbacks
    def on_train_epoch_start(self):
        self.epochs_started += 1
        self.log("lr", self.optimizers().param_groups[0]["lr"])

    def on_validation_epoch_start(self):
        self.val_outputs.clear()

    def on_validation_epoch_end(self):
        count = sum(o["count"] for o in self.val_outputs) * self.trainer.world_size
        loss = torch.stack([o["loss"] for o in self.val_outputs]).sum() / count
        acc = torch.stack([o["correct"] for o in self.val_outputs]).sum() / count
        self.log_dict({"val_loss": loss, "val_acc": acc})


class LoopTrainer:
    """Epochs of training batches (accumulated, clipped, stepped through a closure) and a validation pass, with a
    checkpoint after every epoch."""

    def __init__(self, max_epochs, callbacks=(), grad_accum_steps=2, clip_val=0.5, root_dir=".",
                 checkpoint_dir="checkpoints", data_seed=7):
        self.fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true", callbacks=list(callbacks),
                               loggers=CSVLogger(root_dir, name="byot"))
        self.max_epochs = max_epochs
        self.grad_accum_steps = grad_accum_steps
        self.clip_val = clip_val
        self.checkpoint_dir = checkpoint_dir
        self.data_seed = data_seed
        self.current_epoch = 0
        self.global_step = 0
        self._last_output = {}

    def fit(self, model, train_loader, val_loader, ckpt_path=None):
        fabric = self.fabric
        fabric.launch()
        train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader)
        optimizer, scheduler_config = self.parse_optimizers(model.configure_optimizers())
        model, optimizer = fabric.setup(model, optimizer)
        scheduler = scheduler_config["scheduler"]
        state = {"model": model, "optim": optimizer, "scheduler": scheduler, "epoch": 0, "global_step": 0}
        if ckpt_path is not None:
            fabric.load(ckpt_path, state)
            self.current_epoch, self.global_step = state["epoch"], state["global_step"]
            if self.current_epoch >= self.max_epochs:
                rank_zero_warn(f"{ckpt_path} is at epoch {self.current_epoch}: nothing left to train.")
                return model
        while self.current_epoch < self.max_epochs:
            # a data order that depends only on the epoch, so that a resumed run sees the same batches
            train_loader.generator.manual_seed(self.data_seed + self.current_epoch)
            self.train_epoch(model, optimizer, train_loader)
            self.validate(model, val_loader)
            if scheduler_config["interval"] == "epoch" and self.current_epoch % scheduler_config["frequency"] == 0:
                scheduler.step()
            self.current_epoch += 1
            state.update(epoch=self.current_epoch, global_step=self.global_step)
            fabric.save(os.path.join(self.checkpoint_dir, f"epoch-{self.current_epoch:02d}.ckpt"), state)
        return model

    @staticmethod
    def parse_optimizers(config):
        """(optimizer, scheduler config) from what configure_optimizers returned: an optimizer alone, or a dict with
        "optimizer" and "lr_scheduler" (a scheduler or a dict with "scheduler"), as Lightning's example trainer
        recognises an optimizer with Fabric's `Optimizable` protocol."""
        if isinstance(config, L.fabric.utilities.types.Optimizable):
            return config, None
        scheduler = config.get("lr_scheduler")
        if scheduler is not None and not isinstance(scheduler, dict):
            scheduler = {"scheduler": scheduler}
        return config["optimizer"], {"interval": "epoch", "frequency": 1, **(scheduler or {})}

    def train_epoch(self, model, optimizer, loader):
        fabric = self.fabric
        model.train()
        fabric.call("on_train_epoch_start")
        for batch_idx, batch in enumerate(loader):
            fabric.call("on_train_batch_start", batch, batch_idx)
            accumulating = (batch_idx + 1) % self.grad_accum_steps != 0 and batch_idx + 1 != len(loader)
            with fabric.no_backward_sync(model, enabled=accumulating):
                if accumulating:
                    self.training_step(model, batch, batch_idx)
                else:
                    fabric.call("on_before_optimizer_step", optimizer)
                    optimizer.step(partial(self.training_step, model, batch, batch_idx, optimizer=optimizer))
                    fabric.call("on_before_zero_grad", optimizer)
                    optimizer.zero_grad()
                    self.global_step += 1
            fabric.call("on_train_batch_end", self._last_output, batch, batch_idx)
        fabric.call("on_train_epoch_end")
        fabric.log_dict({"epoch": self.current_epoch, "train_acc": self._last_output["acc"]}, step=self.global_step)

    def training_step(self, model, batch, batch_idx, optimizer=None):
        """Forward and backward; with an optimizer (the closure of its step), also clip the accumulated gradients."""
        output = model.training_step(batch, batch_idx)
        loss = output["loss"] / self.grad_accum_steps
        self.fabric.call("on_before_backward", loss)
        self.fabric.backward(loss)
        self.fabric.call("on_after_backward")
        if optimizer is not None:
            self.fabric.clip_gradients(model, optimizer, clip_val=self.clip_val)
        self._last_output = {key: value.detach() for key, value in output.items()}
        return loss

    @torch.no_grad()
    def validate(self, model, loader):
        fabric = self.fabric
        model.eval()
        fabric.call("on_validation_epoch_start")
        for batch_idx, batch in enumerate(loader):
            output = model.validation_step(batch, batch_idx)
            fabric.call("on_validation_batch_end", output, batch, batch_idx)
        fabric.call("on_validation_epoch_end")
        model.train()


def loaders(seed):
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    targets = torch.tensor(digits.target)
    train = TensorDataset(images[:600], targets[:600])
    val = TensorDataset(images[1500:], targets[1500:])
    return (DataLoader(train, batch_size=40, shuffle=True, generator=torch.Generator().manual_seed(seed)),
            DataLoader(val, batch_size=64))


def read_csv(logger):
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def main():
    L.seed_everything(11)
    counter = HookCounter()
    trainer = LoopTrainer(MAX_EPOCHS, callbacks=[counter])
    model = trainer.fit(DigitsModule(), *loaders(seed=0))
    trainer.fabric.logger.finalize("success")
    rows = read_csv(trainer.fabric.logger)
    val_rows = [row for row in rows if row.get("val_loss")]
    weights = {name: p.detach().clone() for name, p in model.state_dict().items()}

    # resume in a fresh trainer from the end of epoch 2: a fresh module (other initial weights) and optimizer
    L.seed_everything(12, verbose=False)
    resumed_trainer = LoopTrainer(MAX_EPOCHS, root_dir="resumed")
    resumed = resumed_trainer.fit(DigitsModule(), *loaders(seed=0), ckpt_path="checkpoints/epoch-02.ckpt")
    resumed_trainer.fabric.logger.finalize("success")
    resumed_rows = read_csv(resumed_trainer.fabric.logger)
    same_weights = all(torch.equal(weights[name], p) for name, p in resumed.state_dict().items())

    # a checkpoint at the last epoch leaves nothing to train: the trainer warns with rank_zero_warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LoopTrainer(MAX_EPOCHS, root_dir="done").fit(DigitsModule(), *loaders(seed=0),
                                                      ckpt_path=f"checkpoints/epoch-{MAX_EPOCHS:02d}.ckpt")
    nothing_left = [str(w.message) for w in caught if "nothing left to train" in str(w.message)]

    metrics = {
        "val_loss": float(val_rows[-1]["val_loss"]),
        "val_acc": float(val_rows[-1]["val_acc"]),
        "last_train_loss": counter.last["train_loss"],
        "grad_norm_before_zero_grad": counter.last["grad_norm_before_zero_grad"],
        "global_step": trainer.global_step,
        "hook_calls": dict(sorted(counter.calls.items())),
        "setup_module_is_wrapped": counter.last["setup_module_is_wrapped"],
        "epochs_started": model.epochs_started,
        "lr_at_end": model.optimizers().param_groups[0]["lr"],
        "csv_columns": sorted(rows[0]),
        "csv_rows": len(rows),
        "csv_val_steps": [int(row["step"]) for row in val_rows],
        "csv_lr": [float(row["lr"]) for row in rows if row.get("lr")],
        "csv_first_train_loss": float(next(row["train_loss"] for row in rows if row.get("train_loss"))),
        "resumed_epochs_started": resumed.epochs_started,
        "resumed_global_step": resumed_trainer.global_step,
        "resumed_val_loss": float([row for row in resumed_rows if row.get("val_loss")][-1]["val_loss"]),
        "resumed_csv_rows": len(resumed_rows),
        "resumed_same_weights": same_weights,
        "checkpoints": sorted(os.listdir("checkpoints")),
        "nothing_left_warnings": len(nothing_left),
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
