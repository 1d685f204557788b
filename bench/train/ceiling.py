"""Training near the machine's limit: peak matmul rate, the FLOP bound of a training step, the fraction reached.

    python -m bench.train.ceiling --dataset runs/fk --features runs/fk/features.parquet --label before

The model is the quality benchmark's ``text`` variant (early fusion of ID and text, ``VARIANTS`` in
``bench.quality.run``) with ``model.hidden_size=64 train.batch_size=256 train.bf16=true``; ``key=value``
arguments override the config further. A multiply-add counts 2 FLOPs; a matmul whose operands both need
gradients costs 3x its forward (forward, input gradient, weight gradient). Per training sequence:

    F_loss   = 6 q r sum_D t_D n_D        full-softmax logits over each domain's n_D items: forward, dstates,
                                          ditems; t_D = training targets in domain D per sequence, r = 2 with
                                          the shared term (model.loss_weight > 0) else 1
    F_blocks = 3 w L [3 n_b (12 q^2 + 4 L q) + 2 c (8 q^2 + 4 L q)]
                                          w = supervision windows per sequence of L = max_len columns; 3
                                          causal encoders of n_b blocks (projections 8 q^2, FFN 4 q^2, scores
                                          and weighted sum 4 L q per position), c = 1 with cross-attention
    F_items  = sum_m 4 (n_X + n_Y) e_m q / B
                                          each content adaptor maps the whole catalog once per batch (forward
                                          and weight gradient; the frozen e_m-d features need none), over B

and the bound is ``peak / (F_loss + F_blocks + F_items)`` sequences/s, with the peak of a 2048x2048 matmul in
the training precision. Elementwise work (softmax, LayerNorm, dropout, Adam) is not in the bound; the profile
shows it. torch.utils.flop_counter checks the formula on one real batch. Peak matmuls and training steps (the
loop's own ``train_epoch`` over one batch) alternate in rounds so both see the same load; medians are reported.
``train.compile`` applies as in the loop (``train.compile=true`` for a compiled row): the untimed warm-up steps
compile (one graph per encoder class and side of B x L = 4,096 rows, llm_emf/training/compiling.py; a batch of
a side not yet seen compiles in a timed step, which the median absorbs), and their time less as many timed steps
is the row's compile time. The FLOP check runs eagerly (torch's flop counter does not see inside compiled code).
``<out>.json`` keeps one run per ``--label`` (a rerun replaces it); ``<out>.md`` shows them all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from bench import command_line
from bench.quality.run import VARIANTS
from llm_emf.config import load_config
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset
from llm_emf.model import build_model, load_features_for
from llm_emf.model.batch import Ragged, sequences_of
from llm_emf.precision import native_bf16, use_bf16
from llm_emf.training.compiling import StepCompiler
from llm_emf.training.loop import build_optimizer, shard_indices, train_epoch

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = ["model.hidden_size=64", "train.batch_size=256", "train.bf16=true"]
# profiler region -> (category, its term of the FLOP formula)
CATEGORIES = {"ceiling::loss": ("full-softmax loss (logits, softmax, gradients)", "loss"),
              "ceiling::items": ("item vectors (ID rows, content adaptor over the catalog)", "items"),
              "ceiling::net": ("attention & transformer blocks", "blocks"),
              "ceiling::batching": ("batching (llm_emf.model.batch)", None)}
OPTIMIZER, OTHER = "optimizer step (Adam, zero_grad)", "other (Python, scheduler, autograd bookkeeping)"
MATMULS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"}
MODEL_KEYS = ("hidden_size", "n_blocks", "n_heads", "max_len", "use_id", "use_text", "use_image", "cross_attention",
              "loss_weight", "fused_loss", "adaptor", "unseen_id", "features")


def quality_variant(name: str, features: str) -> list[str]:
    """A variant's overrides from the quality benchmark (``VARIANTS`` in bench/quality/run.py)."""
    return [o.replace("{features}", features) for o in VARIANTS[name]]


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> list[float]:
    """GFLOP/s of ``repeats`` n x n matmuls (one untimed first)."""
    a, b, c = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype), torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=c)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        out.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return out


def sequence_stats(seqs: Ragged, n_x: int, L: int) -> dict:
    """Per sequence: training targets in each domain and supervision windows (llm_emf.model.batch)."""
    n, lengths = len(seqs.starts), seqs.lengths
    in_y = (seqs.values >= n_x).astype(np.int64)
    running = np.concatenate([[0], np.cumsum(in_y)])
    # Y items of every row, less each row's first item (never a target)
    y_targets = int((running[seqs.ends] - running[seqs.starts]).sum() - in_y[seqs.starts[lengths > 0]].sum())
    targets = int(np.maximum(lengths - 1, 0).sum())
    windows = np.maximum((lengths - 2) // L + 1, 0)
    return {"sequences": n, "targets_per_sequence": [(targets - y_targets) / n, y_targets / n],
            "windows_per_sequence": float(windows.sum() / n)}


def flop_per_sequence(cfg, n_items: tuple[int, int], content_dims: dict[str, int], stats: dict) -> dict:
    """The module doc's F_loss, F_blocks and F_items (FLOPs per training sequence) and their total."""
    m = cfg.model
    if m.name != "llm_emf" or m.fusion != "early" or m.adaptor not in ("linear", "domain"):
        raise SystemExit("ceiling.py models early-fusion llm_emf with a linear or domain adaptor")
    q, L, r = m.hidden_size, m.max_len, 2 if m.loss_weight > 0 else 1
    t = stats["targets_per_sequence"]
    per_window = 3 * m.n_blocks * (12 * q * q + 4 * L * q) + (2 * (8 * q * q + 4 * L * q) if m.cross_attention else 0)
    out = {"loss": 6 * q * r * sum(t[d] * n_items[d] for d in (0, 1)),
           "blocks": 3 * stats["windows_per_sequence"] * L * per_window,
           "items": sum(4 * sum(n_items) * e * q for e in content_dims.values()) / cfg.train.batch_size}
    out["total"] = sum(out.values())
    return out


def profile_step(model, opt, sched, seqs: Ragged, rows: np.ndarray, cfg, compiler=None) -> dict:
    """Self CPU time of one training step by category. Forward ops fall in the labelled region around them;
    a backward op goes where its forward op was (matched by the autograd sequence number). Compiled encoders
    show as their graphs' calls (CompiledFunction and its backward) and the library ops those call."""
    regions = [(model, "build_training_batch", "ceiling::batching"), (model, "forward", "ceiling::loss"),
               (model.fusion, "forward", "ceiling::items"), (model.net, "forward", "ceiling::net")]
    # instance attributes shadow the methods, for this model only; one already there is put back after
    saved = [(obj, attr, vars(obj).get(attr)) for obj, attr, _ in regions]
    for obj, attr, name in regions:
        setattr(obj, attr, record_function(name)(getattr(obj, attr)))
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function("ceiling::step"):
                t0 = time.perf_counter()
                train_epoch(model, opt, sched, seqs, rows, cfg, "cpu", desc="ceiling", compiler=compiler)
                wall = time.perf_counter() - t0
    finally:
        for obj, attr, before in saved:
            delattr(obj, attr)
            if before is not None:
                setattr(obj, attr, before)
    events = prof.events()

    def region(e, backward_of):
        while e is not None:
            if e.name in CATEGORIES:
                return CATEGORIES[e.name][0]
            if e.name.startswith("Optimizer."):
                return OPTIMIZER
            if e.name.startswith("autograd::engine::evaluate_function"):
                return backward_of(e.sequence_nr)
            e = e.cpu_parent
        return OTHER
    forward_of = {}                          # sequence number -> category of the forward op
    for e in events:
        cat = region(e, lambda _: None)
        if cat is not None and e.sequence_nr >= 0:
            forward_of.setdefault(e.sequence_nr, cat)
    ms, matmul_ms, ops = defaultdict(float), defaultdict(float), defaultdict(lambda: defaultdict(float))
    for e in events:
        cat = region(e, lambda s: forward_of.get(s, OTHER))
        ms[cat] += e.self_cpu_time_total / 1e3
        matmul_ms[cat] += e.self_cpu_time_total / 1e3 if e.name in MATMULS else 0.0
        ops[cat][_op_name(e.name)] += e.self_cpu_time_total / 1e3
    total = sum(ms.values())
    order = [*CATEGORIES.values(), (OPTIMIZER, None), (OTHER, None)]
    return {"step_wall_s": wall, "total_self_ms": total, "categories": [
        {"category": c, "term": term, "ms": ms[c], "share": ms[c] / total, "matmul_ms": matmul_ms[c],
         "top_ops": [[k, v] for k, v in sorted(ops[c].items(), key=lambda kv: -kv[1])[:4]]} for c, term in order]}


def _op_name(name: str) -> str:
    """Inductor's generated kernels run inside one profiler event per compiled graph call, named after the
    graph's hash: one name for all of them."""
    return "inductor kernels (compiled graphs)" if name.startswith("## Call CompiledFxGraph") else name


def batch_rows(n: int, batch_size: int, seed: int):
    """Batches in the loop's order (``shard_indices``: one seeded permutation per epoch), epoch after epoch."""
    epoch = 0
    while True:
        order = shard_indices(n, seed, epoch, 0, 1)
        for start in range(0, max(n - batch_size, 0) + 1, batch_size):    # full batches (all rows if fewer)
            yield order[start:start + batch_size]
        epoch += 1


def measure(model, opt, sched, seqs: Ragged, cfg, args, compiler=None) -> dict:
    """Peak matmuls and training steps in alternation; per-repeat GFLOP/s and per-step sequences/s; the
    untimed warm-up steps' seconds (where train.compile compiles)."""
    batches = batch_rows(len(seqs.starts), cfg.train.batch_size, cfg.seed)
    # bf16 only where it is native: elsewhere one n x n bf16 matmul takes minutes (0.25 GFLOP/s on AVX2)
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32} if native_bf16("cpu") else {"fp32": torch.float32}
    peaks, rates, cpu_per_wall, warmup_s = {name: [] for name in dtypes}, [], [], []
    shown = "bf16" if "bf16" in dtypes else "fp32"
    for step in range(args.warmup + args.rounds * args.steps):
        if step >= args.warmup and (step - args.warmup) % args.steps == 0:
            for name, dtype in dtypes.items():
                peaks[name] += matmul_gflops(dtype, args.matmul_size, args.repeats)
        rows = next(batches)
        t0, c0 = time.perf_counter(), time.process_time()
        train_epoch(model, opt, sched, seqs, rows, cfg, "cpu", desc="ceiling", compiler=compiler)
        wall = time.perf_counter() - t0
        if step < args.warmup:
            warmup_s.append(wall)
            print(f"warm-up step {step + 1}/{args.warmup}: {wall:.1f} s", flush=True)
        else:
            rates.append(len(rows) / wall)
            cpu_per_wall.append((time.process_time() - c0) / wall)
            print(f"step {step + 1 - args.warmup}/{args.rounds * args.steps}: {rates[-1]:.0f} sequences/s; "
                  f"peak {shown} {np.median(peaks[shown]):.0f} GFLOP/s", flush=True)
    return {"peak_gflops": {k: {"median": float(np.median(v)), "max": float(np.max(v)), "repeats": v}
                            for k, v in peaks.items()},
            "sequences_per_s": float(np.median(rates)), "step_sequences_per_s": rates,
            "cpu_s_per_wall_s": float(np.median(cpu_per_wall)), "warmup_step_s": warmup_s,
            "next_rows": next(batches)}


def _peak(peaks: dict, name: str) -> str:
    """A row's median peak, or "n/a" where that precision was not measured (bf16 on a CPU without it)."""
    return f"{peaks[name]['median']:.0f}" if name in peaks else "n/a"


def _compiled(run: dict) -> str:
    """A row's train.compile: off (rows from before it existed ran eagerly), on with its compile seconds, or
    the fallback."""
    c = run.get("compile")
    if not c or not c["requested"]:
        return "off"
    return f"on, {c['compile_s']:.0f} s" if c["active"] else "eager (see below)"


def _warmup_note(run: dict) -> str:
    c, warmup = run.get("compile"), run.get("warmup_step_s")
    note = f" Warm-up steps: {', '.join(f'{s:.1f}' for s in warmup)} s." if warmup else ""
    if c and c["requested"] and not c["active"]:
        note += f" train.compile=true ran eagerly: {c['fallback']}."
    return note


def git(*a) -> str:
    return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()


def run_ceiling(args, overrides: list[str]) -> dict:
    """Everything one ``--label`` row holds: peak, FLOP per sequence, bound, measured rate, profile."""
    cfg = load_config(None, [f"data.dataset={args.dataset}", *quality_variant(args.variant, args.features),
                             *DEFAULTS, *overrides, f"seed={args.seed}"])
    load_before = os.getloadavg()[0]
    dataset = Dataset.read(args.dataset)
    torch.manual_seed(args.seed)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, load_features_for(cfg.model, dataset.items),
                        trained_items(dataset))
    opt, sched = build_optimizer(model, cfg)
    compiler = StepCompiler(model, "cpu", cfg.train.compile)       # as the loop does (train.compile)
    seqs = sequences_of(dataset.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))          # as the loop: one item supervises nothing
    n_items = (dataset.n_x, dataset.n_y)
    dims = {m: int(getattr(model.vectors, f"{m}_features").shape[1]) for m in ("text", "image")
            if m in model.vectors.modalities}
    stats = sequence_stats(seqs, dataset.n_x, cfg.model.max_len)
    flops = flop_per_sequence(cfg, n_items, dims, stats)
    measured = measure(model, opt, sched, seqs, cfg, args, compiler)
    rows = measured.pop("next_rows")
    batch = flop_per_sequence(cfg, n_items, dims, sequence_stats(seqs.take(rows), dataset.n_x, cfg.model.max_len))
    # torch's count of one real step, eagerly: the counter does not see inside compiled code
    with FlopCounterMode(display=False) as counter, torch.compiler.set_stance("force_eager"):
        train_epoch(model, opt, sched, seqs, rows, cfg, "cpu", desc="ceiling")
    counted = float(counter.get_total_flops())
    prof = profile_step(model, opt, sched, seqs, rows, cfg, compiler)
    step_s = cfg.train.batch_size / measured["sequences_per_s"]
    compiled = {"requested": cfg.train.compile, "active": compiler.active, "fallback": compiler.reason,
                "compile_s": max(0.0, sum(measured["warmup_step_s"]) - len(measured["warmup_step_s"]) * step_s)
                if compiler.active else None}
    precision = "bf16" if use_bf16(cfg.train.bf16, "cpu") else "fp32"   # as train_epoch ran it
    peak = measured["peak_gflops"][precision]["median"]
    bound = peak * 1e9 / flops["total"]
    for row in prof["categories"]:      # the time its matmuls would take at the peak rate
        row["ms_at_peak"] = batch[row["term"]] * len(rows) / peak / 1e6 if row["term"] else 0.0
    return {"label": args.label, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command_line(__spec__.name, sys.argv[1:]),
            # "after" rows may run on uncommitted edits: the commit and the edited model/training files
            "git": {"commit": git("rev-parse", "--short", "HEAD"), "training_code_modified": git(
                "status", "--short", "--", "llm_emf/model", "llm_emf/training").splitlines()},
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                        # an empty inductor cache makes the compile time a cold start's
                        "torchinductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                        "processor": platform.processor() or platform.machine(), "platform": platform.platform(),
                        "load_average_1min": [load_before, os.getloadavg()[0]]},
            "dataset": dataset.meta.name, "n_items": list(n_items), "content_dims": dims, "stats": stats,
            "model": {k: getattr(cfg.model, k) for k in MODEL_KEYS},
            "batch_size": cfg.train.batch_size, "precision": precision, "overrides": overrides, "compile": compiled,
            "flop_per_sequence": flops, "bound_sequences_per_s": bound,
            "flop_check": {"analytic": batch["total"] * len(rows), "flop_counter": counted,
                           "ratio": counted / (batch["total"] * len(rows))},
            **measured, "fraction_of_bound": measured["sequences_per_s"] / bound, "profile": prof,
            "settings": {k: getattr(args, k) for k in ("rounds", "steps", "warmup", "repeats", "matmul_size",
                                                        "seed")}}


def markdown(doc: dict) -> str:
    runs = doc["runs"]
    lines = ["# Training near the machine's limit", "",
             f"Bound = peak GFLOP/s of an n x n matmul (n = {runs[-1]['settings']['matmul_size']}, training "
             "precision) / FLOP per training sequence (formula in `bench/train/ceiling.py`). Measured: the loop's "
             "`train_epoch` over one batch. FLOP check: torch.utils.flop_counter's count of a step / the formula's. "
             "'+ edits': uncommitted changes under llm_emf/model or llm_emf/training. compile: train.compile as it "
             "ran, with the seconds the warm-up steps took beyond two ordinary steps (compiling).",
             "",
             "| label | date | commit | compile | threads | load | peak bf16 / fp32 (GFLOP/s) | MFLOP / sequence | "
             "bound (seq/s) | measured (seq/s) | fraction of bound | FLOP check |", "|---" * 12 + "|"]
    for r in runs:
        p, m, load = r["peak_gflops"], r["machine"], r["machine"]["load_average_1min"]
        commit = r["git"]["commit"] + (" + edits" if r["git"]["training_code_modified"] else "")
        lines.append(f"| {r['label']} | {r['date'][:16]} | {commit} | {_compiled(r)} | {m['torch_threads']} | "
                     f"{load[0]:.1f} -> "
                     f"{load[1]:.1f} | {_peak(p, 'bf16')} / {_peak(p, 'fp32')} | "
                     f"{r['flop_per_sequence']['total'] / 1e6:.1f} | {r['bound_sequences_per_s']:.0f} | "
                     f"{r['sequences_per_s']:.0f} | {100 * r['fraction_of_bound']:.1f}% | "
                     f"{r['flop_check']['ratio']:.3f} |")
    for r in runs:
        f, s, prof = r["flop_per_sequence"], r["stats"], r["profile"]
        model = ", ".join(f"{k}={v}" for k, v in r["model"].items())
        lines += ["", f"## {r['label']}", "", f"Command: `{r['command']}`", "",
                  f"{r['dataset']}: {r['n_items'][0]:,} + {r['n_items'][1]:,} items; {s['sequences']:,} training "
                  f"sequences, each {s['targets_per_sequence'][0]:.2f} + {s['targets_per_sequence'][1]:.2f} targets "
                  f"in {s['windows_per_sequence']:.3f} windows. Model: {model}; content dims {r['content_dims']}; "
                  f"batch {r['batch_size']}, {r['precision']}. Torch {r['machine']['torch']}, "
                  f"{r['machine']['cpus']} CPUs, {r['cpu_s_per_wall_s']:.2f} CPU s per wall s while training."
                  + _warmup_note(r), "",
                  "| FLOP term | MFLOP per sequence | share |", "|---|---|---|"]
        lines += [f"| {k} | {f[k] / 1e6:.2f} | {100 * f[k] / f['total']:.1f}% |"
                  for k in ("loss", "blocks", "items", "total")]
        lines += ["", f"One profiled step ({r['batch_size']} sequences; {prof['step_wall_s']:.2f} s under the "
                  f"profiler, {r['batch_size'] / r['sequences_per_s']:.2f} s unprofiled), self CPU time by category. "
                  "'at peak': the category's FLOP at the peak rate; an op named after a region (ceiling::...) is "
                  "Python time inside it.", "",
                  "| category | ms | share | of which matmul ms | at peak (ms) | top ops (ms) |", "|---" * 6 + "|"]
        lines += [f"| {c['category']} | {c['ms']:.0f} | {100 * c['share']:.1f}% | {c['matmul_ms']:.0f} | "
                  f"{c['ms_at_peak']:.0f} | " + ", ".join(f"{n} {v:.0f}" for n, v in c["top_ops"]) + " |"
                  for c in prof["categories"]]
    return "\n".join(lines) + "\n"


def save(run: dict, out: str) -> dict:
    """Replace the run with the same label in ``<out>.json`` (or add it), then rewrite ``<out>.md``."""
    path = Path(out + ".json")
    doc = json.loads(path.read_text()) if path.exists() else {"benchmark": "train_ceiling", "runs": []}
    labels = [r["label"] for r in doc["runs"]]
    if run["label"] in labels:                  # keeps its place: "before" stays above "after"
        doc["runs"][labels.index(run["label"])] = run
    else:
        doc["runs"].append(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    Path(out + ".md").write_text(markdown(doc))
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="prepared dataset folder")
    p.add_argument("--features", default="", help="feature table (default: <dataset>/features.parquet)")
    p.add_argument("--variant", default="text", help="a variant of bench/quality/run.py's VARIANTS")
    p.add_argument("--label", default="before", help="the row this run writes (a rerun replaces it)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--repeats", type=int, default=3, help="peak matmuls per precision per round")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmuls")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/train_ceiling")
    p.add_argument("overrides", nargs="*", help=f"config overrides key=value (after {' '.join(DEFAULTS)})")
    args = p.parse_args(argv)
    args.features = args.features or str(Path(args.dataset) / "features.parquet")
    if args.threads:
        torch.set_num_threads(args.threads)
    doc = save(run_ceiling(args, args.overrides), args.out)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
