"""A tiny GAN learns a 1-D Gaussian N(4, 1.25) from samples, trained with manual optimisation.

Shows ``self.automatic_optimization = False``: two optimizers from ``configure_optimizers``,
``self.optimizers()``, ``self.toggle_optimizer``/``untoggle_optimizer`` so each network's step
leaves the other's parameters alone, ``self.manual_backward`` and explicit ``step``/``zero_grad``.
The run ends by comparing the generated samples' mean and std with the target's. Run: ``python examples/gan.py``.
"""
import argparse

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import ember as pl

TARGET_MEAN, TARGET_STD = 4.0, 1.25


class GAN(pl.LightningModule):
    def __init__(self, latent_dim: int = 4, hidden: int = 32, lr: float = 2e-3):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # we call backward and step ourselves
        self.generator = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.discriminator = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, n: int):
        return self.generator(torch.randn(n, self.hparams.latent_dim, device=self.device))

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        ones = torch.ones(len(real), 1, device=self.device)
        zeros = torch.zeros(len(real), 1, device=self.device)

        # 1. the discriminator learns to tell real (1) from generated (0) samples
        self.toggle_optimizer(opt_d)
        fake = self(len(real)).detach()
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(self.discriminator(fake), zeros)) / 2
        self.manual_backward(d_loss)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)

        # 2. the generator learns to make the discriminator say "real"
        self.toggle_optimizer(opt_g)
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(self(len(real))), ones)
        self.manual_backward(g_loss)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)

        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True)

    def configure_optimizers(self):
        betas = (0.5, 0.999)  # the usual GAN choice: less momentum than Adam's default
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--root-dir", default="lightning_logs_examples/gan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 1 epoch on 512 samples")
    args = parser.parse_args(argv)
    if args.fast:
        args.max_epochs, args.samples = 1, 512

    pl.seed_everything(args.seed)
    real = TARGET_MEAN + TARGET_STD * torch.randn(args.samples, 1)
    model = GAN()
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root_dir,
                         enable_progress_bar=not args.fast, enable_model_summary=not args.fast, log_every_n_steps=10)
    trainer.fit(model, DataLoader(TensorDataset(real), batch_size=128, shuffle=True))
    with torch.no_grad():
        samples = model(5000)
    print(f"target mean={TARGET_MEAN:.3f} std={TARGET_STD:.3f}")
    print(f"fake_mean={samples.mean().item():.3f} fake_std={samples.std().item():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
