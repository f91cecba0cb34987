"""Single-GPU throughput: ember's Trainer against a hand-written AMP loop, on a ResNet-18 and a small transformer LM.

Two models, defined here (no torchvision), on synthetic data made here (no download):

* ``resnet``: a CIFAR-style ResNet-18 (BasicBlocks [2, 2, 2, 2], 64-512 channels, a 3x3 stem without max-pool,
  11.2M parameters) on random 3x32x32 images, 10 classes, cross-entropy, SGD (lr 0.1, momentum 0.9, Nesterov,
  weight decay 5e-4), batch 256; channels-last on CUDA.
* ``transformer``: a causal language model (token and position embeddings, ``nn.TransformerEncoder`` of 6 pre-norm
  layers, d_model 512, 8 heads, feed-forward 2048, GELU, no dropout, a causal mask, a final LayerNorm, an untied
  head to the 8,192-token vocabulary: 27.3M parameters) on random token sequences of 256, next-token cross-entropy,
  AdamW (lr 3e-4, weight decay 0.1), batch 64.

The batches come from a ``TensorDataset`` on the CPU (a pool of at most 16 distinct batches, each drawn whole by
index; a run is one epoch of ``--skip`` + ``--steps`` batches) through a ``DataLoader`` with
``pin_memory=True`` on CUDA (``--workers`` worker processes, default 0). ``torch.backends.cudnn.benchmark`` is on.

The hand-written side is an idiomatic AMP loop: ``x.to(device, non_blocking=True)``,
``optimizer.zero_grad(set_to_none=True)``, the forward pass and loss under ``torch.autocast``, then for
``16-mixed`` ``scaler.scale(loss).backward(); scaler.step(opt); scaler.update()`` with ``torch.amp.GradScaler``
(``bf16-mixed``: autocast, no scaler; ``32-true``: neither). The ember side is a ``LightningModule`` with the same
network, loss and optimizer that also calls ``self.log("train_loss", loss)`` every step, fitted by
``ember.Trainer(accelerator="gpu", devices=1, precision=..., max_epochs=1)``: row ``bare``
without progress bar, model summary, logger and checkpoints; row ``defaults`` with ember's defaults (in a temporary
``default_root_dir``: the end-of-epoch checkpoint of the weights and optimizer state is part of its time).

Every run starts from a fresh network on the CPU and trains ``--skip`` + ``--steps`` steps (one epoch); the clock
covers the last ``--steps`` of them: it starts before step ``--skip`` and stops after the last step, each time
after ``torch.cuda.synchronize()`` (on the Trainer's side a callback does this, in ``on_train_batch_start`` and
``on_train_end``), so moving the network to the GPU, the optimizer's first state and the allocator's first blocks
stay outside it, as do the Trainer's setup and teardown. Before the repeats each column runs once untimed
(cuDNN autotuning, lazy imports). Repeats alternate between the columns (the order reverses every repeat); the
figure is the median of the per-repeat ratios ember / hand-written (wall clock; the CPU clock is this process's
CPU time over the same window). Also reported: samples/s, and the peak GPU memory of each run
(``torch.cuda.max_memory_allocated()`` over the whole run, reset before it; medians over the timed repeats) and
its ratio. With ``pytorch_lightning`` importable a Lightning column is added (``--no-lightning`` leaves it out).
Target: 1.05.

    python benchmarks/gpu.py                                  # CUDA: resnet and transformer, 16-mixed and bf16-mixed,
                                                              # row bare, 5 + 100 steps a run, 5 repeats
    python benchmarks/gpu.py --rows bare,defaults --precision 16-mixed --steps 200 --repeats 7
    python benchmarks/gpu.py --models transformer --precision 32-true --workers 2
    python benchmarks/gpu.py --quick                          # CUDA smoke run: 5 + 10 steps, 1 repeat
    python benchmarks/gpu.py --device cpu --quick             # no GPU: tiny sizes on the CPU, to exercise the code
    python benchmarks/gpu.py --json gpu.json                  # also write the rows (written after every row)

Without CUDA, and without ``--device cpu``, it prints one line saying so and exits 0 without measuring anything.
On the CPU the sizes are small (resnet: batch 8 of 16x16 images; transformer: batch 2 of 32 tokens), one thread,
1 + 2 steps with ``--quick``, default precision ``bf16-mixed`` (``16-mixed`` needs a GPU): a smoke run that covers
the code paths (``run_all.py --quick`` and the test suite run it), not a GPU figure.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as h  # noqa: E402

import ember  # noqa: E402

PRECISIONS = ("16-mixed", "bf16-mixed", "32-true")
AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
VARIANTS = {"bare": True, "defaults": False}
POOL = 16  # distinct batches in the dataset; a run cycles through them
TARGET = 1.05


# --- the models -----------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet18(nn.Module):
    """The CIFAR variant of ResNet-18: 3x3 stem, no max-pool, stages of 64, 128, 256, 512 channels (``width``,
    ``2 * width``, ... with another ``width``: the CPU smoke run's tiny one)."""

    def __init__(self, classes: int = 10, channels_last: bool = False, width: int = 64) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        layers, cin = [], width
        for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(8 * width, classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class CausalLM(nn.Module):
    """Embeddings, a causal pre-norm ``nn.TransformerEncoder``, a final LayerNorm and an untied vocabulary head."""

    def __init__(self, vocab: int = 8192, seq: int = 256, d_model: int = 512, layers: int = 6, heads: int = 8) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.size(1)
        x = self.tok(tokens) + self.pos(torch.arange(n, device=tokens.device))
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device, dtype=x.dtype)
        return self.head(self.norm(self.encoder(x, mask=mask, is_causal=True)))


class Spec:
    """One benchmark model: its network, data, loss, optimizer and sizes (GPU sizes, CPU sizes)."""

    def __init__(self, name: str, gpu: dict, cpu: dict) -> None:
        self.name, self.sizes = name, {"cuda": gpu, "cpu": cpu}

    def size(self, device: str, batch: int = 0) -> dict:
        s = dict(self.sizes[device])
        if batch:
            s["batch"] = batch
        return s


class ResNetSpec(Spec):
    def describe(self, s: dict) -> str:
        return f"resnet: CIFAR ResNet-18 ({params(self.make_net(s, False)) / 1e6:.1f}M parameters, " \
               f"widths {s.get('width', 64)}-{8 * s.get('width', 64)}), " \
               f"batch {s['batch']} of 3x{s['image']}x{s['image']}, SGD momentum"

    def make_net(self, s: dict, cuda: bool) -> nn.Module:
        torch.manual_seed(0)
        return ResNet18(channels_last=cuda, width=s.get("width", 64))

    def make_data(self, s: dict, n: int) -> TensorDataset:
        g = torch.Generator().manual_seed(0)
        return TensorDataset(torch.randn(n, 3, s["image"], s["image"], generator=g),
                             torch.randint(0, 10, (n,), generator=g))

    @staticmethod
    def loss(net: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(net(x), y)

    @staticmethod
    def optimizer(parameters: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


class TransformerSpec(Spec):
    def describe(self, s: dict) -> str:
        return f"transformer: causal LM ({params(self.make_net(s, False)) / 1e6:.1f}M parameters, " \
               f"{s.get('layers', 6)} layers, d_model {s.get('d_model', 512)}, vocabulary {s['vocab']}), " \
               f"batch {s['batch']} of {s['seq']} tokens, AdamW"

    def make_net(self, s: dict, cuda: bool) -> nn.Module:
        torch.manual_seed(0)
        return CausalLM(vocab=s["vocab"], seq=s["seq"], d_model=s.get("d_model", 512), layers=s.get("layers", 6),
                        heads=s.get("heads", 8))

    def make_data(self, s: dict, n: int) -> TensorDataset:
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, s["vocab"], (n, s["seq"] + 1), generator=g)
        return TensorDataset(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())

    @staticmethod
    def loss(net: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        logits = net(x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    @staticmethod
    def optimizer(parameters: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameters, lr=3e-4, weight_decay=0.1)


MODELS = {
    "resnet": ResNetSpec("resnet", gpu=dict(batch=256, image=32), cpu=dict(batch=8, image=16)),
    "transformer": TransformerSpec("transformer", gpu=dict(batch=64, seq=256, vocab=8192),
                                   cpu=dict(batch=2, seq=32, vocab=8192)),
}
# --device cpu --quick: the same code paths on networks small enough that a smoke run takes a second or two
TINY_CPU = {"resnet": dict(width=8), "transformer": dict(vocab=256, d_model=32, layers=2, heads=2)}


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- the data -------------------------------------------------------------------------------------------------
class PoolBatches(Sampler):
    """``steps`` whole batches of indices (index tensors: each batch is one gather, a fresh tensor), cycling
    through ``pool`` distinct batches."""

    def __init__(self, pool: int, batch: int, steps: int) -> None:
        self.indices = [torch.arange(i * batch, (i + 1) * batch) for i in range(pool)]
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for k in range(self.steps):
            yield self.indices[k % len(self.indices)]


def make_loader(spec: Spec, s: dict, steps: int, cuda: bool, workers: int) -> DataLoader:
    pool = min(POOL, steps)
    return DataLoader(spec.make_data(s, pool * s["batch"]), batch_size=None,
                      sampler=PoolBatches(pool, s["batch"], steps), pin_memory=cuda, num_workers=workers,
                      persistent_workers=workers > 0)


# --- the two sides --------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """The clock of one run: started before step ``skip`` (0-based), stopped after the last step, each time after
    ``torch.cuda.synchronize()``; ``elapsed`` is (wall, CPU) seconds, what ``_harness.interleaved`` takes."""

    def __init__(self, device: torch.device, skip: int) -> None:
        self.device, self.skip = device, skip
        self.started: tuple = ()
        self.elapsed: tuple = ()

    def start(self) -> None:
        synchronize(self.device)
        self.started = (time.perf_counter(), time.process_time())

    def stop(self) -> tuple:
        synchronize(self.device)
        if not self.started:
            raise RuntimeError("the clock never started: fewer batches ran than --skip")
        self.elapsed = (time.perf_counter() - self.started[0], time.process_time() - self.started[1])
        return self.elapsed


def hand_written(spec: Spec, s: dict, device: torch.device, precision: str, loader: DataLoader, skip: int) -> tuple:
    net = spec.make_net(s, device.type == "cuda")  # on the CPU, as the LightningModule's is before fit
    dtype = AUTOCAST.get(precision)
    watch = Stopwatch(device, skip)
    model = net.to(device)
    opt = spec.optimizer(model.parameters())
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
    for i, (x, y) in enumerate(loader):
        if i == skip:
            watch.start()
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = spec.loss(model, (x, y))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
    return watch.stop()


def module_class(base: type) -> type:
    class GPUBench(base):  # type: ignore[misc, valid-type]
        def __init__(self, spec: Spec, net: nn.Module) -> None:
            super().__init__()
            self.bench_spec = spec  # a plain attribute: the model's loss and optimizer
            self.net = net

        def training_step(self, batch, batch_idx):
            loss = self.bench_spec.loss(self.net, batch)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return self.bench_spec.optimizer(self.parameters())

    return GPUBench


def clock_callback(framework: Any, watch: Stopwatch) -> Any:
    """A callback that starts ``watch`` before batch ``watch.skip`` and stops it in ``on_train_end`` (after the
    last step and the end of the epoch: with the default callbacks, after the epoch's checkpoint too)."""

    class Clock(framework.Callback):  # type: ignore[misc, name-defined]
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == watch.skip:
                watch.start()

        def on_train_end(self, trainer, pl_module):
            watch.stop()

    return Clock()


def with_trainer(framework: Any, spec: Spec, s: dict, device: torch.device, precision: str, bare: bool,
                 loader: DataLoader, skip: int) -> tuple:
    module = module_class(framework.LightningModule)(spec, spec.make_net(s, device.type == "cuda"))
    watch = Stopwatch(device, skip)
    with tempfile.TemporaryDirectory() as root, h.silenced():
        trainer = framework.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                                    precision=precision, max_epochs=1, max_steps=len(loader), default_root_dir=root,
                                    callbacks=[clock_callback(framework, watch)], **(h.BARE if bare else {}))
        trainer.fit(module, loader)
    if not watch.elapsed:
        raise RuntimeError(f"{framework.__name__}'s fit ended without on_train_end")
    return watch.elapsed


def with_peak_memory(run: Callable[[], tuple], device: torch.device, peaks: list) -> Callable[[], tuple]:
    """``run``, after a garbage collection, recording the peak GPU memory it allocated (MiB) into ``peaks``."""

    def measured() -> tuple:
        gc.collect()  # the previous run's network and optimizer state: freed before the next one starts
        if device.type != "cuda":
            return run()
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = run()
        peaks.append((torch.cuda.max_memory_allocated(device) - before) / 2**20)
        return out

    return measured


# --- output ---------------------------------------------------------------------------------------------------
def memory_and_throughput_table(results: dict) -> str:
    first = next(iter(results.values()))
    names = list(first["wall"]["per"])
    base = names[0]
    head = " | ".join(f"{n} samples/s" for n in names) + " | " + " | ".join(f"{n} peak MiB" for n in names) \
        + " | " + " | ".join(f"memory {n} / {base}" for n in names[1:])
    lines = [f"| row | batch | {head} |", "|---" * (2 + 3 * len(names) - 1) + "|"]
    for row, res in results.items():
        rate = " | ".join(f"{res['batch'] / res['wall']['per'][n]:.0f}" for n in names)
        peaks = res["peak_mib"]
        mem = " | ".join(f"{peaks[n]:.0f}" if n in peaks else "n/a" for n in names)
        ratios = " | ".join(f"**{res['memory_ratio'][n]:.3f}**" if n in res["memory_ratio"] else "n/a"
                            for n in names[1:])
        lines.append(f"| {row} | {res['batch']} | {rate} | {mem} | {ratios} |")
    return "\n".join(lines)


def json_rows(row: str, res: dict, device_name: str) -> list:
    out = h.summary_rows("gpu", {row: res}, TARGET)
    w = res["wall"]
    per = w["per"]["hand-written"]
    mem = res["memory_ratio"].get("ember")
    out[0]["detail"] = (f"hand-written {per * 1e3:.2f} ms/step, {res['batch'] / per:.0f} samples/s, batch "
                        f"{res['batch']}, {res['steps']} timed steps/run"
                        + (f"; peak memory ember / hand-written {mem:.3f} ({res['peak_mib']['ember']:.0f} / "
                           f"{res['peak_mib']['hand-written']:.0f} MiB)" if mem is not None else "")
                        + f"; {device_name}")
    out[0].update({
        "device": device_name, "batch": res["batch"], "steps": res["steps"],
        "ms_per_step": {n: v * 1e3 for n, v in w["per"].items()},
        "samples_per_s": {n: res["batch"] / v for n, v in w["per"].items()},
        "peak_mib": res["peak_mib"], "memory_ratio": res["memory_ratio"],
    })
    return out


# --- main -----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.add_arguments(parser, steps=100, repeats=5)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto/cuda: the GPU, or a one-line notice and exit 0 without one; cpu: small sizes")
    parser.add_argument("--models", default="resnet,transformer", help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--precision", default="",
                        help=f"comma-separated, from {list(PRECISIONS)} (default: 16-mixed,bf16-mixed on CUDA, "
                             "bf16-mixed on the CPU)")
    parser.add_argument("--rows", default="bare", help=f"comma-separated Trainer variants, from {list(VARIANTS)}")
    parser.add_argument("--batch", type=int, default=0, help="batch size of every model (default: each model's own)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads on the CPU (default 1)")
    parser.add_argument("--skip", type=int, default=-1,
                        help="untimed steps at the start of every run, before the clock starts (default 5 on CUDA, "
                             "1 on the CPU)")
    args = parser.parse_args(argv)

    cuda = args.device != "cpu"
    if cuda and not torch.cuda.is_available():
        print(f"gpu.py needs a CUDA GPU and torch.cuda.is_available() is False (torch {torch.__version__}): "
              "nothing measured; `--device cpu` exercises the code on the CPU.")
        h.write_json(args.json, [])
        return 0
    if args.quick:
        args.steps, args.repeats = (10, 1) if cuda else (2, 1)
    if args.skip < 0:
        args.skip = 5 if cuda else 1
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    device = torch.device("cuda" if cuda else "cpu")

    def listed(text: str, choices: Any, option: str) -> list:
        items = [t for t in text.split(",") if t]
        unknown = [t for t in items if t not in choices]
        if unknown or not items:
            what = f"unknown {unknown[0]!r}" if unknown else "empty"
            parser.error(f"{option}: {what}; choose from {', '.join(choices)}")
        return items

    models = listed(args.models, MODELS, "--models")
    variants = listed(args.rows, VARIANTS, "--rows")
    precisions = listed(args.precision or ("16-mixed,bf16-mixed" if cuda else "bf16-mixed"), PRECISIONS,
                        "--precision")
    if not cuda and "16-mixed" in precisions:
        parser.error("--precision 16-mixed needs a GPU (float16 autocast with a GradScaler); use bf16-mixed or "
                     "32-true with --device cpu")
    if cuda and not torch.cuda.is_bf16_supported() and "bf16-mixed" in precisions:
        print(f"{torch.cuda.get_device_name(device)} does not support bfloat16: no bf16-mixed rows")
        precisions.remove("bf16-mixed")

    if cuda:
        torch.backends.cudnn.benchmark = True
        device_name = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        torch.set_num_threads(args.threads)
        device_name = f"CPU, {args.threads} thread(s)"
    lightning = h.lightning_package(args.no_lightning)
    sizes = {m: MODELS[m].size(device.type, args.batch) for m in models}
    if args.quick and not cuda:
        sizes = {m: {**sizes[m], **TINY_CPU[m]} for m in models}
    print(f"gpu.py on {device_name}; torch {torch.__version__}, ember {ember.__version__}"
          + (f", pytorch_lightning {lightning.__version__}" if lightning else "")
          + f"; {args.steps} timed steps/run after {args.skip} untimed, {args.repeats} interleaved repeats, "
          f"DataLoader pin_memory={cuda}, {args.workers} worker(s); µs/step are medians, "
          "ratio = median of per-repeat ratios")
    for m in models:
        print("  " + MODELS[m].describe(sizes[m]))

    results, rows_out, failed = {}, [], []
    loaders = {m: make_loader(MODELS[m], sizes[m], args.skip + args.steps, cuda, args.workers) for m in models}

    def measure(row: str, spec: Spec, s: dict, loader: DataLoader, precision: str, bare: bool) -> dict:
        peaks: dict = {"hand-written": [], "ember": []}
        columns = {
            "hand-written": lambda: hand_written(spec, s, device, precision, loader, args.skip),
            "ember": lambda: with_trainer(ember, spec, s, device, precision, bare, loader, args.skip),
        }
        if lightning is not None:
            peaks["lightning"] = []
            columns["lightning"] = lambda: with_trainer(lightning, spec, s, device, precision, bare, loader, args.skip)
        columns = {n: with_peak_memory(run, device, peaks[n]) for n, run in columns.items()}
        res = h.interleaved(columns, args.repeats, per=args.steps)
        res["steps"], res["batch"] = args.steps, s["batch"]
        timed = {n: p[1:] for n, p in peaks.items() if len(p) > 1}  # the first run of each is the warm-up
        res["peak_mib"] = {n: statistics.median(p) for n, p in timed.items()}
        res["memory_ratio"] = {n: statistics.median([a / b for a, b in zip(p, timed["hand-written"])])
                               for n, p in timed.items() if n != "hand-written"} if timed else {}
        return res

    for variant in variants:
        for precision in precisions:
            for m in models:
                row = f"{m} {precision}" + ("" if variant == "bare" else f" {variant}")
                args_of_row = (row, MODELS[m], sizes[m], loaders[m], precision, VARIANTS[variant])
                try:
                    res = measure(*args_of_row)
                except Exception:  # one row's failure (out of memory, say) leaves the other rows to run
                    traceback.print_exc()
                    if lightning is None:
                        print(f"{row}: FAILED", flush=True)
                        failed.append(row)
                        continue
                    print(f"{row}: failed with a Lightning column; again without it, and no Lightning column from "
                          "here on", flush=True)
                    lightning = None
                    try:
                        res = measure(*args_of_row)
                    except Exception:
                        traceback.print_exc()
                        print(f"{row}: FAILED", flush=True)
                        failed.append(row)
                        continue
                results[row] = res
                parts = ", ".join(f"{n} {us * 1e6:.1f} µs/step" for n, us in res["wall"]["per"].items())
                memory = "".join(f"; peak memory {n} / hand-written {r:.3f}" for n, r in res["memory_ratio"].items())
                print(f"{row}: {parts}; ratio " + ", ".join(
                    f"{n} {r:.3f} (CPU {res['cpu']['ratio'][n]:.3f})" for n, r in res["wall"]["ratio"].items()
                    if n != "hand-written") + memory, flush=True)
                rows_out += json_rows(row, res, device_name)
                h.write_json(args.json, rows_out)  # after every row: a run cut short keeps what it measured
    if not results:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print()
    print(h.step_table(results))
    print()
    print(memory_and_throughput_table(results))
    if not cuda:
        print("\n(peak GPU memory: n/a on the CPU; CPU figures at small sizes are not GPU figures)")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
