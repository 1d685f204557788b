"""Training speed of llm-emf against a plain PyTorch loop of the same model, measured in the same run.

    python -m bench.train.speed --dataset runs/fk --features runs/fk_features/features_title_minilm.parquet

The *plain* loop is what a straightforward implementation looks like: a map-style ``torch.utils.data``
Dataset that builds each user's windows in Python, the default DataLoader collate, fp32, and the loss as
``log_softmax`` over the full logits. The llm-emf loop builds whole batches with array operations
(llm_emf.model.batch), computes the full-softmax loss in cache-sized chunks with its gradient fused in
(llm_emf.model.fused_loss) and runs the matmuls in bf16 (autocast). Each step in between switches on one
thing, so the table shows where the speed comes from. All configurations train the same model (same
init) on the same seeded batches; the first batch of the plain builder is checked equal to the vectorised
one, and the fp32 fused loss equal to the unfused one, before anything is timed.

The 2 cores of a shared machine are noisy: configurations are timed in interleaved rounds (every round
runs ``--steps`` steps of each), and the median step time over all rounds is reported. Results go to
``<out>.json`` and ``<out>.md`` with the exact command, machine and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud

from bench import command_line
from llm_emf.config import Config
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset
from llm_emf.model import build_model, load_features_for
from llm_emf.model.batch import PAD, MixedBatch, Ragged, sequences_of
from llm_emf.training.loop import build_optimizer

# name -> (vectorised batches, fused loss, bf16, batch-size multiplier)
CONFIGS = {
    "plain": (False, False, False, 1),
    "vectorised batches": (True, False, False, 1),
    "+ fused chunked loss": (True, True, False, 1),
    "+ bf16 (llm-emf)": (True, True, True, 1),
    "+ 4x batch": (True, True, True, 4),
}


class PlainSequences(tud.Dataset):
    """One user's training windows, built with Python lists (the plain baseline).

    A user yields one window per ``max_len`` targets (newest first), as llm-emf's supervision windows do, so
    both loops train on the same rows; :func:`plain_collate` flattens the users' windows into one batch.
    """

    def __init__(self, seqs: Ragged, n_x: int, L: int):
        self.seqs, self.n_x, self.L = seqs, n_x, L

    def __len__(self) -> int:
        return len(self.seqs.starts)

    def __getitem__(self, i: int) -> list[dict]:
        full = self.seqs.values[self.seqs.starts[i]:self.seqs.ends[i]].tolist()
        return [self._window(full[:end]) for end in range(len(full), 1, -self.L)]

    def _window(self, full: list[int]) -> dict:
        inputs, targets = full[:-1], full[1:]
        L, pad = self.L, lambda xs: [PAD] * (self.L - len(xs)) + xs[-self.L:]  # noqa: E731
        out = {"items": pad(inputs), "targets": pad(targets)}
        window_start = len(inputs) - min(len(inputs), L)           # mixed column 0 = this input position
        for d in (0, 1):
            positions = [p for p, item in enumerate(inputs) if (item >= self.n_x) == bool(d)]
            kept = positions[-L:]
            out[f"seq{d}"] = pad([inputs[p] for p in positions])
            col_of = {p: L - len(kept) + k for k, p in enumerate(kept)}    # input position -> seq[d] column
            last, latest = [], PAD
            for p in range(len(inputs)):
                if p in col_of:
                    latest = col_of[p]
                if p >= window_start:
                    last.append(latest)
            out[f"last{d}"] = [PAD] * (L - len(last)) + last
            time_ = [PAD] * L
            for p, c in col_of.items():
                if p >= window_start:
                    time_[c] = p - window_start + (L - min(len(inputs), L))
            out[f"time{d}"] = time_
        return {k: torch.tensor(v, dtype=torch.int64) for k, v in out.items()}


def plain_collate(users: list[list[dict]]) -> dict:
    return tud.default_collate([window for windows in users for window in windows])


def as_mixed_batch(b: dict) -> MixedBatch:
    return MixedBatch(b["items"], (b["seq0"], b["seq1"]), (b["last0"], b["last1"]), (b["time0"], b["time1"]),
                      b["targets"])


def check_equivalence(model, dataset: PlainSequences, seqs: Ragged, rows: np.ndarray) -> None:
    plain = as_mixed_batch(plain_collate([dataset[int(i)] for i in rows]))
    fast = model.build_training_batch(seqs.take(rows))
    for name in ("items", "targets"):
        assert torch.equal(getattr(plain, name), getattr(fast, name)), name
    for name in ("seq", "last", "time"):
        for d in (0, 1):
            assert torch.equal(getattr(plain, name)[d], getattr(fast, name)[d]), f"{name}[{d}]"
    losses = []
    model.eval()                                        # no dropout: both losses see the same network
    for fused in (False, True):
        model.cfg.fused_loss = fused
        with torch.no_grad():
            losses.append(float(model(fast)[0]))
    assert abs(losses[0] - losses[1]) <= 1e-4 * abs(losses[0]), losses


def plot(doc: dict, path: str) -> None:
    """Bars of sequences/s (wall) and CPU speed-up per configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    names = [f"{r['config']}\n(batch {r['batch_size']})" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, title in ((axes[0], "sequences_per_s", "training sequences/s (wall)"),
                           (axes[1], "cpu_speedup_vs_plain", "speed-up vs plain loop (CPU time)")):
        bars = ax.bar(range(len(rows)), [r[key] for r in rows], color="tab:blue")
        ax.bar_label(bars, fmt="%.2f" if "speedup" in key else "%.0f", fontsize=8)
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{doc['dataset']}, {doc['model']}, {doc['machine']['torch_threads']} torch thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", help="prepared dataset folder (required unless --replot)")
    p.add_argument("--features", default="", help="feature table; without it the ID-only model is timed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="steps per configuration per round")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 gives the "
                   "steadiest CPU times on a machine shared with other jobs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/train_speed")
    p.add_argument("--replot", action="store_true", help="redraw <out>.png from <out>.json only")
    args = p.parse_args(argv)
    if args.replot:
        plot(json.loads(Path(args.out + ".json").read_text()), args.out + ".png")
        return 0
    if not args.dataset:
        p.error("--dataset is required")

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = Dataset.read(args.dataset)
    cfg = Config()
    cfg.data.dataset, cfg.model.hidden_size, cfg.seed = args.dataset, args.hidden, args.seed
    if args.features:
        cfg.model.use_text, cfg.model.features = True, args.features
    torch.manual_seed(args.seed)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, load_features_for(cfg.model, dataset.items),
                        trained_items(dataset))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    seqs = sequences_of(dataset.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))
    plain_data = PlainSequences(seqs, dataset.n_x, cfg.model.max_len)
    order = np.random.default_rng(args.seed).permutation(len(seqs.starts))
    check_equivalence(model, plain_data, seqs, order[:64])

    loaders, cursors = {}, {}
    times, cpu_times = {name: [] for name in CONFIGS}, {name: [] for name in CONFIGS}
    optimizers = {}
    for name, (vectorised, _, _, mult) in CONFIGS.items():
        B = args.batch_size * mult
        if not vectorised:     # the plain loop: DataLoader over the seeded order, default collate
            loaders[name] = iter(tud.DataLoader(plain_data, batch_size=B, sampler=order.tolist(), num_workers=0,
                                               collate_fn=plain_collate))
        cursors[name] = 0
    load_before = os.getloadavg()[0]
    for rnd in range(args.rounds + 1):                 # round 0 warms up every configuration, not timed
        for name, (vectorised, fused, bf16, mult) in CONFIGS.items():
            B = args.batch_size * mult
            model.load_state_dict(init)
            model.cfg.fused_loss = fused
            opt, _ = optimizers.setdefault(name, build_optimizer(model, cfg))
            model.train()
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                if vectorised:
                    rows = order[cursors[name]:cursors[name] + B]
                    cursors[name] = (cursors[name] + B) % (len(order) - B)
                    batch = model.build_training_batch(seqs.take(rows))
                else:
                    batch = as_mixed_batch(next(loaders[name]))
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss, _ = model(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if rnd > 0:
                    times[name].append((time.perf_counter() - t0) / B)
                    cpu_times[name].append((time.process_time() - c0) / B)
        print(f"round {rnd}/{args.rounds} done", flush=True)

    base = float(np.median(times["plain"]))
    rows = []
    for name, (vectorised, fused, bf16, mult) in CONFIGS.items():
        per_seq = float(np.median(times[name]))
        cpu_per_seq = float(np.median(cpu_times[name]))
        rows.append({"config": name, "batch_size": args.batch_size * mult, "vectorised": vectorised,
                     "cpu_s_per_1k_sequences": 1000 * cpu_per_seq,
                     "cpu_speedup_vs_plain": float(np.median(cpu_times["plain"])) / cpu_per_seq,
                     "fused_loss": fused, "bf16": bf16, "sequences_per_s": 1.0 / per_seq,
                     "speedup_vs_plain": base / per_seq, "epoch_minutes": len(order) * per_seq / 60,
                     "timed_steps": len(times[name])})
    out = {"command": command_line(__spec__.name, sys.argv[1:]), "dataset": dataset.meta.name,
           "train_sequences": len(order), "n_items": [dataset.n_x, dataset.n_y],
           "model": "ID + text (early fusion)" if args.features else "ID only", "hidden_size": args.hidden,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                       "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "load_average_1min": [load_before, os.getloadavg()[0]]},
           "seed": args.seed, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# Training speed: {dataset.meta.name}, {out['model']}, q={args.hidden}", "",
             f"Command: `{out['command']}`", "",
             f"Machine: {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), torch {torch.__version__}, "
             f"load average "
             f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}. Median over {args.rounds} interleaved rounds of "
             f"{args.steps} steps per configuration; {len(order):,} training sequences per epoch.", "",
             "Wall time is what a user waits; CPU time (all threads of this process) is less sensitive to other "
             "jobs on a shared machine.", "",
             "| configuration | batch | sequences/s (wall) | vs plain | CPU s per 1k sequences | vs plain (CPU) | "
             "epoch (min, wall) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['batch_size']} | {r['sequences_per_s']:.0f} | {r['speedup_vs_plain']:.2f}x | "
              f"{r['cpu_s_per_1k_sequences']:.2f} | {r['cpu_speedup_vs_plain']:.2f}x | {r['epoch_minutes']:.1f} |"
              for r in rows]
    lines += ["", f"![{Path(args.out).name}.png]({Path(args.out).name}.png)"]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    plot(out, args.out + ".png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
