"""How training time and memory grow with the number of users: the real dataset, and 10x its users.

    python -m bench.train.user_scaling --dataset runs/fk --factors 1,10

For each factor k a dataset with k copies of every training user (fresh user ids; the same items,
validation and test) is written to a temp folder, and a fresh process (so peak memory is its own) reads
it, builds every batch of one epoch with the vectorised builder, and times ``--steps`` training steps of
the ID-only model (fused loss, bf16, as llm-emf trains). The epoch time is projected from the measured
step rate: a step's cost does not depend on how many users there are, only the number of steps does,
which this checks by measuring both. Results: ``<out>.json`` / ``<out>.md`` with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench import command_line


def tiled_dataset(source: str, factor: int, folder: Path) -> Path:
    from llm_emf.data.schema import Dataset

    ds = Dataset.read(source)
    if factor == 1:
        return Path(source)
    train = ds.split("train")
    copies = [train.set_column(train.schema.get_field_index("user_id"), "user_id",
                               pc.binary_join_element_wise(train.column("user_id"), pa.scalar(f"#{k}"), ""))
              for k in range(1, factor)]
    sequences = pa.concat_tables([ds.sequences, *copies], promote_options="permissive")
    Dataset(ds.items, sequences, ds.meta, ds.quarantine).write(folder)
    return folder


def measure(dataset_dir: str, steps: int, batch_size: int, hidden: int) -> dict:
    import torch

    from llm_emf.config import Config
    from llm_emf.data.schema import Dataset
    from llm_emf.model import build_model
    from llm_emf.model.batch import sequences_of
    from llm_emf.training.loop import build_optimizer

    t0 = time.perf_counter()
    ds = Dataset.read(dataset_dir)
    seqs = sequences_of(ds.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))
    load_s = time.perf_counter() - t0
    cfg = Config()
    cfg.model.hidden_size = hidden
    model = build_model(cfg.model, ds.n_x, ds.n_y, None)
    order = np.random.default_rng(0).permutation(len(seqs.starts))
    t0 = time.perf_counter()
    for start in range(0, len(order), batch_size):                      # every batch of one epoch
        model.build_training_batch(seqs.take(order[start:start + batch_size]))
    build_s = time.perf_counter() - t0
    opt, _ = build_optimizer(model, cfg)
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        batch = model.build_training_batch(seqs.take(order[(step * batch_size) % len(order):][:batch_size]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:                                                          # step 0 warms up
            times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    n_steps = -(-len(order) // batch_size)
    return {"train_sequences": len(order), "interactions": int(seqs.lengths.sum()), "load_s": load_s,
            "epoch_batch_building_s": build_s, "step_s_median": step_s, "sequences_per_s": batch_size / step_s,
            "projected_epoch_min": (n_steps * step_s) / 60, "steps_per_epoch": n_steps,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--factors", default="1,10")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--out", default="bench/results/train_user_scaling")
    p.add_argument("--one", help=argparse.SUPPRESS)                       # internal: measure one dataset
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.batch_size, args.hidden)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="llm_emf_users_") as tmp:
        for k in (int(f) for f in args.factors.split(",")):
            folder = tiled_dataset(args.dataset, k, Path(tmp) / f"x{k}")
            out = subprocess.run([sys.executable, "-m", __spec__.name, "--dataset", args.dataset, "--one", str(folder),
                                  "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                  "--hidden", str(args.hidden)], check=True, capture_output=True, text=True)
            rows.append({"factor": k, **json.loads(out.stdout.strip().splitlines()[-1])})
            print(rows[-1], flush=True)
    result = {"command": command_line(__spec__.name, sys.argv[1:]), "dataset": args.dataset,
              "batch_size": args.batch_size, "hidden_size": args.hidden, "model": "ID only, fused loss, bf16",
              "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Training vs number of users ({args.dataset})", "", f"Command: `{result['command']}`", "",
             f"{os.cpu_count()} CPUs; ID-only model, q={args.hidden}, batch {args.batch_size}, fused loss, bf16; "
             f"step rate is the median of {args.steps} steps, the epoch time is projected from it.", "",
             "| users | train sequences | interactions | load (s) | build all batches (s) | sequences/s | "
             "epoch (min, projected) | peak RSS (MiB) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['factor']}x | {r['train_sequences']:,} | {r['interactions']:,} | {r['load_s']:.1f} | "
              f"{r['epoch_batch_building_s']:.1f} | {r['sequences_per_s']:.0f} | {r['projected_epoch_min']:.1f} | "
              f"{r['peak_rss_mib']:.0f} |" for r in rows]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
