"""A small GAN on the 8x8 digits trained with manual optimisation.

Lightning features exercised: ``import lightning.pytorch as pl``; ``self.automatic_optimization = False`` with two
optimizers returned from ``configure_optimizers``, ``self.optimizers()``, ``self.toggle_optimizer`` /
``self.untoggle_optimizer``, ``self.manual_backward``; ``self.log_dict``; ``example_input_array``; a sample grid
logged each epoch with ``self.logger.experiment.add_image`` through the default TensorBoard logger
(``Trainer(default_root_dir=".")``); a LightningDataModule with ``prepare_data`` / ``setup(stage)``.

Written for ember's compatibility corpus.
"""
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import lightning.pytorch as pl


class DigitsImages(pl.LightningDataModule):
    def __init__(self, batch_size=32, n_samples=320):
        super().__init__()
        self.batch_size = batch_size
        self.n_samples = n_samples

    def prepare_data(self):
        # the digits ship with scikit-learn: nothing to download, only check they load
        load_digits()

    def setup(self, stage=None):
        if stage in ("fit", None):
            digits = load_digits()
            images = digits.images[: self.n_samples].astype(np.float32) / 16.0 * 2.0 - 1.0
            self.train_set = TensorDataset(torch.from_numpy(images).unsqueeze(1))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)


class Generator(nn.Module):
    def __init__(self, latent_dim, hidden=64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 64),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z).view(-1, 1, 8, 8)


class Discriminator(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.net(x)


class DigitGAN(pl.LightningModule):
    def __init__(self, latent_dim=16, lr=2e-3, b1=0.5, b2=0.999):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(latent_dim)
        self.discriminator = Discriminator()
        self.validation_z = torch.randn(16, latent_dim)
        self.example_input_array = torch.zeros(2, latent_dim)

    def forward(self, z):
        return self.generator(z)

    def adversarial_loss(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target)

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.size(0), self.hparams.latent_dim).type_as(real)

        # generator: make the discriminator call fakes real
        self.toggle_optimizer(opt_g)
        fake = self(z)
        ones = torch.ones(real.size(0), 1).type_as(real)
        g_loss = self.adversarial_loss(self.discriminator(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        # discriminator: tell real from fake
        self.toggle_optimizer(opt_d)
        zeros = torch.zeros(real.size(0), 1).type_as(real)
        real_loss = self.adversarial_loss(self.discriminator(real), ones)
        fake_loss = self.adversarial_loss(self.discriminator(fake.detach()), zeros)
        d_loss = (real_loss + fake_loss) / 2
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True, on_step=True, on_epoch=True)

    def on_train_epoch_end(self):
        with torch.no_grad():
            samples = self(self.validation_z.type_as(self.generator.net[0].weight))
        grid = samples.view(4, 4, 8, 8).permute(0, 2, 1, 3).reshape(32, 32)
        self.logger.experiment.add_image("generated_digits", (grid.unsqueeze(0) + 1) / 2, self.current_epoch)

    def configure_optimizers(self):
        betas = (self.hparams.b1, self.hparams.b2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]


def main():
    pl.seed_everything(42)
    dm = DigitsImages()
    model = DigitGAN()
    trainer = pl.Trainer(
        default_root_dir=".",
        accelerator="cpu",
        max_epochs=2,
        enable_progress_bar=False,
        enable_model_summary=True,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    print("FINAL_METRICS", json.dumps({
        "d_loss": float(metrics["d_loss"]),
        "g_loss": float(metrics["g_loss"]),
        "d_loss_epoch": float(metrics["d_loss_epoch"]),
        "g_loss_epoch": float(metrics["g_loss_epoch"]),
        "global_step": int(trainer.global_step),
    }))


if __name__ == "__main__":
    main()
