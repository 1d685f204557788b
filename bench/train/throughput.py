"""Training throughput (sequences/s) and full-ranking evaluation time, ID-only vs multimodal, on this machine.

    python -m bench.train.throughput --dataset runs/dataset --steps 20 --batch-size 256

Without ``--features`` the multimodal variants use a synthetic feature table (random L2-normalised
512-d text and image vectors for every item): throughput does not depend on the vectors' content, and
the table is written to the temp folder (seeded, so a rerun writes the same one). Results go to
``bench/results/train_throughput.json`` with the exact command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench import command_line
from llm_emf.config import Config
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset
from llm_emf.evaluation import evaluate
from llm_emf.features.schema import FEATURE_SCHEMA
from llm_emf.model import build_model, load_features_for
from llm_emf.model.batch import sequences_of
from llm_emf.serving.scoring import make_scorer
from llm_emf.training.loop import build_optimizer

VARIANTS = {
    "id_only": dict(),
    "early_text_image": dict(use_text=True, use_image=True),
    "late_text_image": dict(use_text=True, use_image=True, fusion="late"),
    "sasrec": dict(name="sasrec"),
}


def synthetic_features(dataset: Dataset, path: Path, dim: int = 512, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = dataset.n_items

    def unit(shape):
        v = rng.standard_normal(shape).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def lists(m):
        return pa.FixedSizeListArray.from_arrays(pa.array(m.ravel()), dim).cast(pa.list_(pa.float32()))

    table = pa.table({
        "item_id": dataset.items.column("item_id"), "domain": dataset.items.column("domain"),
        "text_embedding": lists(unit((n, dim))), "image_embedding": lists(unit((n, dim))),
        "has_text": pa.array(np.ones(n, bool)), "has_image": pa.array(np.ones(n, bool)),
        "text_truncated": pa.array(np.zeros(n, bool)), "text_model": pa.array(["synthetic"] * n),
        "image_model": pa.array(["synthetic"] * n), "prompt_version": pa.array(["none"] * n),
        "content_hash": pa.array([f"synthetic-{i}" for i in range(n)]),
    }, schema=FEATURE_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def bench_variant(name: str, overrides: dict, dataset: Dataset, args, features_path: str) -> dict:
    cfg = Config()
    cfg.data.dataset = args.dataset
    cfg.model.hidden_size, cfg.model.n_blocks, cfg.model.max_len = args.hidden, args.blocks, args.max_len
    cfg.model.features = features_path
    for k, v in overrides.items():
        setattr(cfg.model, k, v)
    cfg.train.batch_size, cfg.train.bf16 = args.batch_size, args.bf16
    torch.manual_seed(0)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, load_features_for(cfg.model, dataset.items),
                        trained_items(dataset))
    opt, sched = build_optimizer(model, cfg)
    seqs = sequences_of(dataset.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))
    order = np.random.default_rng(0).permutation(len(seqs.starts))
    model.train()
    timings = []
    for step in range(args.warmup + args.steps):
        rows = order[(step * args.batch_size) % len(order):][: args.batch_size]
        t0 = time.perf_counter()
        batch = model.build_training_batch(seqs.take(rows))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        loss = loss.detach()
        opt.step()
        sched.step()
        if step >= args.warmup:
            timings.append(time.perf_counter() - t0)
    seq_per_s = args.batch_size * len(timings) / sum(timings)
    cfg.train.eval_batch_size = args.eval_batch_size
    t0 = time.perf_counter()
    result = evaluate(make_scorer(model, args.eval_batch_size), dataset, "valid", cfg, protocols=("full",))
    eval_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{name:<18} {seq_per_s:>9.1f} seq/s  full-ranking valid ({sum(result.counts.values())} cases): "
          f"{eval_s:6.2f} s  params {n_params / 1e6:.2f} M  last loss {loss.item():.3f}")
    return {"train_sequences_per_s": seq_per_s, "train_step_s_median": float(np.median(timings)),
            "valid_full_ranking_s": eval_s, "valid_cases": result.counts, "trainable_params": n_params,
            "model": {k: getattr(cfg.model, k) for k in ("name", "fusion", "use_id", "use_text", "use_image",
                                                        "hidden_size", "n_blocks", "max_len", "cross_attention")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="prepared dataset folder")
    p.add_argument("--features", default="", help="feature table; default: a synthetic one (see module doc)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--max-len", type=int, default=15)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", default="bench/results/train_throughput.json")
    args = p.parse_args(argv)
    dataset = Dataset.read(args.dataset)
    load_before = os.getloadavg()[0]     # other jobs on a shared machine skew the numbers: record the load
    # ~150 MB for Food-Kitchen: kept out of the repository, in the temp folder
    features = args.features or str(synthetic_features(dataset, Path(tempfile.gettempdir()) / "llm_emf_bench" /
                                                       f"{dataset.meta.fingerprint}_features.parquet"))
    results = {name: bench_variant(name, VARIANTS[name], dataset, args, features)
               for name in args.variants.split(",")}
    out = {"command": command_line(__spec__.name, sys.argv[1:]), "dataset": dataset.meta.name,
           "n_items": [dataset.n_x, dataset.n_y], "features": "synthetic" if not args.features else args.features,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "load_average_1min": [load_before, os.getloadavg()[0]]},
           "settings": {k: v for k, v in vars(args).items() if k not in ("dataset", "out")}, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
