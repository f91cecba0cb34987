"""A small character-level GPT trained with Lightning Fabric, in the style of the nanoGPT-like loops written on Fabric
(Lightning's `examples/fabric/language_model`, LitGPT's pretraining scripts): checkpointed in the middle of the run,
and resumed from there to the same final loss.

Fabric features exercised: `import lightning as L`, `L.Fabric(accelerator="cpu", devices=1, precision="32-true")`,
`fabric.launch()`, `fabric.seed_everything`; the model created inside `with fabric.init_module():` (causal
self-attention blocks, token and position embeddings, the output layer's weight tied to the token embedding, scaled
initialisation of the residual projections); AdamW over two parameter groups (weight decay for matrices, none for
biases and norms, the tied weight counted once); a cosine learning rate with linear warmup set by hand in every
param group each iteration; gradient accumulation with `fabric.no_backward_sync(model, enabled=...)` around the
forward and `fabric.backward`; `fabric.clip_gradients(model, optimizer, max_norm=1.0)` and the norm it returns;
evaluation under `model.eval()`, `torch.no_grad()` and `fabric.autocast()`; `fabric.save` mid-run of
`{"model", "optimizer", "iter_num", "best_val_loss", "config"}` and, in a second model and optimizer set up with
`fabric.setup_module`/`fabric.setup_optimizers`, `fabric.load(path, state)` then the rest of the run (the same final
loss and the same greedy sample); `fabric.load(path)` of the whole file; `fabric.device`, `fabric.print`.

Written for ember's compatibility corpus.
"""
import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

import lightning as L

TEXT = "\n".join(
    f"the {animal} {verb} over the {thing} {count} times."
    for count, (animal, verb, thing) in enumerate(
        (a, v, t)
        for a in ("fox", "dog", "cat", "owl")
        for v in ("jumps", "walks", "looks")
        for t in ("fence", "river", "hill")
    )
)


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size)).view(
            1, 1, config.block_size, config.block_size), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias),
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}  # the tied weight once
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])
            idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
        return idx


# training settings, nanoGPT-style globals
max_iters = 120
warmup_iters = 10
lr_decay_iters = 120
learning_rate = 6e-3
min_lr = 3e-4
weight_decay = 0.1
batch_size = 8
grad_accum = 2
eval_iters = 4
resume_at = 50


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def get_batch(data, block_size, fabric, seed):
    """A batch that depends only on ``seed`` (the iteration): a resumed run sees the same data."""
    generator = torch.Generator().manual_seed(seed)
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return fabric.to_device((x, y))


@torch.no_grad()
def estimate_loss(fabric, model, splits, block_size):
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, block_size, fabric, seed=10_000 + k)
            with fabric.autocast():
                _, loss = model(x, y)
            losses[k] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


def train(fabric, model, optimizer, splits, config, start_iter, stop_iter, best_val_loss, checkpoint=None):
    """Iterations [start_iter, stop_iter); with ``checkpoint``, save the state there after ``resume_at`` iterations."""
    norm = None
    for it in range(start_iter, stop_iter):
        lr = get_lr(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(grad_accum):
            x, y = get_batch(splits["train"], config.block_size, fabric, seed=it * grad_accum + micro)
            with fabric.no_backward_sync(model, enabled=micro < grad_accum - 1):
                _, loss = model(x, y)
                fabric.backward(loss / grad_accum)
        norm = fabric.clip_gradients(model, optimizer, max_norm=1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (it + 1) % 20 == 0:
            losses = estimate_loss(fabric, model, splits, config.block_size)
            best_val_loss = min(best_val_loss, losses["val"])
            fabric.print(f"iter {it + 1}: train {losses['train']:.4f}, val {losses['val']:.4f}, lr {lr:.2e}")
        if checkpoint is not None and it + 1 == resume_at:
            state = {"model": model, "optimizer": optimizer, "iter_num": it + 1, "best_val_loss": best_val_loss,
                     "config": asdict(config)}
            fabric.save(checkpoint, state)
    return loss.item() * 1.0, float(norm), best_val_loss


def main():
    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.launch()
    fabric.seed_everything(1337)

    chars = sorted(set(TEXT))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in TEXT], dtype=torch.long)
    n = int(0.9 * len(data))
    splits = {"train": data[:n], "val": data[n:]}
    config = GPTConfig(vocab_size=len(chars))

    with fabric.init_module():
        model = GPT(config)
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (0.9, 0.95))
    model, optimizer = fabric.setup(model, optimizer)
    n_params = sum(p.numel() for p in model.parameters())

    last_loss, last_norm, best_val = train(fabric, model, optimizer, splits, config, 0, max_iters, 1e9,
                                           checkpoint="mid.ckpt")
    final = estimate_loss(fabric, model, splits, config.block_size)
    prompt = torch.tensor([[stoi[c] for c in "the "]], device=fabric.device)
    sample = "".join(chars[i] for i in model.generate(prompt, 24)[0].tolist())

    # resume: another model (other initial weights) and optimizer, restored from the middle of the run
    fabric.seed_everything(4242)
    with fabric.init_module():
        model2 = GPT(GPTConfig(**fabric.load("mid.ckpt")["config"]))
    model2 = fabric.setup_module(model2)
    optimizer2 = fabric.setup_optimizers(model2.configure_optimizers(weight_decay, learning_rate, (0.9, 0.95)))
    state = {"model": model2, "optimizer": optimizer2, "iter_num": 0, "best_val_loss": 1e9, "config": None}
    remainder = fabric.load("mid.ckpt", state)
    resumed_loss, resumed_norm, resumed_best = train(fabric, model2, optimizer2, splits, config, state["iter_num"],
                                                     max_iters, state["best_val_loss"])
    resumed_final = estimate_loss(fabric, model2, splits, config.block_size)
    resumed_sample = "".join(chars[i] for i in model2.generate(prompt, 24)[0].tolist())

    metrics = {
        "n_params": n_params,
        "vocab_size": config.vocab_size,
        "tied": model.transformer.wte.weight is model.lm_head.weight,
        "last_loss": last_loss,
        "last_grad_norm": last_norm,
        "best_val_loss": best_val,
        "final_train_loss": final["train"],
        "final_val_loss": final["val"],
        "final_lr": optimizer.param_groups[0]["lr"],
        "sample": sample,
        "resumed_from_iter": state["iter_num"],
        "resumed_loss": resumed_loss,
        "resumed_grad_norm": resumed_norm,
        "resumed_best_val_loss": resumed_best,
        "resumed_final_val_loss": resumed_final["val"],
        "resumed_sample": sample == resumed_sample,
        "resumed_same_loss": resumed_loss == last_loss and resumed_final == final,
        "remainder": sorted(remainder),
        "optimizer_state_steps": float(optimizer2.state_dict()["state"][0]["step"]),
    }
    print("FINAL_METRICS", json.dumps(metrics))


if __name__ == "__main__":
    main()
