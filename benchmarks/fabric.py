"""Per-step time of a training loop written with ember's Fabric against the same loop written by hand.

The loop is the same on both sides; only what Fabric asks the user to change differs:

    hand-written                                   Fabric
    (DDP: model = DistributedDataParallel(net),    fabric = Fabric(accelerator="cpu", devices=N, strategy=...)
     DistributedSampler(data, shuffle=True,        fabric.launch()
     seed=0) with set_epoch(epoch) every epoch)    model, opt = fabric.setup(net, opt)
                                                   loader = fabric.setup_dataloaders(loader)
    for x, y in loader:                            for x, y in loader:
        loss = cross_entropy(model(x), y)              loss = cross_entropy(model(x), y)
        opt.zero_grad()                                opt.zero_grad()
        loss.backward()                                fabric.backward(loss)
        opt.step()                                     opt.step()

Same network (seed 0), same data, same shuffling (the global generator seeded to 1 before the loop; under DDP a
``DistributedSampler`` with seed 0 on both sides: Fabric puts it into the user's ``DataLoader(shuffle=True)``),
SGD, one CPU thread per process, 32-bit. Every run's final weights are compared with the first hand-written run's
(``torch.equal``): the script fails if the two loops do not give the same numbers.

Rows: ``mlp`` (overhead.py's MLP 32-64-10, batch 16: the step is mostly Python) and ``cnn`` (a tiny CNN on 1x8x8
images, batch 32) in one process; ``mlp-ddp`` and ``cnn-ddp`` in two processes over gloo. The two-process rows run
in the same two processes for both sides: the first ``Fabric(accelerator="cpu", strategy="ddp", devices=2)
.launch()`` makes this process rank 0 and starts rank 1 by running this command again (as a Fabric user's script
is started); every later Fabric joins that process group, and the hand-written loop uses it too.

Each run is timed in two parts. **Set-up** (fixed cost per run): hand-written, building the loader (and the DDP
wrapper and sampler) and the optimizer; Fabric, the same plus ``Fabric(...)``, ``launch()`` (a no-op join after
the first), ``setup`` and ``setup_dataloaders``. **Loop**: every epoch, every step; per-step time = loop time /
steps. Runs alternate between the two sides (the order reverses every repeat, after one untimed warm-up run of
each); each table figure is the median over repeats, ratios are medians of per-repeat ratios (min-max). Under DDP
a run's time is the slower rank's. Target: Fabric / hand-written per-step time 1.02 or less (issue 16).

    python benchmarks/fabric.py                       # all rows (about 2 minutes on 2 cores)
    python benchmarks/fabric.py --rows mlp,mlp-ddp --repeats 15
    python benchmarks/fabric.py --quick               # a smoke run: tiny, 1 repeat, no warm-up; not a measurement
    python benchmarks/fabric.py --opcodes             # Python bytecodes per step of each side, and which functions
                                                      # differ (sys.settrace; rows mlp,mlp-ddp; deterministic)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ember.fabric import Fabric

EPOCHS = 2
# name: (model, processes, default steps per run per process)
ROWS = {
    "mlp": ("mlp", 1, 2000),
    "cnn": ("cnn", 1, 400),
    "mlp-ddp": ("mlp", 2, 1000),
    "cnn-ddp": ("cnn", 2, 300),
}
BATCH = {"mlp": 16, "cnn": 32}
TARGET = 1.02
IS_RANK = "LOCAL_RANK" in os.environ  # started as a DDP rank (rank 1 by Fabric.launch, or under torchrun)


def make_data(kind: str, n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g) if kind == "mlp" else torch.randn(n, 1, 8, 8, generator=g)
    return TensorDataset(x, torch.randint(0, 10, (n,), generator=g))


def make_net(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def _clocks() -> tuple:
    return time.perf_counter(), time.process_time()


def _since(start: tuple) -> tuple:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _weights(net: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def hand_written(kind: str, data: TensorDataset, world: int, epochs: int) -> dict:
    net = make_net(kind)
    start = _clocks()
    sampler: Optional[DistributedSampler] = None
    if world > 1:
        model: nn.Module = DistributedDataParallel(net)
        sampler = DistributedSampler(data, shuffle=True, seed=0)
        loader = DataLoader(data, batch_size=BATCH[kind], sampler=sampler)
    else:
        model = net
        loader = DataLoader(data, batch_size=BATCH[kind], shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    torch.manual_seed(1)
    setup = _since(start)
    start = _clocks()
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    loop = _since(start)
    return {"setup": setup, "loop": loop, "steps": epochs * len(loader), "weights": _weights(net)}


def with_fabric(kind: str, data: TensorDataset, world: int, epochs: int) -> dict:
    net = make_net(kind)
    start = _clocks()
    fabric = Fabric(accelerator="cpu", devices=world, **({"strategy": "ddp"} if world > 1 else {}))
    fabric.launch()
    loader = DataLoader(data, batch_size=BATCH[kind], shuffle=True)
    model, opt = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
    loader = fabric.setup_dataloaders(loader)
    torch.manual_seed(1)
    setup = _since(start)
    start = _clocks()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            fabric.backward(loss)
            opt.step()
    loop = _since(start)
    return {"setup": setup, "loop": loop, "steps": epochs * len(loader), "weights": _weights(net)}


COLUMNS: dict = {"hand-written": hand_written, "fabric": with_fabric}


def _slowest(run: dict, world: int) -> dict:
    """The run's times as the slower rank's (both clocks, both parts)."""
    if world == 1:
        return run
    t = torch.tensor([*run["setup"], *run["loop"]], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return dict(run, setup=(float(t[0]), float(t[1])), loop=(float(t[2]), float(t[3])))


def _all_ranks_agree(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def measure(row: str, steps: int, repeats: int, warmup: bool) -> dict:
    kind, world, _ = ROWS[row]
    batch = BATCH[kind]
    data = make_data(kind, world * batch * steps // EPOCHS)
    names = list(COLUMNS)
    runs: dict = {name: [] for name in names}
    reference: Optional[dict] = None
    mismatches, worst, compared = 0, 0.0, 0

    def run(name: str) -> dict:
        nonlocal reference, mismatches, worst, compared
        if world > 1:
            dist.barrier()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _slowest(COLUMNS[name](kind, data, world, EPOCHS), world)
        weights = out.pop("weights")
        if reference is None:  # the first run is a hand-written one: the reference
            reference = weights
        else:
            same = _all_ranks_agree(all(torch.equal(weights[k], reference[k]) for k in reference), world)
            compared += 1
            if not same:
                mismatches += 1
                worst = max(worst, _max_diff(weights, reference))
        return out

    if warmup:
        for name in names:
            run(name)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(run(name))
    return {"row": row, "world": world, "steps": runs[names[0]][0]["steps"], "runs": runs,
            "compared": compared + 1, "mismatches": mismatches, "max_diff": worst}


def summarise(res: dict) -> dict:
    """Medians per step (wall and CPU), medians and ranges of the per-repeat ratios, set-up medians."""
    runs, steps = res["runs"], res["steps"]
    out: dict = {"per_step": {}, "setup": {}, "ratio": {}, "spread": {}}
    for clock, i in (("wall", 0), ("cpu", 1)):
        per = {name: [r["loop"][i] / steps for r in rs] for name, rs in runs.items()}
        ratios = [f / h for f, h in zip(per["fabric"], per["hand-written"])]
        out["per_step"][clock] = {name: statistics.median(t) for name, t in per.items()}
        out["ratio"][clock] = statistics.median(ratios)
        out["spread"][clock] = (min(ratios), max(ratios))
        out["setup"][clock] = {name: statistics.median(r["setup"][i] for r in rs) for name, rs in runs.items()}
    hand = [r["loop"][0] / steps for r in runs["hand-written"]]
    out["noise"] = (max(hand) - min(hand)) / 2 / statistics.median(hand)
    return out


def report(res: dict, s: dict) -> None:
    w, c = s["per_step"]["wall"], s["setup"]["wall"]
    where = "1 process" if res["world"] == 1 else f"{res['world']} processes, gloo"
    print(f"{res['row']} ({where}): {res['steps']} steps/run per process; hand-written {w['hand-written'] * 1e6:.1f} "
          f"µs/step, fabric {w['fabric'] * 1e6:.1f} µs/step; ratio fabric / hand-written {s['ratio']['wall']:.3f} "
          f"({s['spread']['wall'][0]:.2f}-{s['spread']['wall'][1]:.2f}), CPU {s['ratio']['cpu']:.3f}; "
          f"set-up per run: hand-written {c['hand-written'] * 1e3:.2f} ms, fabric {c['fabric'] * 1e3:.2f} ms",
          flush=True)
    if res["mismatches"]:
        print(f"WRONG: {res['row']}: fabric's final weights differ from the hand-written loop's in "
              f"{res['mismatches']} of {res['compared']} runs (max abs difference {res['max_diff']:.3g})", flush=True)
    else:
        print(f"{res['row']}: final weights equal (torch.equal) in all {res['compared']} runs", flush=True)


def table(results: list) -> str:
    lines = ["| row | processes | steps/run | hand-written µs/step | fabric µs/step | fabric / hand-written (wall) "
             "| CPU | set-up ms/run hand-written | set-up ms/run fabric | weights equal "
             "| spread of hand-written runs |",
             "|---" * 11 + "|"]
    for res, s in results:
        w, c = s["per_step"]["wall"], s["setup"]["wall"]
        lo, hi = s["spread"]["wall"]
        equal = f"{res['compared']}/{res['compared']}" if not res["mismatches"] else \
            f"**NO** ({res['mismatches']} differ)"
        lines.append(f"| {res['row']} | {res['world']} | {res['steps']} | {w['hand-written'] * 1e6:.1f} | "
                     f"{w['fabric'] * 1e6:.1f} | **{s['ratio']['wall']:.3f}** ({lo:.2f}–{hi:.2f}) | "
                     f"{s['ratio']['cpu']:.3f} | {c['hand-written'] * 1e3:.2f} | {c['fabric'] * 1e3:.2f} | "
                     f"{equal} | ±{s['noise'] * 100:.0f}% |")
    return "\n".join(lines)


def json_rows(results: list) -> list:
    """The rows ``run_all.py`` prints."""
    rows = []
    for res, s in results:
        lo, hi = s["spread"]["wall"]
        rows.append({
            "benchmark": "fabric", "row": res["row"], "ratio": s["ratio"]["wall"],
            "figure": f"{s['ratio']['wall']:.3f} ({lo:.2f}–{hi:.2f}); CPU {s['ratio']['cpu']:.3f}"
                      + ("" if not res["mismatches"] else "; WEIGHTS DIFFER"),
            "lightning": "", "target": f"≤ {TARGET:.2f}",
            "detail": f"hand-written {s['per_step']['wall']['hand-written'] * 1e6:.0f} µs/step, {res['steps']} "
                      f"steps/run, {res['world']} process{'es' if res['world'] > 1 else ''}",
        })
    return rows


def count_opcodes(column: Callable, kind: str, world: int, steps: int) -> dict:
    """{(file, first line, function): bytecodes} of every Python frame in one one-epoch run of ``column``."""
    data = make_data(kind, world * BATCH[kind] * steps)
    counts: dict = {}

    def local(frame, event, arg):
        if event == "opcode":
            code = frame.f_code
            key = (code.co_filename, code.co_firstlineno, code.co_name)
            counts[key] = counts.get(key, 0) + 1
        return local

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        return local

    if world > 1:
        dist.barrier()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys.settrace(tracer)
        try:
            column(kind, data, world, 1)
        finally:
            sys.settrace(None)
    return counts


def opcodes(row: str) -> None:
    """Bytecodes per step, as (count at 600 steps - count at 100) / 500: all Python frames of each side (torch's
    ``nn.Module.__call__``, DDP's forward and the optimizer's Python included), then the functions whose count
    differs between the two sides. Unlike a timing this does not move between runs."""
    kind, world, _ = ROWS[row]
    per: dict = {}
    for name, column in COLUMNS.items():
        with warnings.catch_warnings():  # one untraced run first: what a first run imports is not the step's
            warnings.simplefilter("ignore")
            column(kind, make_data(kind, world * BATCH[kind] * 10), world, 1)
        short, long = count_opcodes(column, kind, world, 100), count_opcodes(column, kind, world, 600)
        per[name] = {k: (long.get(k, 0) - short.get(k, 0)) / 500 for k in set(short) | set(long)}
    if world > 1 and dist.get_rank() != 0:
        return
    total = {name: sum(p.values()) for name, p in per.items()}
    print(f"{row}: Python bytecodes per step ({world} process{'es' if world > 1 else ''}, 32-true; sys.settrace, "
          f"(600 - 100 steps) / 500): hand-written {total['hand-written']:.1f}, fabric {total['fabric']:.1f} "
          f"({total['fabric'] - total['hand-written']:+.1f})")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    keys = set(per["fabric"]) | set(per["hand-written"])
    diff = {k: per["fabric"].get(k, 0) - per["hand-written"].get(k, 0) for k in keys}
    ember = sum(n for k, n in per["fabric"].items() if "/ember/" in k[0])
    print(f"  in ember's functions: {ember:.1f}; the functions whose count differs (fabric - hand-written):")
    for (path, line, name), n in sorted(diff.items(), key=lambda kv: -abs(kv[1])):
        if abs(n) >= 0.5:
            shown = os.path.relpath(path, root) if path.startswith(root) else path.split("site-packages/")[-1]
            print(f"  {n:+7.1f}  {shown}:{line} {name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="", help=f"comma-separated, from {list(ROWS)} (default: all; with "
                        "--opcodes: mlp,mlp-ddp)")
    parser.add_argument("--steps", type=int, default=0, help="steps per run per process (default: per row)")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved repeats (default 11)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run, not a measurement: rows mlp and mlp-ddp, 20 steps, 1 repeat, no warm-up")
    parser.add_argument("--opcodes", action="store_true",
                        help="instead of timing, count the Python bytecodes each side runs per step (sys.settrace)")
    parser.add_argument("--json", metavar="PATH", help="also write the result rows to PATH (run_all.py reads them)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.rows, args.steps, args.repeats = "mlp,mlp-ddp", 20, 1
    args.rows = args.rows or ("mlp,mlp-ddp" if args.opcodes else ",".join(ROWS))
    rows = [r for r in args.rows.split(",") if r]
    for row in rows:
        if row not in ROWS:
            parser.error(f"--rows: unknown row {row!r}; choose from {', '.join(ROWS)}")
    results, launch_s = [], None
    for row in rows:
        world = ROWS[row][1]
        if world == 1 and IS_RANK:
            continue  # rank 1, started by Fabric.launch below: the one-process rows ran in rank 0 alone
        if world > 1 and not dist.is_initialized():
            start = time.perf_counter()  # once: start rank 1 (runs this script again) and join the process group
            Fabric(accelerator="cpu", strategy="ddp", devices=world).launch()
            launch_s = time.perf_counter() - start
        if args.opcodes:
            opcodes(row)
            continue
        res = measure(row, args.steps or ROWS[row][2], args.repeats, warmup=not args.quick)
        s = summarise(res)
        if not dist.is_initialized() or dist.get_rank() == 0:
            report(res, s)
        results.append((res, s))
    if args.opcodes or (dist.is_initialized() and dist.get_rank() != 0):
        return
    warm = " (no warm-up: --quick)" if args.quick else " after a warm-up run of each side"
    launched = "" if launch_s is None else (f"; Fabric.launch() starting rank 1 and joining the gloo group: "
                                            f"{launch_s:.2f} s (once per script, not in the rows)")
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs, 1 thread per process, {args.repeats} interleaved "
          f"repeats{warm}; µs/step and set-up are medians; ratio = median of per-repeat ratios (min–max){launched}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows(results), f, indent=1)
    if any(res["mismatches"] for res, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
