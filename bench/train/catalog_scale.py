"""Training cost against catalog size: the full softmax against the sampled one (``train.loss``).

    python -m bench.train.catalog_scale --sizes 1000,3000,10000,30000,100000,300000,3000000 --steps 3 --warmup 1

For each catalog size (items per domain, two domains) a synthetic training set is generated: sequences of
Food-Kitchen's shape (2 + a geometric number of further items, mean ~7.9; the next item switches domain with
probability 0.3) whose items follow a Zipf popularity skew (P(rank r) ~ 1 / (r + 10)). The model is the
ID-only LLM-EMF at ``model.hidden_size=64`` and the default batch (``train.batch_size``, 256), otherwise the
config's defaults (fp32, fused full-softmax loss) in eager mode; every item counts as trained, so the
cold-item rule (``model.unseen_id``) plays no part. For each loss, a fresh process (so peak memory is its own)
with ``--threads`` torch threads (1) builds the model, runs ``--warmup`` untimed steps, then times ``--steps``
steps of what ``train_epoch`` does per batch: build the batch, forward, backward, optimizer step, each phase
timed apart in CPU seconds of the process, and each step in wall seconds. The sampled loss draws
``--negatives`` items per domain and batch (``train.sampled_negatives``) uniformly (``train.sampled_alpha=0``).

The machine these run on is shared, so the rate compared is sequences per CPU second (with one thread: the
rate on a free core); wall-clock rates and the load average before and after each measurement are recorded
beside it. A measurement that runs past ``--time-limit`` wall seconds, or whose resident memory passes the
smaller of ``--max-rss-gib`` and the memory available at its start less 1 GiB (so the benchmark cannot push
the machine into the OOM killer), is stopped and recorded as such, with the CPU time of the steps it
finished. Peak memory is the process's peak RSS (VmHWM), read from /proc while it runs. The crossover is the
smallest measured size from which the sampled loss is more than 10% faster there and at every larger size.

``--append`` measures some (size, loss) pairs again, or new ones, and keeps the other rows of ``<out>.json``
(each row records its steps, warm-up and time limit; the result lists every command); ``--report-only``
rewrites ``<out>.md`` from the JSON, ``--note`` replacing its note. Results: ``<out>.json``, ``<out>.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import command_line
from bench.watch import available_gib, run_watched, total_gib

REPO = Path(__file__).resolve().parents[2]
SWITCH = 0.3          # probability that the next item is in the other domain (Food-Kitchen-like interleaving)
ZIPF_OFFSET = 10      # P(rank r) ~ 1 / (r + 10): a long tail with a flattened head


def synthetic_sequences(n_per_domain: int, n_sequences: int, seed: int):
    """A compact ``Ragged`` of ``n_sequences`` interleaved two-domain sequences, Zipf-popular items."""
    from llm_emf.model.batch import Ragged

    rng = np.random.default_rng(seed)
    lengths = 2 + np.minimum(rng.geometric(1 / 6.9, n_sequences) - 1, 58)     # >= 2 items, mean ~7.9
    total = int(lengths.sum())
    cdf = np.cumsum(1.0 / (np.arange(n_per_domain) + ZIPF_OFFSET))
    ranks = np.minimum(np.searchsorted(cdf, rng.random(total) * cdf[-1]), n_per_domain - 1)
    popularity_order = rng.permutation(n_per_domain)                           # popular items not the low ids
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first = np.zeros(total, dtype=bool)
    first[starts] = True
    # domain of each interaction: a Markov chain per sequence (switch with probability SWITCH)
    flips = np.cumsum((rng.random(total) < SWITCH) & ~first)
    seg = np.cumsum(first) - 1                                                  # sequence of each interaction
    domain = (rng.integers(0, 2, n_sequences)[seg] + flips - flips[starts][seg]) % 2
    values = popularity_order[ranks] + domain * n_per_domain
    return Ragged(values.astype(np.int64), starts.astype(np.int64), (starts + lengths).astype(np.int64))


def measure(size: int, loss: str, steps: int, warmup: int, batch_size: int, hidden: int, negatives: int,
            seed: int, bf16: bool) -> dict:
    """One (catalog size, loss) measurement in this process; returns its timings."""
    import torch

    from llm_emf.config import Config
    from llm_emf.model import build_model
    from llm_emf.model.sampled_loss import NegativeSampler, target_counts
    from llm_emf.training.loop import build_optimizer

    t0 = time.perf_counter()
    seqs = synthetic_sequences(size, batch_size * (warmup + steps), seed)
    cfg = Config()
    cfg.model.hidden_size, cfg.train.batch_size = hidden, batch_size
    torch.manual_seed(seed)
    model = build_model(cfg.model, size, size, None).train()
    if loss == "sampled":
        model.negatives = NegativeSampler(size, size, target_counts(seqs, 2 * size), negatives, 0.0, seed=seed)
    optimizer, scheduler = build_optimizer(model, cfg)
    setup_s = time.perf_counter() - t0
    phases = {"batch": [], "forward": [], "backward": [], "optimizer": []}      # CPU seconds of this process
    walls, positions = [], []
    mark = lambda: (time.perf_counter(), time.process_time())                  # noqa: E731
    for step in range(warmup + steps):
        rows = np.arange(step * batch_size, (step + 1) * batch_size)
        marks = [mark()]
        batch = model.build_training_batch(seqs.take(rows))                    # as train_epoch does per batch
        marks.append(mark())
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
            value, n = model(batch)
        marks.append(mark())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        marks.append(mark())
        optimizer.step()
        scheduler.step()
        marks.append(mark())
        wall, cpu = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
        if step >= warmup:
            for name, a, b in zip(phases, marks, marks[1:]):
                phases[name].append(b[1] - a[1])
            walls.append(wall)
            positions.append(int(n))
        print(json.dumps({"step": step, "s": wall, "cpu_s": cpu, "loss": float(value)}), flush=True)
    cpu_s = float(np.median([sum(p) for p in zip(*phases.values())]))
    wall_s = float(np.median(walls))
    return {"size": size, "loss": loss, "status": "ok", "setup_s": setup_s, "step_s_median": wall_s,
            "sequences_per_s": batch_size / wall_s, "step_cpu_s_median": cpu_s,
            "sequences_per_cpu_s": batch_size / cpu_s, "positions_per_step": float(np.mean(positions)),
            "phase_cpu_s_median": {k: float(np.median(v)) for k, v in phases.items()},
            "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}


def run_one(args, size: int, loss: str) -> dict:
    """Measure in a child process, watching its memory and time; a stopped child is recorded, not raised.

    The memory cap is ``--max-rss-gib`` or, if less, what the machine has available at the start minus 1 GiB
    (other people's work runs beside it: the benchmark must not push it into the kernel's OOM killer)."""
    cmd = [sys.executable, "-m", __spec__.name, "--one", f"{size}:{loss}", "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--hidden", str(args.hidden),
           "--negatives", str(args.negatives), "--seed", str(args.seed), "--threads", str(args.threads)] \
        + (["--bf16"] if args.bf16 else [])
    load_before = os.getloadavg()[0]
    available = available_gib()
    cap = min(args.max_rss_gib, available - 1.0)
    child = run_watched(cmd, cap, args.time_limit, poll_s=0.2, cwd=REPO)
    out, err, cpu, status, wall, peak = child.out, child.err, child.cpu_s, child.stopped, child.wall_s, child.peak_kib
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    steps_done = [x for x in lines if "step" in x]
    row = {"size": size, "loss": loss, "warmup": args.warmup, "steps": args.steps, "time_limit_s": args.time_limit,
           "wall_s": wall, "peak_rss_mib": peak / 1024, "rss_cap_gib": cap,
           "available_gib_at_start": available, "cpu_s_when_stopped": cpu if status else None,
           "load_average_1min": [load_before, os.getloadavg()[0]], "steps_done": len(steps_done),
           "step_s_seen": [x["s"] for x in steps_done], "step_cpu_s_seen": [x["cpu_s"] for x in steps_done]}
    if status is None and child.returncode != 0:
        status = f"failed (exit {child.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''})"
    if status is None:
        result = [x for x in lines if "status" in x][-1]
        row.update(result)
    else:
        row["status"] = status
    return row


def crossover(rows: list[dict], sizes: list[int], margin: float = 0.1) -> dict:
    """The smallest measured size from which the sampled loss trains more than ``margin`` more sequences per CPU
    second than the full one, there and at every larger size (a stopped full run counts as slower): below
    ``margin`` the two are within what reruns of this benchmark differ by under load."""
    by = {(r["size"], r["loss"]): r for r in rows}
    ratios = {}
    for size in sizes:
        full, sampled = by.get((size, "full")), by.get((size, "sampled"))
        if not full or not sampled or sampled["status"] != "ok":
            continue
        ratios[size] = (sampled["sequences_per_cpu_s"] / full["sequences_per_cpu_s"]
                        if full["status"] == "ok" else None)                 # None: full stopped
    found = None
    for size in sorted(ratios, reverse=True):
        if ratios[size] is not None and ratios[size] <= 1 + margin:
            break
        found = size
    return {"size": found, "margin": margin, "speedup_by_size": {str(k): v for k, v in ratios.items()}}


def report(doc: dict) -> str:
    a = doc["args"]
    loads = [x for r in doc["results"] for x in r["load_average_1min"]]
    lines = ["# Training cost against catalog size: full vs sampled softmax", "",
             f"Command: `{doc['command']}`", "",
             f"Written {doc['date']}, commit {doc['commit']}; {doc['machine']['cpus']} CPUs "
             f"({doc['machine']['processor']}), {a['threads']} torch thread(s) per measurement, on a machine "
             f"shared with other work: load average (1 min) {min(loads):.1f} to {max(loads):.1f} over the "
             "measurements (each row's before -> after below).", "",
             f"Synthetic catalogs (items per domain, two domains), Zipf item popularity, Food-Kitchen-shaped "
             f"sequences; ID-only LLM-EMF, q={a['hidden']}, batch {a['batch_size']}, "
             f"{'bf16' if a['bf16'] else 'fp32'}; sampled: {a['negatives']} uniform negatives per domain and "
             f"batch plus the batch's targets. Medians of the measured steps after the warm-up ones (per row). "
             "Under load the wall clock measures the neighbours as much as the step, so the rate compared is "
             "per CPU second of the measuring process (batch / CPU s per step: with one thread, the rate on a "
             "free core); the wall-clock rate is shown beside it. A run stopped at its wall-clock limit or its "
             "memory cap (the smaller of --max-rss-gib and the memory available at its start less 1 GiB) is "
             "recorded as such, with the CPU time of the steps it finished.", "",
             "| items per domain | loss | steps (warm-up), limit | status | sequences per CPU s | CPU s per step: "
             "batch / forward / backward / optimizer | sequences/s (wall) | peak RSS (MiB) | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        load = f"{r['load_average_1min'][0]:.1f} -> {r['load_average_1min'][1]:.1f}"
        if r["status"] == "ok":
            ph = r["phase_cpu_s_median"]
            phases = " / ".join(f"{ph[k]:.2f}" for k in ("batch", "forward", "backward", "optimizer"))
            cells = [r["status"], f"{r['sequences_per_cpu_s']:.1f}", f"{r['step_cpu_s_median']:.2f}: {phases}",
                     f"{r['sequences_per_s']:.1f}"]
        else:                                       # stopped: how far it got
            seen, used = r["step_cpu_s_seen"], r.get("cpu_s_when_stopped")
            done = f"; {len(seen)} step(s) done, the last {seen[-1]:.1f} CPU s" if seen else "; no step done"
            if used:
                done += f" ({used:.0f} CPU s used, setup included)"
            cells = [r["status"] + done, f"~{a['batch_size'] / seen[-1]:.2f}" if seen else "", "", ""]
        plan = f"{r.get('steps', a['steps'])} ({r.get('warmup', a['warmup'])}), {r.get('time_limit_s', a['time_limit']):g} s"
        lines.append(f"| {r['size']:,} | {r['loss']} | {plan} | " + " | ".join(cells)
                     + f" | {r['peak_rss_mib']:,.0f} | {load} |")
    c = doc["crossover"]
    speedups = ", ".join(f"{int(k):,}: " + (f"{v:.1f}x" if v is not None else "full stopped")
                         for k, v in c["speedup_by_size"].items())
    lines += ["", f"Sampled against full, sequences per CPU second: {speedups}.", "",
              f"Crossover (the smallest measured size from which sampled trains more than {c['margin']:.0%} "
              "more sequences per CPU second, there and at every larger size): "
              + (f"{c['size']:,} items per domain." if c["size"] else "none measured.")]
    if doc.get("note"):
        lines += ["", doc["note"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="30000,300000,3000000", help="items per domain, comma-separated")
    p.add_argument("--losses", default="full,sampled")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--negatives", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (default: fp32, the config's default)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each measurement")
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds per measurement")
    p.add_argument("--max-rss-gib", type=float, default=11.0, help="stop a measurement above this RSS")
    p.add_argument("--note", default="", help="a paragraph added to the report")
    p.add_argument("--report-only", action="store_true", help="rewrite <out>.md from <out>.json (with --note: "
                   "that note replaces the stored one)")
    p.add_argument("--append", action="store_true", help="keep the rows of an existing <out>.json that this "
                   "invocation does not measure again (its command is kept beside this one)")
    p.add_argument("--out", default="bench/results/catalog_scale")
    p.add_argument("--one", help=argparse.SUPPRESS)                       # internal: SIZE:LOSS in this process
    args = p.parse_args(argv)
    if args.one:
        import torch
        torch.set_num_threads(args.threads)
        size, loss = args.one.split(":")
        print(json.dumps(measure(int(size), loss, args.steps, args.warmup, args.batch_size, args.hidden,
                                 args.negatives, args.seed, args.bf16)), flush=True)
        return 0
    if args.report_only:
        doc = json.loads(Path(args.out + ".json").read_text())
        doc["note"] = args.note or doc.get("note", "")
        doc["crossover"] = crossover(doc["results"], sorted({r["size"] for r in doc["results"]}))
        Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
        Path(args.out + ".md").write_text(report(doc))
        return 0
    import torch

    sizes = [int(s) for s in args.sizes.split(",")]
    losses = args.losses.split(",")
    command = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    kept, commands = [], [command]
    if args.append and Path(args.out + ".json").is_file():
        old = json.loads(Path(args.out + ".json").read_text())
        kept = [r for r in old["results"] if not (r["size"] in sizes and r["loss"] in losses)]
        for r in kept:                              # the protocol each kept row ran under
            r.setdefault("warmup", old["args"]["warmup"])
            r.setdefault("steps", old["args"]["steps"])
            r.setdefault("time_limit_s", old["args"]["time_limit"])
        commands = old.get("commands", [old["command"]]) + [command]
    load_before = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    rows = []
    for size in sizes:
        for loss in losses:
            rows.append(run_one(args, size, loss))
            print({k: v for k, v in rows[-1].items() if k != "step_s_seen"}, flush=True)
            results = sorted(kept + rows, key=lambda r: (r["size"], r["loss"]))
            doc = {"command": "; ".join(commands), "commands": commands,
                   "date": _dt.datetime.now().isoformat(timespec="minutes"), "commit": commit.stdout.strip(),
                   "args": vars(args) | {"one": None},
                   "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                               "processor": platform.processor() or platform.machine(),
                               "platform": platform.platform(), "memory_gib": total_gib()},
                   "load_average_1min": [load_before, os.getloadavg()[0]], "results": results,
                   "crossover": crossover(results, sorted({r["size"] for r in results})), "note": args.note}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)         # after every row: partial results
            Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
            Path(args.out + ".md").write_text(report(doc))
    print(report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
