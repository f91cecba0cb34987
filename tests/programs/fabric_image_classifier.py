"""A small CNN on the 8x8 digits trained in a loop of our own with Lightning Fabric, in the style of Lightning's
`examples/fabric/image_classifier`.

Fabric features exercised: `import lightning as L` and `from lightning.fabric import Fabric, seed_everything`;
`Fabric(accelerator="cpu", devices=1)` and `fabric.launch()`; `fabric.setup(model, optimizer)` with a StepLR built on
the optimizer Fabric returns; `fabric.setup_dataloaders(train, test)` (a shuffling loader and a plain one, with
`len(loader.dataset)` read through the wrapper); `fabric.backward`; `fabric.all_gather` of a Python float and
`fabric.all_reduce(..., reduce_op="sum")` of a tensor; `fabric.print`; a torchmetrics `Accuracy` moved with
`.to(fabric.device)`; dropout (the global RNG drawn in the loop); `fabric.save(path, model.state_dict())` as the example
does and `fabric.load(path)` read into a fresh model; `fabric.save` of `{"model", "optimizer", "scheduler", "epoch"}`
and `fabric.load(path, {"model", "optimizer"})` into fresh objects, with the remainder it returns; a fresh model set
up with `fabric.setup(model)` alone (`lightning.fabric.wrappers.is_wrapped`) and evaluated.

Written for ember's compatibility corpus.
"""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import Accuracy

import lightning as L
from lightning.fabric import Fabric, seed_everything
from lightning.fabric.wrappers import is_wrapped


class DigitsNet(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(2 * channels * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def digits_datasets():
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = (images - 0.3) / 0.4
    targets = torch.tensor(digits.target)
    return TensorDataset(images[:1200], targets[:1200]), TensorDataset(images[1200:], targets[1200:])


def evaluate(fabric, model, loader, metric):
    """Summed NLL over the test set (gathered over processes) divided by its size, and the metric's accuracy."""
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            metric(output, target)
    test_loss = fabric.all_gather(test_loss).sum() / len(loader.dataset)
    accuracy = metric.compute()
    metric.reset()
    return float(test_loss), float(accuracy)


def run(hparams):
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    seed_everything(hparams.seed)

    train_set, test_set = digits_datasets()
    train_loader = DataLoader(train_set, batch_size=hparams.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=hparams.batch_size)
    train_loader, test_loader = fabric.setup_dataloaders(train_loader, test_loader)

    model = DigitsNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=hparams.lr)
    model, optimizer = fabric.setup(model, optimizer)
    scheduler = StepLR(optimizer, step_size=1, gamma=hparams.gamma)
    test_acc = Accuracy(task="multiclass", num_classes=10).to(fabric.device)

    history = {}  # nested dicts, not lists: the test compares numbers in dicts with a tolerance
    for epoch in range(1, hparams.epochs + 1):
        model.train()
        epoch_loss = torch.zeros((), device=fabric.device)
        for batch_idx, (data, target) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            fabric.backward(loss)
            optimizer.step()
            epoch_loss += loss.detach()
            if batch_idx % hparams.log_interval == 0:
                fabric.print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)}]"
                             f"\tLoss: {loss.item():.6f}")
        scheduler.step()
        mean_train_loss = fabric.all_reduce(epoch_loss, reduce_op="sum") / len(train_loader)
        test_loss, accuracy = evaluate(fabric, model, test_loader, test_acc)
        fabric.print(f"Test set: average loss {test_loss:.4f}, accuracy {100 * accuracy:.0f}%")
        history[f"epoch_{epoch}"] = {"train_loss": float(mean_train_loss), "test_loss": test_loss, "test_acc": accuracy}

    # the example's way: the model's state dict as the whole state, read back with fabric.load(path)
    fabric.save(path="digits_cnn.pt", state=model.state_dict())
    fresh = DigitsNet()
    fresh.load_state_dict(fabric.load("digits_cnn.pt"))
    fresh = fabric.setup(fresh)
    reloaded_loss, reloaded_acc = evaluate(fabric, fresh, test_loader, test_acc)

    # a full checkpoint, restored into fresh objects in place
    fabric.save("checkpoint.ckpt", {"model": model, "optimizer": optimizer, "scheduler": scheduler,
                                    "epoch": hparams.epochs})
    restored = DigitsNet()
    restored_optimizer = torch.optim.Adadelta(restored.parameters(), lr=hparams.lr)
    restored, restored_optimizer = fabric.setup(restored, restored_optimizer)
    remainder = fabric.load("checkpoint.ckpt", {"model": restored, "optimizer": restored_optimizer})
    restored_scheduler = StepLR(restored_optimizer, step_size=1, gamma=hparams.gamma)
    restored_scheduler.load_state_dict(remainder["scheduler"])
    restored_loss, restored_acc = evaluate(fabric, restored, test_loader, test_acc)

    metrics = {
        "history": history,
        "lr": optimizer.param_groups[0]["lr"],
        "reloaded_test_loss": reloaded_loss,
        "reloaded_test_acc": reloaded_acc,
        "restored_test_loss": restored_loss,
        "restored_test_acc": restored_acc,
        "restored_lr": restored_optimizer.param_groups[0]["lr"],
        "restored_scheduler_last_epoch": restored_scheduler.last_epoch,
        "remainder": {key: value for key, value in sorted(remainder.items()) if key != "scheduler"},
        "remainder_keys": sorted(remainder),
        "state_dict_keys": list(fabric.load("digits_cnn.pt")),
        "is_fabric": isinstance(fabric, L.Fabric),
        "fresh_is_wrapped": is_wrapped(fresh),
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fabric digits classifier")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=10)
    run(parser.parse_args())
