"""Full-ranking evaluation and ``recommend --all`` top-10 at a million items per domain: the dense scores of
before against chunked scoring with a running top-k, time and peak memory.

    python -m bench.serve.million_items

Synthetic catalog: ``--items`` items per domain (default 1,000,000, two domains) and ``--users`` users
(default 10,000) in the test split, each with 2 to max_len + 1 random items of both domains, the last one
the target. Model: the ID-only LLM-EMF (early fusion) with random weights, ``model.hidden_size=64``,
``model.max_len=15``, built directly (no training; every item counts as trained).

Tasks, each path in its own process (so its peak memory is its own), ``--threads`` torch threads:

- ``eval``: the full protocol for every user, ranked among all items of its target's domain, seen items
  excluded, pessimistic ties, eval batches of ``--eval-batch-size`` (``train.eval_batch_size``, 512).
  *chunked*: ``evaluate(make_scorer(model), protocols=("full",))``, the library's path (``item_scores`` and
  ``chunked_target_ranks``). *dense*: the evaluator's full-protocol step as it was before chunking (git
  4c53bf2, kept below as the reference): ``model.score`` for the batch, a masked copy, ``target_ranks``.
- ``recommend``: the top-10 of both domains for every user, history = the whole sequence, seen items
  excluded, batches of ``--rec-batch-size`` (``recommend --all``'s default, 256): what the Ray Data actor
  (``Recommender``) does per batch, without Ray. *chunked*: ``top_k`` (the library's). *dense*: ``top_k``
  as it was before (``model.score``, seen items at -inf, ``torch.topk``).

The two paths' ranks and lists are compared (the lists where no tie meets the cut: the dense ``torch.topk``
leaves the order of equal scores open). Peak memory is the process's VmHWM, read from /proc while it runs,
and "setup" its RSS once the catalog and model are built; a process whose RSS passes the cap
(``--max-rss-gib``, or what the machine has available at its start minus 1 GiB: the machine is shared) or
runs past ``--time-limit`` is stopped and recorded as such. ``--budgets`` adds chunked runs of both tasks on
the first ``--sweep-users`` users at other ``SCORE_CHUNK_BYTES`` values (the chunk-size rule's budget). The
load average before and after each run and the process's CPU seconds are recorded: other people's work
shares the 2 cores. Results: ``<out>.json`` and ``<out>.md`` with the command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import command_line
from bench.watch import available_gib, run_watched, status_kib

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


# -- the synthetic catalog and model (built in each child) ---------------------------------------------------

def synthetic_dataset(n_per_domain: int, n_users: int, max_len: int, seed: int):
    """A Dataset with ``n_users`` test sequences over 2 x ``n_per_domain`` items (uniformly drawn)."""
    import pyarrow as pa

    from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta

    rng = np.random.default_rng(seed)
    n = 2 * n_per_domain
    lengths = rng.integers(2, max_len + 2, n_users)                      # history of 1..max_len, then a target
    values = rng.integers(0, n, int(lengths.sum())).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    sequences = pa.table({
        "user_id": pa.array([f"u{u}" for u in range(n_users)]),
        "split": pa.array(["test"] * n_users),
        "items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        "timestamps": pa.nulls(n_users, pa.list_(pa.int64())),
    }).cast(SEQUENCE_SCHEMA)
    items = pa.table({"item_index": pa.array(np.arange(n, dtype=np.int32)),
                      "item_id": pa.array(np.char.add("i", np.arange(n).astype(str))),
                      "domain": pa.array(np.repeat(np.array([0, 1], dtype=np.int8), n_per_domain)),
                      "title": pa.nulls(n, pa.string()), "image_uri": pa.nulls(n, pa.string()),
                      "attributes": pa.nulls(n, pa.string())}).cast(ITEM_SCHEMA)
    meta = DatasetMeta(name=f"synthetic-{n_per_domain}", domains=("X", "Y"), n_items=(n_per_domain, n_per_domain),
                       fingerprint=f"synthetic-{n_per_domain}-{n_users}-{seed}")  # skips hashing 2M rows
    return Dataset(items, sequences, meta)


def synthetic_model(n_per_domain: int, hidden: int, max_len: int, seed: int):
    import torch

    from llm_emf.config import Config
    from llm_emf.model import build_model

    torch.manual_seed(seed)
    cfg = Config()
    cfg.model.hidden_size, cfg.model.max_len = hidden, max_len
    return build_model(cfg.model, n_per_domain, n_per_domain).eval(), cfg


# -- the pre-chunking paths (git 4c53bf2), the reference ----------------------------------------------------

def dense_full_ranks(model, dataset, cfg) -> dict[int, np.ndarray]:
    """Full-protocol ranks per domain as the evaluator computed them before chunking: the dense (B, n_D) scores
    of each batch, a masked copy (seen items -inf, never the target), ``target_ranks``."""
    import pyarrow as pa
    import torch

    from llm_emf.data.schema import domain_of, domain_slice
    from llm_emf.evaluation.evaluator import _flat_items, split_targets
    from llm_emf.evaluation.metrics import target_ranks
    from llm_emf.model.batch import eval_inputs

    def mask_seen(scores, rows, target_local, lo):
        lengths, flat = _flat_items(rows)
        starts = np.cumsum(lengths) - lengths
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        is_last = np.arange(len(flat)) == np.repeat(starts + lengths - 1, lengths)
        local = flat - lo
        keep = ~is_last & (local >= 0) & (local < scores.shape[1])
        keep &= local != target_local.cpu().numpy()[row_of]
        scores = scores.clone()
        scores[torch.as_tensor(row_of[keep]), torch.as_tensor(local[keep])] = -math.inf
        return scores

    rows = dataset.split("test")
    targets = split_targets(rows, "test", dataset.n_items)
    case_domain = domain_of(targets, dataset.n_x)
    out = {}
    for domain in (0, 1):
        lo = domain_slice(dataset.n_x, dataset.n_y, domain).start
        cases = np.flatnonzero(case_domain == domain)
        found = []
        for start in range(0, len(cases), cfg.train.eval_batch_size):
            batch = cases[start:start + cfg.train.eval_batch_size]
            batch_rows = rows.take(pa.array(batch))
            with torch.inference_mode():
                scores = model.score(model.build_eval_batch(eval_inputs(batch_rows)), domain).float()
                target_local = torch.as_tensor(targets[batch] - lo)
                found.append(target_ranks(mask_seen(scores, batch_rows, target_local, lo), target_local,
                                          cfg.eval.ties))
        out[domain] = torch.cat(found).numpy()
    return out


def dense_top_k(model, inputs, domain: int, k: int):
    """``top_k`` as it was before chunking: dense scores, seen items at -inf, ``torch.topk``."""
    import torch

    lo = model.domain_slice(domain).start
    with torch.no_grad():
        scores = model.score(model.build_eval_batch(inputs), domain).float()
    rows_in_order = inputs.take(np.arange(len(inputs.starts)))
    rows = np.repeat(np.arange(len(inputs.starts)), rows_in_order.lengths)
    local = rows_in_order.values.astype(np.int64) - lo
    keep = (local >= 0) & (local < scores.shape[1])
    scores[torch.as_tensor(rows[keep]), torch.as_tensor(local[keep])] = -torch.inf
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    indices = top.indices.numpy().astype(np.int64) + lo
    indices[~torch.isfinite(top.values).numpy()] = -1
    return indices, top.values.numpy()


# -- one measurement (child process) ------------------------------------------------------------------------

def measure(task: str, path: str, args) -> dict:
    import torch

    import llm_emf.model.item_scores as item_scores

    torch.set_num_threads(args.threads)
    if args.budget_mib:
        item_scores.SCORE_CHUNK_BYTES = int(args.budget_mib * MIB)
    dataset = synthetic_dataset(args.items, args.users, args.max_len, args.seed)
    model, cfg = synthetic_model(args.items, args.hidden, args.max_len, args.seed)
    cfg.data.dataset = str(Path(args.scratch) / "dataset")
    cfg.eval.exclude_seen, cfg.eval.ties, cfg.train.eval_batch_size = True, "pessimistic", args.eval_batch_size
    setup_kib = status_kib("VmRSS")
    cpu0, t0 = time.process_time(), time.perf_counter()
    if task == "eval":
        if path == "dense":
            ranks = dense_full_ranks(model, dataset, cfg)
        else:
            from llm_emf.evaluation import evaluate
            from llm_emf.serving.scoring import make_scorer

            result = evaluate(make_scorer(model, args.eval_batch_size), dataset, "test", cfg, protocols=("full",))
            ranks = {d: result.ranks["full"][name] for d, name in enumerate(dataset.meta.domains)}
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        np.savez(Path(args.scratch) / f"{task}-{path}.npz", **{str(d): r for d, r in ranks.items()})
        mrr = float(np.mean(1.0 / np.concatenate([ranks[0], ranks[1]])))
        extra = {"cases": int(sum(len(r) for r in ranks.values())), "full_mrr": mrr}
    else:
        from llm_emf.model.batch import Ragged
        from llm_emf.serving.scoring import top_k

        users = dataset.split("test")
        lists = {0: [], 1: [], "v0": [], "v1": []}
        for lo in range(0, users.num_rows, args.rec_batch_size):
            inputs = Ragged.from_arrow(users.slice(lo, args.rec_batch_size).column("items"))
            for d in (0, 1):
                idx, val = dense_top_k(model, inputs, d, args.k) if path == "dense" else \
                    top_k({0: model, 1: model}, inputs, d, args.k, exclude_seen=True)
                lists[d].append(idx)
                lists[f"v{d}"].append(val)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        np.savez(Path(args.scratch) / f"{task}-{path}.npz", **{str(key): np.concatenate(v) for key, v in lists.items()})
        extra = {"lists": 2 * users.num_rows}
    return {"status": "ok", "seconds": seconds, "cpu_s": cpu, "setup_rss_mib": setup_kib / 1024,
            "peak_rss_mib_self": status_kib("VmHWM") / 1024,
            "chunk_items": item_scores.chunk_size(args.eval_batch_size if task == "eval" else args.rec_batch_size,
                                                  args.items) if path == "chunked" else args.items, **extra}


# -- the driver -----------------------------------------------------------------------------------------

def run_one(args, task: str, path: str, users: int, budget_mib: float | None, scratch: str) -> dict:
    """Measure in a child process, watching its memory and time; a stopped or failed child is recorded."""
    cmd = [sys.executable, "-m", __spec__.name, "--one", f"{task}:{path}", "--items", str(args.items),
           "--users", str(users), "--hidden", str(args.hidden), "--max-len", str(args.max_len), "-k", str(args.k),
           "--eval-batch-size", str(args.eval_batch_size), "--rec-batch-size", str(args.rec_batch_size),
           "--threads", str(args.threads), "--seed", str(args.seed), "--scratch", scratch] \
        + (["--budget-mib", str(budget_mib)] if budget_mib else [])
    load_before = os.getloadavg()
    available = available_gib()
    cap = min(args.max_rss_gib, available - 1.0)
    child = run_watched(cmd, cap, args.time_limit, poll_s=0.1, cwd=REPO)
    out, err, cpu = child.out, child.err, child.cpu_s
    status = f"stopped: {child.stopped}" if child.stopped else None
    row = {"task": task, "path": path, "users": users, "budget_mib": budget_mib, "peak_rss_mib": child.peak_kib / 1024,
           "rss_cap_gib": round(cap, 2), "available_gib_at_start": round(available, 2),
           "wall_s_with_setup": child.wall_s,
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    if status is None and (child.returncode != 0 or not lines):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        status = f"failed (exit {child.returncode}: {last})"
    if status is None:
        row.update(lines[-1])
        row["peak_rss_mib"] = max(row["peak_rss_mib"], row.pop("peak_rss_mib_self"))
    else:
        row.update(status=status, cpu_s_when_stopped=cpu)
    print(json.dumps(row), flush=True)
    return row


def compare(scratch: Path, task: str) -> str | None:
    """How the dense and chunked outputs of ``task`` agree (None when one is missing)."""
    files = [scratch / f"{task}-{p}.npz" for p in ("dense", "chunked")]
    if not all(f.exists() for f in files):
        return None
    dense, chunked = (np.load(f) for f in files)
    if task == "eval":
        same = sum(int((dense[d] == chunked[d]).sum()) for d in ("0", "1"))
        total = sum(len(dense[d]) for d in ("0", "1"))
        return f"{same:,} of {total:,} ranks equal"
    same = total = 0
    for d in ("0", "1"):
        values = dense[f"v{d}"]
        # rows where no two of the k best scores tie (torch.topk orders equal scores arbitrarily)
        distinct = np.array([len(np.unique(v)) == len(v) for v in values])
        same += int((dense[d][distinct] == chunked[d][distinct]).all(axis=1).sum())
        total += int(distinct.sum())
    return f"{same:,} of {total:,} lists equal (lists without tied scores)"


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def _fmt_row(r: dict) -> str:
    load = f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f}"
    path = r["path"] + (f", {r['budget_mib']:g} MiB" if r.get("budget_mib") else "")
    if r.get("status") != "ok":
        return (f"| {r['task']} | {path} | {r['status']} | | {r.get('cpu_s_when_stopped', 0):.0f} | "
                f"{r['peak_rss_mib'] / 1024:.2f} | | {load} |")
    count, unit = (r["cases"], "users") if r["task"] == "eval" else (r["lists"], "lists")
    return (f"| {r['task']} | {path} | {r['seconds']:.1f} ({count / r['seconds']:,.0f} {unit}/s) "
            f"| {r['chunk_items']:,} | {r['cpu_s']:.0f} | {r['peak_rss_mib'] / 1024:.2f} | "
            f"{(r['peak_rss_mib'] - r['setup_rss_mib']) / 1024:.2f} | {load} |")


def report(result: dict) -> str:
    a = result["args"]
    head = ["| task | path | seconds | items per chunk | CPU s | peak RSS (GiB) | peak - setup (GiB) | load 1-min "
            "before / after |", "|---|---|---|---|---|---|---|---|"]
    md = [f"# Full ranking and top-{a['k']} at {a['items']:,} items per domain, {a['users']:,} users", "",
          f"Command: `{result['command']}`", "",
          f"Date: {result['date']}. Machine: {result['machine']['cpu']}, {result['machine']['cpus']} cores, "
          f"{result['machine']['memory_gib']} GiB RAM, torch {result['machine']['torch']}, {a['threads']} torch "
          f"threads. Load average (1, 5, 15 min) at the start: {result['load_average_start']}, at the end: "
          f"{result['load_average_end']} (other people's work shared the cores: wall times are pessimistic; "
          "CPU s is the process's own CPU time).", "",
          f"ID-only LLM-EMF with random weights, hidden {a['hidden']}, max_len {a['max_len']}; 2 x {a['items']:,} "
          f"items, {a['users']:,} test users. eval: full protocol, seen items excluded, pessimistic ties, batches "
          f"of {a['eval_batch_size']}. recommend: top-{a['k']} of both domains per user (the `recommend --all` "
          f"actor's work without Ray), seen items excluded, batches of {a['rec_batch_size']}. dense: the code "
          "before chunking (B x n_D scores per batch); chunked: the library's path (default chunk budget "
          f"{result['default_budget_mib']:g} MiB of fp32 scores). Peak RSS is the process's (VmHWM); setup "
          "(catalog, model, ~0.5 GiB of ID vectors) is included, the last column leaves it out.", "",
          *head]
    md += [_fmt_row(r) for r in result["runs"]]
    md += ["", f"Agreement: eval: {result['agreement'].get('eval') or 'not compared'}; recommend: "
           f"{result['agreement'].get('recommend') or 'not compared'}.", ""]
    by = {(r["task"], r["path"]): r for r in result["runs"] if r.get("status") == "ok"}
    for task in ("eval", "recommend"):
        dense, chunked = by.get((task, "dense")), by.get((task, "chunked"))
        if dense and chunked:
            grow = lambda r: (r["peak_rss_mib"] - r["setup_rss_mib"]) / 1024  # noqa: E731
            md.append(f"- {task}: chunked scoring took {grow(chunked):.2f} GiB over setup against {grow(dense):.2f} "
                      f"GiB dense ({grow(dense) / max(grow(chunked), 1e-9):.0f}x less) and "
                      f"{chunked['cpu_s'] / dense['cpu_s']:.2f}x the CPU time.")
    md.append("")
    if result["sweep"]:
        md += [f"## Chunk budget (`SCORE_CHUNK_BYTES`), chunked path, first {a['sweep_users']:,} users", "", *head]
        md += [_fmt_row(r) for r in result["sweep"]]
        md.append("")
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000, help="items per domain")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--max-len", type=int, default=15)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--rec-batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="eval,recommend")
    p.add_argument("--paths", default="dense,chunked")
    p.add_argument("--budgets", default="", help="comma-separated MiB values for the chunk-budget sweep")
    p.add_argument("--sweep-users", type=int, default=2000)
    p.add_argument("--max-rss-gib", type=float, default=12.0)
    p.add_argument("--time-limit", type=float, default=3600.0, help="seconds per run")
    p.add_argument("--out", default="bench/results/million_items")
    p.add_argument("--report-only", metavar="JSON", help="rewrite the Markdown of an earlier result, measuring nothing")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--budget-mib", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        task, path = args.one.split(":")
        print(json.dumps(measure(task, path, args)), flush=True)
        return 0
    if args.report_only:
        source = Path(args.report_only)
        md = report(json.loads(source.read_text(encoding="utf-8")))
        source.with_suffix(".md").write_text(md, encoding="utf-8")
        print(md)
        return 0

    import llm_emf.model.item_scores as item_scores

    command = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    start_load = [round(x, 2) for x in os.getloadavg()]
    runs, sweep, agreement = [], [], {}
    with tempfile.TemporaryDirectory(prefix="llm_emf_million_") as scratch:
        for task in args.tasks.split(","):
            for path in args.paths.split(","):
                runs.append(run_one(args, task, path, args.users, None, scratch))
            agreement[task] = compare(Path(scratch), task)
        with tempfile.TemporaryDirectory(prefix="llm_emf_million_sweep_") as sweep_scratch:
            for budget in [float(b) for b in args.budgets.split(",") if b]:
                for task in args.tasks.split(","):
                    sweep.append(run_one(args, task, "chunked", args.sweep_users, budget, sweep_scratch))
    result = {"command": command, "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine(), "load_average_start": start_load,
              "load_average_end": [round(x, 2) for x in os.getloadavg()], "args": vars(args),
              "default_budget_mib": item_scores.SCORE_CHUNK_BYTES / MIB, "runs": runs, "agreement": agreement,
              "sweep": sweep}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = report(result)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
