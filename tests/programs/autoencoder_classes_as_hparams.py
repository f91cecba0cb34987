"""A convolutional autoencoder on 8x8 digits whose encoder and decoder classes are hyperparameters.

Exercises: ``import lightning as L`` with ``from lightning.pytorch.callbacks import ...``; ``__init__`` taking
classes as default arguments and calling ``self.save_hyperparameters()``; ``configure_optimizers`` returning
``{"optimizer", "lr_scheduler": ReduceLROnPlateau, "monitor": "val_loss"}``; a callback writing reconstructions
with ``trainer.logger.experiment.add_image`` every epoch (default TensorBoard logger, ``default_root_dir="."``);
``LearningRateMonitor("epoch")``; ``ModelCheckpoint(save_weights_only=True)``; ``load_from_checkpoint`` on
``trainer.checkpoint_callback.best_model_path``; ``trainer.test`` on two loaders with ``verbose=False``; a second
Trainer fitting a second model with another latent size.

Written for ember's compatibility corpus.
"""
import json

import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint


class Encoder(nn.Module):
    def __init__(self, num_input_channels, base_channel_size, latent_dim, act_fn=nn.GELU):
        super().__init__()
        c = base_channel_size
        self.net = nn.Sequential(
            nn.Conv2d(num_input_channels, c, kernel_size=3, padding=1, stride=2),  # 8x8 -> 4x4
            act_fn(),
            nn.Conv2d(c, 2 * c, kernel_size=3, padding=1, stride=2),  # 4x4 -> 2x2
            act_fn(),
            nn.Flatten(),
            nn.Linear(2 * c * 2 * 2, latent_dim),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, num_input_channels, base_channel_size, latent_dim, act_fn=nn.GELU):
        super().__init__()
        c = base_channel_size
        self.linear = nn.Sequential(nn.Linear(latent_dim, 2 * c * 2 * 2), act_fn())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, kernel_size=3, output_padding=1, padding=1, stride=2),  # 2x2 -> 4x4
            act_fn(),
            nn.ConvTranspose2d(c, num_input_channels, kernel_size=3, output_padding=1, padding=1, stride=2),
            nn.Tanh(),
        )

    def forward(self, z):
        x = self.linear(z)
        x = x.reshape(x.shape[0], -1, 2, 2)
        return self.net(x)


class Autoencoder(L.LightningModule):
    def __init__(self, base_channel_size, latent_dim, encoder_class=Encoder, decoder_class=Decoder,
                 num_input_channels=1, width=8, height=8, lr=2e-3):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = encoder_class(num_input_channels, base_channel_size, latent_dim)
        self.decoder = decoder_class(num_input_channels, base_channel_size, latent_dim)
        self.example_input_array = torch.zeros(2, num_input_channels, width, height)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def _reconstruction_loss(self, batch):
        x, _ = batch
        x_hat = self.forward(x)
        loss = F.mse_loss(x, x_hat, reduction="none")
        return loss.sum(dim=[1, 2, 3]).mean(dim=[0])

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0,
                                                               min_lr=1e-5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "val_loss"}

    def training_step(self, batch, batch_idx):
        loss = self._reconstruction_loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._reconstruction_loss(batch))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("test_loss", self._reconstruction_loss(batch))


class ReconstructionImages(Callback):
    """Writes a grid of inputs above their reconstructions to TensorBoard at the end of every epoch."""

    def __init__(self, images, every_n_epochs=1):
        super().__init__()
        self.images = images
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch % self.every_n_epochs != 0:
            return
        images = self.images.to(pl_module.device)
        with torch.no_grad():
            pl_module.eval()
            recon = pl_module(images)
            pl_module.train()
        grid = torchvision.utils.make_grid(torch.stack([images, recon], dim=1).flatten(0, 1), nrow=2,
                                           normalize=True, value_range=(-1, 1))
        trainer.logger.experiment.add_image("reconstructions", grid, global_step=trainer.global_step)


def digits_loaders():
    digits = load_digits()
    x = torch.tensor(digits.images[:400], dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [-1, 1]
    y = torch.tensor(digits.target[:400])
    full = TensorDataset(x, y)
    train_set, val_set, test_set = random_split(full, [280, 60, 60], generator=torch.Generator().manual_seed(3))
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=32)
    test_loader = DataLoader(test_set, batch_size=32)
    return train_loader, val_loader, test_loader, x[:4]


def train_autoencoder(latent_dim, loaders, max_epochs=2):
    train_loader, val_loader, test_loader, examples = loaders
    trainer = L.Trainer(
        default_root_dir=".",
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        enable_progress_bar=False,
        callbacks=[
            ModelCheckpoint(save_weights_only=True),
            ReconstructionImages(examples, every_n_epochs=1),
            LearningRateMonitor("epoch"),
        ],
    )
    model = Autoencoder(base_channel_size=8, latent_dim=latent_dim)
    trainer.fit(model, train_loader, val_loader)
    return trainer, model


def main():
    L.seed_everything(42)
    loaders = digits_loaders()
    _, val_loader, test_loader, _ = loaders

    trainer, _ = train_autoencoder(16, loaders)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # test() replaces these
    # The hyperparameters hold classes, so Lightning 2.6 needs weights_only=False to unpickle them (our own file).
    model = Autoencoder.load_from_checkpoint(trainer.checkpoint_callback.best_model_path, weights_only=False)
    results = trainer.test(model, dataloaders=[val_loader, test_loader], verbose=False)

    trainer2, _ = train_autoencoder(4, loaders)
    metrics = {
        "latent16_test": [{k: float(v) for k, v in r.items()} for r in results],
        "latent16_fit": fit_metrics,
        "latent4_lr": float(trainer2.callback_metrics["lr-Adam"]),
        "latent4_val_loss": float(trainer2.callback_metrics["val_loss"]),
        "latent4_train_loss": float(trainer2.callback_metrics["train_loss"]),
        "latent4_hparams_encoder": trainer2.lightning_module.hparams.encoder_class.__name__,
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
