"""Q-learning on a small corridor, trained from a replay buffer streamed through an IterableDataset.

Exercises: ``import pytorch_lightning as pl``; an ``IterableDataset`` without ``__len__`` whose ``__iter__``
samples from a replay buffer, as the training DataLoader; ``training_step`` returning a dict with the loss plus
extra keys (``"log"``, ``"progress_bar"``) as older programs do; ``self.global_step`` to sync a target network
every N steps; ``self.on_gpu``; ``Trainer(max_steps=..., val_check_interval=50)`` with no validation loader;
``seed_everything``.

Written for ember's compatibility corpus.
"""
import json
import random
from collections import deque

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

import pytorch_lightning as pl


class Corridor:
    """A 1-D corridor: start in the middle, step left or right; +1 at the right end, -1 at the left end."""

    def __init__(self, length=7, max_moves=20):
        self.length = length
        self.max_moves = max_moves
        self.reset()

    def reset(self):
        self.pos = self.length // 2
        self.moves = 0
        return self.observe()

    def observe(self):
        obs = torch.zeros(self.length)
        obs[self.pos] = 1.0
        return obs

    def step(self, action):
        self.pos += 1 if action == 1 else -1
        self.moves += 1
        if self.pos >= self.length - 1:
            return self.observe(), 1.0, True
        if self.pos <= 0:
            return self.observe(), -1.0, True
        return self.observe(), -0.01, self.moves >= self.max_moves


class ReplayBuffer:
    def __init__(self, capacity):
        self.memory = deque(maxlen=capacity)

    def __len__(self):
        return len(self.memory)

    def push(self, state, action, reward, next_state, done):
        self.memory.append((state, action, reward, next_state, done))

    def sample(self, n):
        picks = random.sample(range(len(self.memory)), n)
        return [self.memory[i] for i in picks]


class ReplayStream(IterableDataset):
    """Yields transitions drawn from the buffer; it has no length, so the epoch never ends on its own."""

    def __init__(self, buffer, sample_size=64):
        self.buffer = buffer
        self.sample_size = sample_size

    def __iter__(self):
        for state, action, reward, next_state, done in self.buffer.sample(self.sample_size):
            yield state, action, reward, next_state, done


class QNet(nn.Module):
    def __init__(self, n_obs, n_actions, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_obs, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, x):
        return self.net(x.float())


class CorridorQLearner(pl.LightningModule):
    def __init__(self, length=7, batch_size=16, lr=1e-2, gamma=0.95, sync_every=25, warm_start=64,
                 eps_start=1.0, eps_end=0.05, eps_decay_steps=200):
        super().__init__()
        self.save_hyperparameters()
        self.env = Corridor(length)
        self.q = QNet(length, 2)
        self.target_q = QNet(length, 2)
        self.target_q.load_state_dict(self.q.state_dict())
        self.buffer = ReplayBuffer(1000)
        self.state = self.env.reset()
        self.episode_reward = 0.0
        self.total_reward = 0.0
        self.episodes_done = 0
        for _ in range(warm_start):
            self.play(epsilon=1.0)

    def forward(self, x):
        return self.q(x)

    @torch.no_grad()
    def play(self, epsilon, device="cpu"):
        if random.random() < epsilon:
            action = random.randint(0, 1)
        else:
            action = int(self.q(self.state.unsqueeze(0).to(device)).argmax(dim=1).item())
        next_state, reward, done = self.env.step(action)
        self.buffer.push(self.state, action, reward, next_state, done)
        self.episode_reward += reward
        self.state = next_state
        if done:
            self.total_reward += self.episode_reward
            self.episodes_done += 1
            self.episode_reward = 0.0
            self.state = self.env.reset()
        return reward, done

    def epsilon(self):
        frac = min(1.0, self.global_step / self.hparams.eps_decay_steps)
        return self.hparams.eps_start + frac * (self.hparams.eps_end - self.hparams.eps_start)

    def td_loss(self, batch):
        states, actions, rewards, next_states, dones = batch
        q_taken = self.q(states).gather(1, actions.long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_best = self.target_q(next_states).max(dim=1).values
            next_best[dones] = 0.0
            target = rewards.float() + self.hparams.gamma * next_best
        return F.smooth_l1_loss(q_taken, target)

    def training_step(self, batch, batch_idx):
        device = "cuda" if self.on_gpu else "cpu"
        _, done = self.play(self.epsilon(), device)
        loss = self.td_loss(batch)

        if self.global_step % self.hparams.sync_every == 0:
            self.target_q.load_state_dict(self.q.state_dict())

        self.log("train_loss", loss, prog_bar=True)
        self.log("episodes", float(self.episodes_done))
        logs = {"train_loss": loss.detach(), "epsilon": self.epsilon()}
        return {"loss": loss, "log": logs, "progress_bar": {"episodes": self.episodes_done}}

    def configure_optimizers(self):
        return torch.optim.Adam(self.q.parameters(), lr=self.hparams.lr)

    def train_dataloader(self):
        return DataLoader(ReplayStream(self.buffer, sample_size=self.hparams.batch_size * 4),
                          batch_size=self.hparams.batch_size)


def greedy_return(model, episodes=3):
    env = Corridor(model.hparams.length)
    total = 0.0
    with torch.no_grad():
        for _ in range(episodes):
            state, done = env.reset(), False
            while not done:
                action = int(model(state.unsqueeze(0)).argmax(dim=1).item())
                state, reward, done = env.step(action)
                total += reward
    return total


def main():
    pl.seed_everything(7)
    model = CorridorQLearner()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=300,
        val_check_interval=50,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(model)
    metrics = {
        "last_loss": float(trainer.callback_metrics["train_loss"]),
        "episodes": float(trainer.callback_metrics["episodes"]),
        "training_reward": float(model.total_reward),
        "greedy_reward": float(greedy_return(model)),
        "global_step": trainer.global_step,
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
