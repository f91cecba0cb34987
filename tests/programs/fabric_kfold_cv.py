"""K-fold cross-validation on the 8x8 digits with Lightning Fabric, in the style of Lightning's
`examples/fabric/kfold_cv`: one model and optimizer per fold, all set up before training, and fresh loaders per fold
and epoch.

Fabric features exercised: `from lightning.fabric import Fabric`; `fabric.seed_everything` (Fabric's static method);
`fabric.launch()`; `with fabric.rank_zero_first(local=False):` around loading the data; scikit-learn `KFold` splits
fed to `SubsetRandomSampler`s (drawing from the global torch RNG) in DataLoaders that `fabric.setup_dataloaders` sets
up once per fold and epoch (the sampler kept: `use_distributed_sampler` has nothing to replace in one process);
`fabric.setup(model, optimizer)` called for every fold's pair up front; `fabric.backward`; `fabric.all_gather` of a
float; a torchmetrics `Accuracy` on `fabric.device` shared by the folds (update/compute/reset);
`fabric.barrier()` after each fold; the mean accuracy over folds per epoch; `fabric.world_size`/`global_rank`.

Written for ember's compatibility corpus.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn import model_selection
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset
from torchmetrics.classification import Accuracy

from lightning.fabric import Fabric

FOLDS = 4
EPOCHS = 3
BATCH_SIZE = 32


class Net(nn.Module):
    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.dropout = nn.Dropout(0.2)
        self.fc1 = nn.Linear(8 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = self.dropout(torch.flatten(x, 1))
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def train_epoch(fabric, model, optimizer, loader):
    model.train()
    total = 0.0
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        fabric.backward(loss)
        optimizer.step()
        total += loss.item()
    return total / len(loader)


def validate(fabric, model, loader, metric):
    model.eval()
    loss = 0.0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            loss += F.nll_loss(output, target, reduction="sum").item()
            metric.update(output, target)
    # the sampler's indices, not the whole dataset: each fold validates on its own part
    loss = fabric.all_gather(loss).sum() / len(loader.sampler)
    accuracy = metric.compute()
    metric.reset()
    return float(loss), float(accuracy)


def main():
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    fabric.seed_everything(42)

    with fabric.rank_zero_first(local=False):
        digits = load_digits()
    images = torch.tensor(digits.images[:1000], dtype=torch.float32).unsqueeze(1) / 16.0
    dataset = TensorDataset(images, torch.tensor(digits.target[:1000]))

    kfold = model_selection.KFold(n_splits=FOLDS, shuffle=True, random_state=0)
    models = [Net() for _ in range(FOLDS)]
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) for model in models]
    for i in range(FOLDS):
        models[i], optimizers[i] = fabric.setup(models[i], optimizers[i])
    metric = Accuracy(task="multiclass", num_classes=10).to(fabric.device)

    per_epoch = {}
    for epoch in range(1, EPOCHS + 1):
        folds = {}
        for fold, (train_ids, val_ids) in enumerate(kfold.split(dataset)):
            train_loader = DataLoader(dataset, batch_size=BATCH_SIZE, sampler=SubsetRandomSampler(train_ids))
            val_loader = DataLoader(dataset, batch_size=BATCH_SIZE, sampler=SubsetRandomSampler(val_ids))
            train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader)
            train_loss = train_epoch(fabric, models[fold], optimizers[fold], train_loader)
            val_loss, val_acc = validate(fabric, models[fold], val_loader, metric)
            fabric.barrier()
            folds[f"fold_{fold}"] = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
        mean_acc = sum(f["val_acc"] for f in folds.values()) / FOLDS
        fabric.print(f"Epoch {epoch} - mean accuracy over {FOLDS} folds: {mean_acc:.4f}")
        per_epoch[f"epoch_{epoch}"] = {"mean_val_acc": mean_acc, "folds": folds}

    metrics = {
        "per_epoch": per_epoch,
        "final_mean_val_acc": per_epoch[f"epoch_{EPOCHS}"]["mean_val_acc"],
        "train_batches": len(train_loader),
        "val_samples": len(val_loader.sampler),
        "world_size": fabric.world_size,
        "global_rank": fabric.global_rank,
        "next_random": torch.rand(1).item(),  # the global RNG after training: same draws as Lightning's loop
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
