"""Batch recommendations: ``llm-emf recommend --all`` (Ray Data, actor pool) against a plain loop, same run.

    python -m bench.serve.batch_recommend --run runs/quality_conv/quality-text-1567af4e --split train

The plain loop loads the run once in this process and scores the split's users in batches of
``--batch-size`` with the same ``top_k`` the job's actors call; the job is ``recommend_all`` on a local Ray
(``--concurrency`` actors, one CPU each). Both produce top-k of both domains for every user; their item
lists are checked equal (scores to float tolerance) before the times are recorded in ``<out>.json/.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bench import command_line
from llm_emf.checkpoints import load_checkpoint_config
from llm_emf.data.schema import Dataset
from llm_emf.model.batch import Ragged
from llm_emf.serving import find_checkpoint, load_models, top_k
from llm_emf.serving.batch import Recommender, recommend_all, users_of


def plain_loop(run: str, dataset: Dataset, split: str, k: int, batch_size: int) -> tuple[float, dict]:
    start = time.perf_counter()
    _, dataset, models = load_models(run, dataset)
    users = users_of(dataset, split)
    lists = {}
    for lo in range(0, users.num_rows, batch_size):
        chunk = users.slice(lo, batch_size)
        inputs = Ragged.from_arrow(chunk.column("items"))
        for d, name in enumerate(dataset.meta.domains):
            indices, _ = top_k(models, inputs, d, k, exclude_seen=True)
            for user, idx in zip(chunk.column("user_id").to_pylist(), indices):
                lists[f"{name}:{user}"] = idx[idx >= 0].tolist()
    return time.perf_counter() - start, lists


def dataset_folder(run: str) -> str:
    return load_checkpoint_config(find_checkpoint(run)).data.dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="trained run folder")
    p.add_argument("--split", default="test", help="whose users (train has the most)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=1, help="actors of the Ray Data job")
    p.add_argument("--worker-niceness", type=int, default=0, help="niceness of Ray's worker processes (Ray's own "
                   "default is 15, which starves the job's actors on a machine busy with other work; 0 makes both "
                   "paths compete for the CPU like the plain loop does)")
    p.add_argument("--out", default="bench/results/batch_recommend")
    args = p.parse_args(argv)

    torch.set_num_threads(1)            # one core per scorer in both: the job's actors get one CPU each
    dataset = Dataset.read(dataset_folder(args.run))
    loop_s, expected = plain_loop(args.run, dataset, args.split, args.k, args.batch_size)
    users = users_of(dataset, args.split)
    n_users = users.num_rows
    # The job's actor code alone, in this process: what the Ray Data job adds on top is the difference.
    actor = Recommender(args.run, str(Path(dataset_folder(args.run))), None, args.k, True)
    start = time.perf_counter()
    for lo in range(0, n_users, args.batch_size):
        actor(users.slice(lo, args.batch_size))
    actor_s = time.perf_counter() - start

    import ray
    os.environ["RAY_worker_niceness"] = str(args.worker_niceness)     # read by the raylet ray.init starts
    ray.init(num_cpus=max(2, args.concurrency), include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="llm_emf_bench_recs_"))
    try:
        start = time.perf_counter()
        summary = recommend_all(args.run, tmp / "recs.parquet", args.split, args.k, batch_size=args.batch_size,
                                concurrency=args.concurrency)
        job_s = time.perf_counter() - start
        table = pq.read_table(tmp / "recs.parquet").to_pydict()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    got = dict(zip(table["request"], table["item_indices"]))
    same = sum(got.get(r) == items for r, items in expected.items())
    result = {
        "command": command_line(__spec__.name, sys.argv[1:] if argv is None else argv),
        "run": args.run, "dataset": dataset.meta.name, "split": args.split, "users": n_users, "k": args.k,
        "batch_size": args.batch_size, "concurrency": args.concurrency, "worker_niceness": args.worker_niceness,
        "plain_loop": {"seconds": round(loop_s, 2), "users_per_s": round(n_users / loop_s, 1)},
        "actor_calls_in_process": {"seconds": round(actor_s, 2), "users_per_s": round(n_users / actor_s, 1)},
        "ray_data_job": {"seconds": round(job_s, 2), "users_per_s": round(n_users / job_s, 1),
                         "inside_job_users_per_s": round(summary.items_per_s, 1)},
        "identical_lists": f"{same} of {len(expected)}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "ray": ray.__version__, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = [f"# Batch recommendations: {n_users:,} {args.split} users of {dataset.meta.name}, top-{args.k} of both "
          "domains", "", f"Command: `{result['command']}`", "",
          "| path | seconds | users/s |", "|---|---|---|",
          f"| plain loop (load once, batches of {args.batch_size}) | {loop_s:.1f} | {n_users / loop_s:.1f} |",
          f"| the job's actor code called in-process (model loaded, no Ray) | {actor_s:.1f} | "
          f"{n_users / actor_s:.1f} |",
          f"| `recommend --all` (Ray Data, {args.concurrency} actor(s) at niceness {args.worker_niceness}, start-up "
          f"included) | {job_s:.1f} | "
          f"{n_users / job_s:.1f} |", "",
          f"Lists identical to the plain loop's: {result['identical_lists']}. Machine: {result['machine']}.", ""]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
