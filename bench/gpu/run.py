"""The GPU check (issue 16): training, full-ranking evaluation and CLIP image encoding on one accelerator.

    bash bench/gpu/run.sh                       # on the GPU machine: --device cuda, full sizes, < 8 minutes
    python bench/gpu/run.py --device cpu        # the CPU baseline at the same sizes (bench/results/gpu_cpu_baseline)
    python bench/gpu/run.py --device cpu --tiny # the dry run of the test suite (seconds)

Needs Python, torch, numpy, pyarrow, PyYAML and tqdm (all in the GPU image); no Ray, vLLM or MLflow (the
model and evaluation code import without them). open_clip is installed from the wheels beside this file
(``bench/gpu/wheels``) into a temporary folder when it is not importable; if that fails, the CLIP section is
skipped and the reason recorded. Nothing is downloaded: all data, features and weights are synthetic.

What it measures, each through the library's own code:

* **train**: sequences/s of the early-fusion LLM-EMF model with text (``model.use_text=true``, 384-d text
  vectors as MiniLM writes them, every other setting at its default: hidden 128, 2 blocks, max_len 15, fused
  loss) on Food-Kitchen-sized synthetic data (19,000 items per domain, 30-item histories), bf16 autocast, at
  several batch sizes. Each step is the real loop's ``train_epoch`` (batch building on the CPU, transfer,
  forward, backward, Adam) over ``shard_indices``; warm-up steps first, then timed steps (capped in seconds).
  On a GPU the unfused loss (``model.fused_loss=false``) is timed too, and a short run on the host's CPUs.
* **eval**: ``llm_emf.evaluation.evaluate`` with ``make_scorer`` (full protocol) for 10,000 users, each
  ranked among all 30,000 items of its target's domain (a 60,000-item catalog); the time inside the scorer
  (model on the device, scores copied to the host) and the rest (ranking on the host) are reported apart.
* **clip**: open_clip ViT-B-32 with random weights (``llm_emf.features.encoders.load_clip``, no pretrained
  tag) encoding decoded synthetic images (uint8 224x224x3 arrays, as the image stage hands them over) through
  ``FeatureEncoder._images`` (copy to the device, normalise, encode, copy back): fp32 as ``embed`` runs it,
  and under bf16 and fp16 autocast.

Targets (issue 16): CLIP >= 2,500 images/s; training >= 50x the CPU sequences/s of the development machine
(2 cores), read from ``bench/results/gpu_cpu_baseline.json`` (this script with ``--device cpu``, same sizes);
without that file the host's CPU figure of the same run is used and named so.

Output: JSON and a Markdown table, ``$OUT/gpu_<device>.{json,md}`` when ``$OUT`` is set, else
``bench/results/gpu_<device>[_tiny].{json,md}`` (``--out PREFIX`` overrides). The JSON is rewritten after
every measurement, so a run stopped early keeps what it measured. A section that fails records its error and
the others still run; the exit status is 0 unless nothing at all was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:           # the GPU machine gets the working tree, not an installed package
    sys.path.insert(0, str(REPO))

CLIP_TARGET_IMAGES_PER_S = 2500.0
TRAIN_TARGET_SPEEDUP = 50.0
CPU_BASELINE = REPO / "bench" / "results" / "gpu_cpu_baseline.json"
# Sizes that must match for a CPU baseline file to be comparable with this run.
COMPARABLE_KEYS = ("items_per_domain", "seq_len", "text_dim", "users")

FULL = dict(items_per_domain=19000, seq_len=30, users=51200, text_dim=384,
            eval_users=10000, eval_items_per_domain=30000, eval_seq_len=30)
TINY = dict(items_per_domain=500, seq_len=30, users=256, text_dim=384,
            eval_users=200, eval_items_per_domain=1000, eval_seq_len=30)


# ----------------------------------------------------------------------------------------------------------
# bookkeeping
# ----------------------------------------------------------------------------------------------------------

class Budget:
    """Wall-clock budget of the whole run: a measurement starts only while time is left."""

    def __init__(self, seconds: float, per_measure_s: float):
        self.start, self.seconds, self.per_measure_s = time.perf_counter(), seconds, per_measure_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def short_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min": [os.getloadavg()[0]]}
    try:
        import pyarrow
        info["pyarrow"] = pyarrow.__version__
    except ImportError:
        info["pyarrow"] = None
    for name in ("ray", "vllm", "mlflow"):
        info[f"{name}_loaded"] = name in sys.modules
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["cuda"] = {"device": p.name, "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
                        "memory_gib": round(p.total_memory / 2**30, 1), "cuda_runtime": torch.version.cuda,
                        "cudnn": torch.backends.cudnn.version(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                        "float32_matmul_precision": torch.get_float32_matmul_precision()}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            info["cuda"]["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()[:200]
        except (OSError, subprocess.SubprocessError) as e:
            info["cuda"]["nvidia_smi"] = short_error(e)
    else:
        info["cuda"] = None
    info["device_used"] = device
    return info


# ----------------------------------------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------------------------------------

def synthetic_histories(n_users: int, seq_len: int, n_x: int, n_y: int, seed: int) -> np.ndarray:
    """(n_users, seq_len) item indices: per user a share of X items, each item drawn with a popularity skew."""
    rng = np.random.default_rng(seed)
    p_x = rng.beta(1.0, 1.0, size=(n_users, 1))                                   # (U, 1) each user's X share
    in_x = rng.random((n_users, seq_len)) < p_x                                   # (U, T)
    u = rng.random((n_users, seq_len))
    x_item = np.floor(n_x * u ** 3).astype(np.int64)                              # popular items more often
    y_item = n_x + np.floor(n_y * u ** 3).astype(np.int64)
    return np.where(in_x, x_item, y_item)


def synthetic_features(n_items: int, dim: int, seed: int):
    """Unit-norm random text vectors for every item (throughput does not depend on their content)."""
    from llm_emf.model import ItemFeatures

    g = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n_items, dim, generator=g), dim=1)
    return ItemFeatures(text=text, image=None, has_text=torch.ones(n_items, dtype=torch.bool),
                        has_image=torch.zeros(n_items, dtype=torch.bool))


def model_config(fused_loss: bool = True):
    from llm_emf.config import Config

    cfg = Config()
    cfg.model.use_text, cfg.model.fusion, cfg.model.fused_loss = True, "early", fused_loss
    # Every synthetic item is trained, so no step reads the unseen-item vector; "learned" also keeps model
    # construction from building a content-neighbour index over the whole catalog ("neighbor").
    cfg.model.unseen_id = "learned"
    cfg.train.bf16 = True
    return cfg


MODEL_KEYS = ("name", "fusion", "use_id", "use_text", "use_image", "hidden_size", "n_heads", "n_blocks",
              "max_len", "dropout", "cross_attention", "positions", "adaptor", "loss_weight", "fused_loss",
              "unseen_id")


# ----------------------------------------------------------------------------------------------------------
# (a) training throughput
# ----------------------------------------------------------------------------------------------------------

class TrainBench:
    """One synthetic training set; ``measure`` builds a fresh model per (device, variant, batch size)."""

    def __init__(self, sizes: dict, seed: int = 0):
        from llm_emf.model.batch import Ragged

        self.sizes, self.seed = sizes, seed
        n, T = sizes["items_per_domain"], sizes["seq_len"]
        hist = synthetic_histories(sizes["users"], T, n, n, seed)
        starts = np.arange(sizes["users"], dtype=np.int64) * T
        self.seqs = Ragged(hist.ravel(), starts, starts + T)
        self.features = synthetic_features(2 * n, sizes["text_dim"], seed)

    def indices(self, n_rows: int) -> np.ndarray:
        """The real loop's order (``shard_indices``, one permutation per epoch), as many epochs as needed."""
        from llm_emf.training.loop import shard_indices

        out, epoch, n = [], 0, len(self.seqs.starts)
        while sum(len(o) for o in out) < n_rows:
            out.append(shard_indices(n, self.seed, epoch, 0, 1))
            epoch += 1
        return np.concatenate(out)[:n_rows]

    def measure(self, device: str, batch_size: int, warmup: int, steps: int, max_s: float,
                fused_loss: bool = True) -> dict:
        from llm_emf.model import build_model
        from llm_emf.precision import native_bf16
        from llm_emf.training.loop import build_optimizer, train_epoch

        cfg = model_config(fused_loss)
        cfg.train.batch_size = batch_size
        n = self.sizes["items_per_domain"]
        torch.manual_seed(self.seed)
        model = build_model(cfg.model, n, n, self.features).to(device)
        optimizer, scheduler = build_optimizer(model, cfg)
        order = self.indices(batch_size * (warmup + steps))
        reset_peak(device)
        step_s, cpu_s, warmup_s, losses = [], [], [], []
        t_start = time.perf_counter()
        for step in range(warmup + steps):
            rows = order[step * batch_size:(step + 1) * batch_size]
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            losses.append(train_epoch(model, optimizer, scheduler, self.seqs, rows, cfg, device, desc="bench"))
            sync(device)
            if step < warmup:
                warmup_s.append(time.perf_counter() - t0)
                continue
            step_s.append(time.perf_counter() - t0)
            cpu_s.append(time.process_time() - c0)
            if sum(step_s) >= max_s:
                break
        total_timed = sum(step_s)
        # supervised positions per sequence: every target after the first item (method.md, every target trained)
        positions = batch_size * (self.sizes["seq_len"] - 1)
        out = {"device": device, "variant": "fused_loss" if fused_loss else "unfused_loss",
               "dtype": "bf16 autocast" if native_bf16(device) else "fp32 (no native bf16)",
               "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": len(step_s),
               "timed_s": total_timed, "sequences_per_s": batch_size * len(step_s) / total_timed,
               "positions_per_s": positions * len(step_s) / total_timed,
               "step_ms_median": 1e3 * float(np.median(step_s)), "step_ms_min": 1e3 * float(np.min(step_s)),
               # process CPU time over wall time: ~threads when the CPU is ours, far less on a busy machine
               "cpu_s_per_wall_s": sum(cpu_s) / total_timed,
               "warmup_step_s": warmup_s, "wall_s": time.perf_counter() - t_start, "last_loss": float(losses[-1]),
               "peak_memory_gib": peak_gib(device), "torch_threads": torch.get_num_threads()}
        del model, optimizer
        reset_peak(device)
        return out


# ----------------------------------------------------------------------------------------------------------
# (b) full-ranking evaluation
# ----------------------------------------------------------------------------------------------------------

def eval_dataset(sizes: dict, seed: int = 1):
    """A Dataset of ``eval_users`` valid cases (history + target, half in each domain) over
    ``eval_items_per_domain`` items per domain, plus the same histories as the train split."""
    import pyarrow as pa

    from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta

    n, U, T = sizes["eval_items_per_domain"], sizes["eval_users"], sizes["eval_seq_len"]
    rng = np.random.default_rng(seed)
    hist = synthetic_histories(U, T, n, n, seed)                                  # (U, T)
    target_y = np.arange(U) % 2 == 1
    target = np.where(target_y, n + rng.integers(0, n, U), rng.integers(0, n, U))
    rows = np.concatenate([hist, target[:, None]], axis=1).astype(np.int32)       # (U, T + 1)

    def lists(m: np.ndarray) -> pa.Array:
        offsets = np.arange(m.shape[0] + 1, dtype=np.int32) * m.shape[1]
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(m.ravel()))

    users = [f"u{i}" for i in range(U)]
    sequences = pa.table({"user_id": users + users, "split": ["valid"] * U + ["train"] * U,
                          "items": pa.concat_arrays([lists(rows), lists(hist.astype(np.int32))]),
                          "timestamps": pa.nulls(2 * U, pa.list_(pa.int64()))}).cast(SEQUENCE_SCHEMA)
    items = pa.table({"item_index": np.arange(2 * n, dtype=np.int32), "item_id": [f"i{i}" for i in range(2 * n)],
                      "domain": np.repeat(np.array([0, 1], dtype=np.int8), n), "title": pa.nulls(2 * n, pa.string()),
                      "image_uri": pa.nulls(2 * n, pa.string()),
                      "attributes": pa.nulls(2 * n, pa.string())}).cast(ITEM_SCHEMA)
    meta = DatasetMeta(name="synthetic-eval", domains=("X", "Y"), n_items=(n, n), fingerprint=f"synthetic-{seed}")
    return Dataset(items, sequences, meta)


def measure_eval(dataset, sizes: dict, device: str, batch_size: int) -> dict:
    from llm_emf.evaluation import evaluate
    from llm_emf.model import build_model
    from llm_emf.serving.scoring import make_scorer

    cfg = model_config()
    cfg.train.eval_batch_size = batch_size
    n = sizes["eval_items_per_domain"]
    torch.manual_seed(0)
    model = build_model(cfg.model, n, n, synthetic_features(2 * n, sizes["text_dim"], 0)).to(device).eval()
    scorer = make_scorer(model, batch_size, device)
    inside = {"s": 0.0, "calls": 0}

    def timed_scorer(rows, domain):
        t0 = time.perf_counter()
        out = scorer(rows, domain)                 # scores come back on the host: the device is done
        inside["s"] += time.perf_counter() - t0
        inside["calls"] += 1
        return out

    valid = dataset.split("valid")
    with torch.inference_mode():                   # warm-up: kernels, allocator
        for domain in (0, 1):
            scorer(valid.slice(domain, min(batch_size, valid.num_rows - 1)), domain)
    reset_peak(device)
    t0 = time.perf_counter()
    result = evaluate(timed_scorer, dataset, "valid", cfg, protocols=("full",), scorer_name="llm_emf")
    total = time.perf_counter() - t0
    cases = sum(result.counts.values())
    mrr = {d: result.metrics["full"][d]["MRR"] for d in result.counts}
    out = {"device": device, "batch_size": batch_size, "cases": cases, "items_per_domain": n, "evaluate_s": total,
           "scorer_s": inside["s"], "ranking_and_rest_s": total - inside["s"], "scorer_calls": inside["calls"],
           "users_per_s": cases / total, "scores_per_s": cases * n / total, "mrr_full": mrr,
           "exclude_seen": cfg.eval.exclude_seen, "ties": cfg.eval.ties, "peak_memory_gib": peak_gib(device)}
    del model
    reset_peak(device)
    return out


# ----------------------------------------------------------------------------------------------------------
# (c) CLIP image encoding
# ----------------------------------------------------------------------------------------------------------

def ensure_open_clip(wheels: Path, force_wheels: bool) -> dict:
    """Make ``import open_clip`` work: already installed, or the wheels in ``wheels`` put in a temporary
    folder at the front of sys.path (pip --no-index --no-deps; plain unzip if pip fails: they are pure Python)."""
    if not force_wheels:
        try:
            import open_clip
            return {"source": "installed", "version": getattr(open_clip, "__version__", "?"), "path": open_clip.__file__}
        except ImportError as e:
            first = short_error(e)
    else:
        first = "--force-wheels"
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise RuntimeError(f"open_clip not importable ({first}) and no wheels in {wheels}")
    target = Path(tempfile.mkdtemp(prefix="llm_emf_gpu_site_"))
    how = "pip install --no-index --no-deps --target"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target", str(target), *map(str, found)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        how = f"unzipped (pip failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]})"
        for whl in found:
            with zipfile.ZipFile(whl) as z:
                z.extractall(target)
    sys.path.insert(0, str(target))
    for name in [m for m in sys.modules if m.split(".")[0] in ("open_clip", "ftfy", "wcwidth")]:
        del sys.modules[name]
    import open_clip
    return {"source": str(wheels.relative_to(REPO)) if wheels.is_relative_to(REPO) else str(wheels),
            "installed_with": how, "wheels": [w.name for w in found], "target": str(target),
            "version": getattr(open_clip, "__version__", "?"), "path": open_clip.__file__}


class ClipBench:
    def __init__(self, device: str, model_name: str, seed: int = 0):
        from llm_emf.features.encoders import clip_image_size, load_clip, open_clip_mean, open_clip_std

        self.device, self.model_name = device, model_name
        t0 = time.perf_counter()
        clip, _ = load_clip(model_name, "", seed, device)      # random weights (no pretrained tag)
        visual = clip.visual
        # the attributes FeatureEncoder.__init__ sets for its image path, so _images runs unchanged
        self.encoder = SimpleNamespace(
            device=device, clip=clip,
            mean=torch.tensor(getattr(visual, "image_mean", None) or open_clip_mean(), device=device),
            std=torch.tensor(getattr(visual, "image_std", None) or open_clip_std(), device=device))
        self.size = clip_image_size(model_name)
        self.load_s = time.perf_counter() - t0
        self.params = sum(p.numel() for p in visual.parameters())
        self.seed = seed

    def pixels(self, batch_size: int) -> np.ndarray:
        """Decoded images: uint8 (B, S, S, 3), a smooth pattern plus noise per image."""
        rng = np.random.default_rng(self.seed)
        S = self.size
        ramp = np.linspace(0, 255, S, dtype=np.float32)
        base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2                  # (1, S, S, 1)
        tint = rng.uniform(0.3, 1.0, size=(batch_size, 1, 1, 3)).astype(np.float32)        # (B, 1, 1, 3)
        noise = rng.integers(0, 40, size=(batch_size, S, S, 3), dtype=np.uint8)
        return np.clip(base * tint + noise, 0, 255).astype(np.uint8)

    def measure(self, precision: str, batch_size: int, warmup: int, steps: int, max_s: float) -> dict:
        from llm_emf.features.encoders import FeatureEncoder

        pixels = self.pixels(batch_size)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        device_type = torch.device(self.device).type
        reset_peak(self.device)

        def encode():
            with torch.autocast(device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return FeatureEncoder._images(self.encoder, pixels)        # the embed job's image path

        for _ in range(warmup):
            emb = encode()
        step_s = []
        for _ in range(steps):
            t0 = time.perf_counter()
            emb = encode()
            step_s.append(time.perf_counter() - t0)
            if sum(step_s) >= max_s:
                break
        ok = bool(np.isfinite(emb).all())
        return {"device": self.device, "model": self.model_name, "precision": precision if dtype is None else
                f"{precision} autocast", "batch_size": batch_size, "image_size": self.size,
                "warmup_steps": warmup, "timed_steps": len(step_s), "timed_s": sum(step_s),
                "images_per_s": batch_size * len(step_s) / sum(step_s), "batch_ms_median": 1e3 * float(np.median(step_s)),
                "embedding_dim": int(emb.shape[1]), "finite": ok, "peak_memory_gib": peak_gib(self.device)}


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------

def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes and steps: the dry run of the test suite")
    p.add_argument("--sections", default="train,eval,clip", help="subset of train,eval,clip")
    p.add_argument("--train-batch-sizes", default=None, help="default 256,1024,4096 (tiny: 16,64)")
    p.add_argument("--train-warmup", type=int, default=None, help="default 3 on cuda, 1 on cpu")
    p.add_argument("--train-steps", type=int, default=None, help="timed steps, default 20 on cuda, 2 on cpu")
    p.add_argument("--unfused", default=None, choices=("yes", "no"),
                   help="also time model.fused_loss=false (default: yes on cuda, no on cpu)")
    p.add_argument("--host-cpu", default=None, choices=("yes", "no"),
                   help="on cuda, also time training on the host's CPUs, fewer steps (default yes)")
    p.add_argument("--eval-batch-sizes", default=None, help="default 512,2048 on cuda, 512 on cpu (tiny: 64)")
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--clip-batch-sizes", default=None, help="default 256,512 on cuda, 256 on cpu (tiny: 2)")
    p.add_argument("--clip-precisions", default=None,
                   help="default fp32,bf16,fp16 on cuda, fp32,bf16 on cpu (tiny: fp32)")
    p.add_argument("--clip-warmup", type=int, default=None, help="default 3 on cuda, 1 on cpu")
    p.add_argument("--clip-steps", type=int, default=None, help="timed batches, default 20 on cuda, 1 on cpu")
    p.add_argument("--max-measure-s", type=float, default=None,
                   help="cap on the timed steps of one measurement (default 15 on cuda, 60 on cpu)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="no measurement starts after this many seconds of the run (default 400; cpu 1200)")
    p.add_argument("--cpu-baseline", default=str(CPU_BASELINE.relative_to(REPO)),
                   help="CPU result of this script to compare training with ('' : the host CPU of this run)")
    p.add_argument("--wheels", default=str((HERE / "wheels").relative_to(REPO)))
    p.add_argument("--force-wheels", action="store_true", help="install open_clip from --wheels even if importable")
    p.add_argument("--report-only", default=None, metavar="JSON",
                   help="measure nothing: recompute the targets and the Markdown of a result JSON of this script")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="output path prefix (.json and .md are added)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    tiny = args.tiny

    def pick(value, gpu, cpu, small):
        return value if value is not None else small if tiny else gpu if cuda else cpu

    args.train_batch_sizes = ints(pick(args.train_batch_sizes, "256,1024,4096", "256,1024,4096", "16,64"))
    args.train_warmup = pick(args.train_warmup, 3, 1, 1)
    args.train_steps = pick(args.train_steps, 20, 2, 2)
    args.unfused = pick(args.unfused, "yes", "no", "no") == "yes"
    args.host_cpu = cuda and pick(args.host_cpu, "yes", "no", "yes") == "yes"
    args.eval_batch_sizes = ints(pick(args.eval_batch_sizes, "512,2048", "512", "64"))
    args.clip_batch_sizes = ints(pick(args.clip_batch_sizes, "256,512", "256", "2"))
    args.clip_precisions = pick(args.clip_precisions, "fp32,bf16,fp16", "fp32,bf16", "fp32").split(",")
    args.clip_warmup = pick(args.clip_warmup, 3, 1, 1)
    args.clip_steps = pick(args.clip_steps, 20, 1, 1)
    args.max_measure_s = pick(args.max_measure_s, 15.0, 60.0, 5.0)
    args.budget_s = pick(args.budget_s, 400.0, 1200.0, 120.0)
    args.sections = [s for s in args.sections.split(",") if s]
    bad = set(args.sections) - {"train", "eval", "clip"}
    if bad:
        p.error(f"--sections: unknown {sorted(bad)}")
    return args


def output_prefix(args) -> Path:
    if args.out:
        return Path(args.out)
    name = f"gpu_{'cuda' if args.device.startswith('cuda') else 'cpu'}{'_tiny' if args.tiny else ''}"
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / name
    return REPO / "bench" / "results" / name


def cpu_adjusted(row: dict) -> float:
    """A CPU row's sequences/s as if the process had had its threads' CPU time to itself: on a busy shared
    machine the wall-clock rate drops with the CPU share it got, while sequences per CPU-second stay put
    (gpu_cpu_baseline.md). Never below the measured rate, so a GPU is compared with the stronger CPU figure."""
    share = row.get("cpu_s_per_wall_s") or 0.0
    threads = max(int(row.get("torch_threads") or 1), 1)
    return row["sequences_per_s"] / min(1.0, share / threads) if share > 0 else row["sequences_per_s"]


def best_cpu(rows: list[dict]) -> dict | None:
    rows = [r for r in rows if r.get("variant") == "fused_loss"]
    if not rows:
        return None
    best = max(rows, key=cpu_adjusted)
    return {"sequences_per_s": cpu_adjusted(best), "measured_sequences_per_s": best["sequences_per_s"],
            "cpu_s_per_wall_s": best.get("cpu_s_per_wall_s"), "batch_size": best["batch_size"],
            "torch_threads": best.get("torch_threads"), "load_average_1min": best.get("load_average_1min")}


def cpu_reference(args, doc: dict) -> dict | None:
    """The CPU training figure a GPU run is divided by: the baseline file when its sizes match, else this run's
    host CPU; in both, the best CPU-time-adjusted rate (:func:`cpu_adjusted`) over batch sizes."""
    path = Path(args.cpu_baseline) if args.cpu_baseline else None
    if path is not None and not path.is_absolute():
        path = REPO / path
    if path is not None and path.is_file():
        base = json.loads(path.read_text())
        same = all(base.get("sizes", {}).get(k) == doc["sizes"].get(k) for k in COMPARABLE_KEYS)
        best = best_cpu(base.get("train", {}).get("results", []))
        if same and best:
            return {"source": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                    "machine": {k: base.get("machine", {}).get(k) for k in ("processor", "cpus")}, **best}
        note = f"CPU baseline {path} not used: " + ("sizes differ" if not same else "no fused_loss rows")
        if note not in doc["notes"]:
            doc["notes"].append(note)
    best = best_cpu(doc["train"].get("host_cpu", []))
    if best:
        return {"source": "host CPU of this run (not the development machine)",
                "machine": {"processor": doc["machine"]["processor"], "cpus": doc["machine"]["cpus"]}, **best}
    return None


def targets(args, doc: dict) -> dict:
    out = {}
    clip_rows = doc.get("clip", {}).get("results", [])
    if clip_rows:
        best = max(clip_rows, key=lambda r: r["images_per_s"])
        fp32 = [r["images_per_s"] for r in clip_rows if r["precision"] == "fp32"]
        out["clip_images_per_s"] = {"target": CLIP_TARGET_IMAGES_PER_S, "measured_best": best["images_per_s"],
                                    "best_at": f"{best['precision']}, batch {best['batch_size']}",
                                    "embed_job_path_fp32_best": max(fp32) if fp32 else None,
                                    "pass": best["images_per_s"] >= CLIP_TARGET_IMAGES_PER_S
                                    if args.device.startswith("cuda") else None}
    rows = [r for r in doc.get("train", {}).get("results", []) if r["variant"] == "fused_loss"]
    if rows:
        best = max(rows, key=lambda r: r["sequences_per_s"])
        entry = {"target_speedup": TRAIN_TARGET_SPEEDUP, "device_best_sequences_per_s": best["sequences_per_s"],
                 "device_best_batch_size": best["batch_size"]}
        if args.device.startswith("cuda"):
            ref = cpu_reference(args, doc)
            entry["cpu_reference"] = ref
            # the default loss is what the target is about; a faster other variant is reported beside it
            fastest = max(doc["train"]["results"], key=lambda r: r["sequences_per_s"])
            entry["fastest_any_variant"] = {k: fastest[k] for k in ("variant", "batch_size", "sequences_per_s")}
            if ref:
                entry["speedup"] = best["sequences_per_s"] / ref["sequences_per_s"]
                entry["fastest_any_variant"]["speedup"] = fastest["sequences_per_s"] / ref["sequences_per_s"]
                entry["pass"] = entry["speedup"] >= TRAIN_TARGET_SPEEDUP
            else:
                entry["speedup"], entry["pass"] = None, None
        else:
            ref = best_cpu(rows)
            entry["pass"] = None
            entry["cpu_time_adjusted_best"] = ref
            entry["note"] = (f"CPU run: a GPU run divides by the CPU-time-adjusted best, {ref['sequences_per_s']:,.1f} "
                             f"seq/s (batch {ref['batch_size']}, measured {ref['measured_sequences_per_s']:,.1f} at "
                             f"{ref['cpu_s_per_wall_s']:.2f} CPU s per wall s, {ref['torch_threads']} threads)")
        out["train_speedup"] = entry
    return out


def fmt(x, digits=0) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "**pass**" if x else "**FAIL**"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    cuda = m.get("cuda") or {}
    title = f"{cuda['device']}" if cuda and doc["device"].startswith("cuda") else f"CPU ({m['cpus']} cores)"
    lines = [f"# GPU check: {title}{' (tiny dry run)' if doc['tiny'] else ''}", "",
             f"Command: `{doc['command']}`", "",
             f"{doc['started']}; Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
             f"{m['cpus']} CPUs ({m['processor']}), load average (1 min) "
             f"{' -> '.join(f'{x:.1f}' for x in m['load_average_1min'])}"
             + (f"; GPU {cuda['device']}, {cuda['memory_gib']} GiB, CUDA {cuda['cuda_runtime']}, "
                f"nvidia-smi: {cuda.get('nvidia_smi')}" if cuda else "; no CUDA") + f". Run time {doc['wall_s']:.0f} s.", ""]
    s = doc["sizes"]
    t = doc.get("targets", {})
    if t:
        lines += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
        if "clip_images_per_s" in t:
            c = t["clip_images_per_s"]
            lines.append(f"| CLIP {doc.get('clip', {}).get('model', '')} >= {c['target']:,.0f} images/s | "
                         f"{c['measured_best']:,.0f} ({c['best_at']}); fp32 as `embed` runs it: "
                         f"{fmt(c['embed_job_path_fp32_best'])} | {fmt(c['pass'])} |")
        if "train_speedup" in t:
            e = t["train_speedup"]
            ref = e.get("cpu_reference")
            ref_text = (f"{ref['sequences_per_s']:,.1f} seq/s (CPU-time-adjusted; measured "
                        f"{ref['measured_sequences_per_s']:,.1f}, batch {ref['batch_size']}, {ref['source']})"
                        if ref else "no CPU reference")
            lines.append(f"| training >= {e['target_speedup']:.0f}x CPU sequences/s | "
                         f"{e['device_best_sequences_per_s']:,.1f} seq/s (batch {e['device_best_batch_size']})"
                         + (f" / {ref_text} = {e['speedup']:.1f}x" if e.get("speedup") else f"; {e.get('note', ref_text)}")
                         + (f"; fastest: {e['fastest_any_variant']['variant']} at batch "
                            f"{e['fastest_any_variant']['batch_size']}, {e['fastest_any_variant']['sequences_per_s']:,.1f}"
                            f" seq/s = {e['fastest_any_variant']['speedup']:.1f}x"
                            if e.get("fastest_any_variant", {}).get("variant") not in (None, "fused_loss")
                            and e.get("speedup") else "")
                         + f" | {fmt(e['pass'])} |")
        lines.append("")
    train = doc.get("train", {})
    if train.get("results") or train.get("host_cpu"):
        lines += ["## Training throughput", "",
                  f"Early-fusion LLM-EMF with text ({', '.join(f'{k}={v}' for k, v in train['model'].items())}); "
                  f"{s['items_per_domain']:,} items per domain, {s['users']:,} users with {s['seq_len']}-item "
                  f"histories, {s['text_dim']}-d text vectors; bf16 autocast; one step = `train_epoch` over one batch "
                  f"(batch building, transfer, forward, backward, Adam).", "",
                  "| device | loss | batch | sequences/s | positions/s | step (ms, median) | timed steps | "
                  "CPU s / wall s | load | peak GPU memory (GiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in train.get("results", []) + train.get("host_cpu", []):
            dev = r["device"] + (f" ({r['torch_threads']} threads)" if r["device"] == "cpu" else "")
            lines.append(f"| {dev} | {r['variant']} | {r['batch_size']} | {r['sequences_per_s']:,.1f} | "
                         f"{r['positions_per_s']:,.0f} | {r['step_ms_median']:,.1f} | {r['timed_steps']} | "
                         f"{r['cpu_s_per_wall_s']:.2f} | {fmt(r.get('load_average_1min'), 1)} | "
                         f"{fmt(r['peak_memory_gib'], 2)} |")
        lines.append("")
    ev = doc.get("eval", {})
    if ev.get("results"):
        lines += ["## Full-ranking evaluation", "",
                  f"`evaluate(make_scorer(...), protocols=('full',))`: {s['eval_users']:,} users, each ranked among "
                  f"all {s['eval_items_per_domain']:,} items of its target's domain; scorer = model on the device "
                  f"+ scores copied to the host, rest = ranking and batching on the host.", "",
                  "| device | batch | total (s) | scorer (s) | rest (s) | users/s | scores/s |", "|---|---|---|---|---|---|---|"]
        for r in ev["results"]:
            lines.append(f"| {r['device']} | {r['batch_size']} | {r['evaluate_s']:.2f} | {r['scorer_s']:.2f} | "
                         f"{r['ranking_and_rest_s']:.2f} | {r['users_per_s']:,.0f} | {r['scores_per_s']:,.0f} |")
        lines.append("")
    clip = doc.get("clip", {})
    if clip.get("results") or clip.get("skipped"):
        lines += ["## CLIP image encoding", ""]
        if clip.get("skipped"):
            lines += [f"Skipped: {clip['skipped']}", ""]
        if clip.get("results"):
            oc = clip.get("open_clip", {})
            lines += [f"open_clip {oc.get('version')} ({oc.get('source')}) {clip['model']}, random weights, "
                      f"{clip['vision_params'] / 1e6:.1f} M vision parameters; decoded uint8 images through "
                      f"`FeatureEncoder._images` (to the device, normalise, encode, back to the host).", "",
                      "| device | precision | batch | images/s | batch (ms, median) | timed batches |",
                      "|---|---|---|---|---|---|"]
            for r in clip["results"]:
                lines.append(f"| {r['device']} | {r['precision']} | {r['batch_size']} | {r['images_per_s']:,.0f} | "
                             f"{r['batch_ms_median']:,.1f} | {r['timed_steps']} |")
            lines.append("")
    if doc["skipped"] or doc["errors"] or doc["notes"]:
        lines += ["## Skipped, errors, notes", ""]
        lines += [f"- skipped: {x}" for x in doc["skipped"]]
        lines += [f"- error: {x['where']}: {x['error']}" for x in doc["errors"]]
        lines += [f"- note: {x}" for x in doc["notes"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_only:
        path = Path(args.report_only)
        doc = json.loads(path.read_text())
        args.device = doc["device"]
        doc["targets"] = targets(args, doc)
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        path.with_suffix(".md").write_text(markdown(doc))
        print(markdown(doc))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s, args.max_measure_s)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    prefix = output_prefix(args)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sizes = dict(TINY if args.tiny else FULL)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    doc = {"command": " ".join(["python", "bench/gpu/run.py", *map(shlex.quote, argv_used)]),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device, "tiny": args.tiny,
           "sizes": sizes, "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
           "machine": machine_info(device), "train": {}, "eval": {}, "clip": {}, "targets": {},
           "skipped": [], "errors": [], "notes": [], "wall_s": 0.0}

    def save() -> None:
        doc["wall_s"] = budget.elapsed()
        doc["machine"]["load_average_1min"] = doc["machine"]["load_average_1min"][:1] + [os.getloadavg()[0]]
        doc["targets"] = targets(args, doc)
        prefix.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        prefix.with_suffix(".md").write_text(markdown(doc))

    def attempt(where: str, fn, on_result) -> None:
        if budget.left() <= 0:
            doc["skipped"].append(f"{where}: time budget of {args.budget_s:.0f} s used up")
            print(f"[{budget.elapsed():6.1f} s] skip {where}: time budget used up", flush=True)
            return
        print(f"[{budget.elapsed():6.1f} s] {where} ...", flush=True)
        try:
            result = fn()
        except Exception as e:                                   # one failed measurement must not lose the rest
            doc["errors"].append({"where": where, "error": short_error(e), "traceback": traceback.format_exc()[-2000:]})
            print(f"[{budget.elapsed():6.1f} s] {where} FAILED: {short_error(e)}", flush=True)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        else:
            if isinstance(result, dict):
                result["load_average_1min"] = round(os.getloadavg()[0], 2)   # other jobs skew CPU numbers
            on_result(result)
            key = next((k for k in ("sequences_per_s", "users_per_s", "images_per_s") if k in (result or {})), None)
            print(f"[{budget.elapsed():6.1f} s] {where}: {key} {result[key]:,.1f}" if key else
                  f"[{budget.elapsed():6.1f} s] {where}: done", flush=True)
        save()

    save()
    # Order: what the targets need first, extras (unfused loss, host CPU) last, so a short budget drops those.
    trainer = None
    if "train" in args.sections:
        doc["train"] = {"model": {k: getattr(model_config().model, k) for k in MODEL_KEYS}, "results": [],
                        "host_cpu": []}

        def make_trainer():
            nonlocal trainer
            t0 = time.perf_counter()
            trainer = TrainBench(sizes)
            return {"data_s": time.perf_counter() - t0}

        attempt("train data", make_trainer, lambda r: doc["train"].update(data_s=r["data_s"]))
        if trainer is not None:
            for bs in args.train_batch_sizes:
                attempt(f"train {device} fused_loss batch {bs}",
                        lambda bs=bs: trainer.measure(device, bs, args.train_warmup, args.train_steps,
                                                      args.max_measure_s),
                        doc["train"]["results"].append)

    if "clip" in args.sections:
        def load_clip_bench():
            info = ensure_open_clip(REPO / args.wheels if not Path(args.wheels).is_absolute() else Path(args.wheels),
                                    args.force_wheels)
            bench = ClipBench(device, args.clip_model)
            doc["clip"] = {"model": args.clip_model, "open_clip": info, "load_s": bench.load_s,
                           "vision_params": bench.params, "results": []}
            return bench

        clip_bench = None
        if budget.left() > 0:
            try:
                clip_bench = load_clip_bench()
            except Exception as e:
                doc["clip"] = {"skipped": f"open_clip unavailable or model not built: {short_error(e)}", "results": []}
                doc["skipped"].append(f"clip: {doc['clip']['skipped']}")
                print(f"[{budget.elapsed():6.1f} s] clip skipped: {short_error(e)}", flush=True)
            save()
        if clip_bench is not None:
            for precision in args.clip_precisions:
                for bs in args.clip_batch_sizes:
                    attempt(f"clip {precision} batch {bs}",
                            lambda p=precision, bs=bs: clip_bench.measure(p, bs, args.clip_warmup, args.clip_steps,
                                                                          args.max_measure_s),
                            doc["clip"]["results"].append)
            del clip_bench
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    if "eval" in args.sections:
        doc["eval"] = {"results": []}
        data = {}
        attempt("eval data", lambda: data.setdefault("ds", eval_dataset(sizes)) and None, lambda r: None)
        if "ds" in data:
            for bs in args.eval_batch_sizes:
                attempt(f"eval {device} batch {bs}", lambda bs=bs: measure_eval(data["ds"], sizes, device, bs),
                        doc["eval"]["results"].append)

    if "train" in args.sections and trainer is not None:
        if args.unfused and device.startswith("cuda"):
            for bs in args.train_batch_sizes:
                attempt(f"train {device} unfused_loss batch {bs}",
                        lambda bs=bs: trainer.measure(device, bs, args.train_warmup, args.train_steps,
                                                      args.max_measure_s, fused_loss=False),
                        doc["train"]["results"].append)
        if args.host_cpu:
            for bs in [b for b in args.train_batch_sizes if b <= 1024][:2]:
                attempt(f"train host cpu fused_loss batch {bs}",
                        lambda bs=bs: trainer.measure("cpu", bs, 1, 2, args.max_measure_s),
                        doc["train"]["host_cpu"].append)

    save()
    print(markdown(doc))
    print(f"wrote {prefix.with_suffix('.json')} and {prefix.with_suffix('.md')}")
    measured = doc["train"].get("results") or doc["eval"].get("results") or doc["clip"].get("results")
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
