"""``lightning.pytorch.utilities.combined_loader``: not in ember (its Trainer trains on one DataLoader)."""
from ember._missing import missing_class

CombinedLoader = missing_class(
    "utilities.combined_loader.CombinedLoader",
    "ember's Trainer trains on one DataLoader and evaluates a list of them one after the other",
    "torch.utils.data.ConcatDataset (or a Dataset returning a dict of samples) for training, and a list of "
    "DataLoaders from val_dataloader/test_dataloader for evaluation")

__all__ = ["CombinedLoader"]
