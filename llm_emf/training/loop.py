"""The per-worker training function: a pure function of its config dict (Ray's example style).

``train_loop_per_worker({"cfg": <Config as a dict>})`` reads the prepared dataset, builds the model,
resumes from the latest checkpoint if there is one, and per epoch: trains on its shard of the training
sequences, validates (rank 0, through ``llm_emf.evaluation``), reports metrics and a checkpoint, and
stops early when validation MRR stops improving. Ray touch-points are in ``session.py``; ``config["hooks"]``
(optional) holds TrainHook objects called at train start, batch start and epoch end (``hooks.py``; plus the
one $LLM_EMF_TRAIN_HOOK names);
``config["reports"]`` (under Ray) the driver's queue for placements and epoch lines (``progress.py``).
"""

from __future__ import annotations

import math
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from llm_emf.checkpoints import check_features, features_fingerprint, load_state, save_checkpoint
from llm_emf.config import Config
from llm_emf.config.loader import from_dict
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset
from llm_emf.model import build_model, load_features_for
from llm_emf.model.batch import sequences_of
from llm_emf.model.sampled_loss import NegativeSampler, negative_sampler, target_counts
from llm_emf.precision import use_bf16
from llm_emf.serving.catalog import catalog_record

from .checkpoint import clone_state, epoch_seed, rng_state, seed_everything, set_rng_state
from .compiling import StepCompiler
from .hooks import WorkerContext, hooks_from_env
from .progress import post, worker_record
from .heads import selects_head, validate
from .selection import Selection, flat_metrics

def config_from_dict(mapping: dict) -> Config:
    cfg = from_dict(Config, mapping, source="train_loop_config")
    cfg.validate()
    return cfg


def shard_indices(n: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """DistributedSampler semantics: one seeded permutation per epoch, padded so every rank gets as many."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    total = math.ceil(n / world_size) * world_size
    perm = np.concatenate([perm, perm[: total - n]])
    return perm[rank::world_size]


def loss_sampler(cfg: Config, dataset: Dataset, rank: int) -> NegativeSampler | None:
    """The negative sampler of train.loss (``llm_emf.model.sampled_loss``), from the training target counts;
    None where every domain trains with the full softmax."""
    t = cfg.train
    counts = target_counts(sequences_of(dataset.split("train")), dataset.n_x + dataset.n_y)
    return negative_sampler(t.loss, dataset.n_x, dataset.n_y, counts, t.sampled_negatives, t.sampled_alpha,
                            cfg.seed, rank)


def build_optimizer(model: torch.nn.Module, cfg: Config):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay) \
        if cfg.train.weight_decay > 0 else torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    warmup = cfg.train.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    return opt, sched


def train_epoch(model, optimizer, scheduler, train_seqs, indices: np.ndarray, cfg: Config, device,
                desc: str = "train", before_batch=None, compiler: StepCompiler | None = None) -> float:
    """One pass over ``indices``; returns the mean loss per supervised position (this worker).
    ``before_batch(step)``, if given, is called before each batch is built (``step`` 1-based).
    bf16 autocast is on when ``train.bf16`` asks for it and the device does bf16 natively (use_bf16).
    ``compiler`` (train.compile, compiling.py) runs each forward and backward, falling back to eager mode
    if compiling fails."""
    model.train()
    bf16 = use_bf16(cfg.train.bf16, device)
    inner = model.module if hasattr(model, "module") else model
    l2 = cfg.train.embedding_l2
    total, count = 0.0, 0
    starts = range(0, len(indices), cfg.train.batch_size)
    for step, start in enumerate(tqdm(starts, desc=desc, mininterval=10, disable=None, leave=False), 1):
        if before_batch is not None:
            before_batch(step)
        rows = indices[start:start + cfg.train.batch_size]
        batch = inner.build_training_batch(train_seqs.take(rows)).to(device)
        def forward_backward(batch=batch):
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss, n = model(batch)
                if l2 > 0:      # train.embedding_l2 (an ablation); part of the reported training loss too
                    loss = loss + l2 * inner.embedding_penalty(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            return loss, n
        loss, n = compiler.run(forward_backward) if compiler is not None else forward_backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * int(n)
        count += int(n)
    return total / max(count, 1)


def _all_reduce_mean(value: float, weight: int, world_size: int) -> float:
    if world_size == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value * weight, float(weight)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / max(t[1], 1.0))


def _broadcast_flag(flag: bool, world_size: int) -> bool:
    """Rank 0 decides early stopping; every rank must leave the loop together (no pickling)."""
    if world_size == 1 or not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


def train_loop_per_worker(config: dict, session=None) -> None:
    """Train one worker. ``config["cfg"]`` is the Config as a dict; ``config.get("hooks")`` a list of
    TrainHook objects (hooks.py)."""
    from .session import RaySession

    cfg = config_from_dict(config["cfg"])
    session = session or RaySession(config.get("run_dir"))
    rank, world = session.rank, session.world_size
    hooks = list(config.get("hooks", ())) + hooks_from_env()
    where = WorkerContext(config.get("run_dir"), rank, world)
    reports = config.get("reports")
    post(reports, "worker", worker_record(rank, world))
    seed_everything(cfg.seed)

    dataset = Dataset.read(cfg.data.dataset)
    features = load_features_for(cfg.model, dataset.items)
    trained = trained_items(dataset)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, features, trained)
    # train.loss: the sampled softmax's candidate draws (None: full softmax in every domain); set on the model
    # itself, before any wrapper, and kept here to reseed per epoch
    negatives = model.negatives = loss_sampler(cfg, dataset, rank)
    # Both computed once; every checkpoint records them (serving/catalog.py serves the model on a grown catalog).
    recorded = {"features_fingerprint": features_fingerprint(features), "catalog": catalog_record(dataset, trained)}
    optimizer, scheduler = build_optimizer(model, cfg)
    selection = Selection(cfg.train.select_protocol, cfg.train.patience)
    history: list[dict] = []
    best_states: dict[str, dict] = {}
    start_epoch = 0
    with session.latest_checkpoint() as folder:
        if folder is not None:
            state = load_state(folder)
            check_features(state, recorded["features_fingerprint"], folder, cfg.model.features)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            selection = Selection.from_state(state["selection"])
            history, best_states, start_epoch = list(state["history"]), dict(state["best_states"]), state["epoch"]
    for hook in hooks:
        hook.on_train_start(where, start_epoch)
    model = session.prepare_model(model)
    inner = model.module if hasattr(model, "module") else model
    device = session.device
    # train.compile: in place, once per worker process, after the move to its device (the state_dict keys stay)
    compiler = StepCompiler(inner, device, cfg.train.compile)

    train_rows = dataset.split("train")
    train_seqs = sequences_of(train_rows)
    train_seqs = train_seqs.take(np.flatnonzero(train_seqs.lengths >= 2))   # a single item supervises nothing
    stopped = selection.should_stop or start_epoch >= cfg.train.epochs
    if stopped and history:
        # Resumed after the run had finished: report the final state again so the caller gets a result.
        _report_checkpoint(session, rank, history[-1], inner, optimizer, scheduler, selection, history,
                           best_states, start_epoch, cfg, recorded)
    epoch = start_epoch
    while not stopped:
        torch.manual_seed(epoch_seed(cfg.seed, epoch, rank))                  # dropout stream of this epoch
        if negatives is not None:
            negatives.set_epoch(epoch)                                        # and the sampled loss's draws
        indices = shard_indices(len(train_seqs.starts), cfg.seed, epoch, rank, world)
        started = time.perf_counter()
        before_batch = _batch_hooks(hooks, where, epoch + 1) if hooks else None
        loss = train_epoch(model, optimizer, scheduler, train_seqs, indices, cfg, device, desc=f"epoch {epoch + 1}",
                           before_batch=before_batch, compiler=compiler)
        loss = _all_reduce_mean(loss, len(indices), world)
        train_s = time.perf_counter() - started
        epoch += 1
        metrics = {"epoch": epoch, "train_loss": loss, "world_size": world,
                   "bf16": float(use_bf16(cfg.train.bf16, device)),   # as it ran: off where not native
                   "compiled": float(compiler.active)}                # as it ran: off after a fallback
        if rank == 0:
            valid, heads = validate(inner, dataset, cfg, device)   # model.head=select: picks a head per domain
            for domain in selection.update(epoch, valid.metrics):
                best_states[domain] = clone_state(inner)
                selection.best[domain]["head"] = heads[domain]
            metrics.update(flat_metrics(valid.metrics, "valid"))
            metrics["valid_mrr"] = float(np.nanmean([valid.metrics[cfg.train.select_protocol][d]["MRR"]
                                                     for d in valid.domains]))
            metrics["best_valid_mrr"] = selection.mean_best_mrr()
            metrics["stale_epochs"] = selection.stale_epochs
            if selects_head(inner):
                metrics.update({f"valid_head/{d}": float(h == "single") for d, h in heads.items()})
            history.append(metrics)
            line = epoch_line(metrics, valid.metrics[cfg.train.select_protocol], cfg, len(indices) * world,
                              train_s, time.perf_counter() - started, heads if selects_head(inner) else None)
            print(line, flush=True)
            post(reports, "epoch", line)              # the driver prints it too: a Ray job's log shows it
        stopped = _broadcast_flag(selection.should_stop or epoch >= cfg.train.epochs, world)
        _report_checkpoint(session, rank, metrics, inner, optimizer, scheduler, selection, history,
                           best_states, epoch, cfg, recorded)
        for hook in hooks:
            hook.on_epoch_end(where, epoch, metrics)


def _batch_hooks(hooks: list, where: WorkerContext, epoch: int):
    def before_batch(step: int) -> None:
        for hook in hooks:
            hook.on_batch_start(where, epoch, step)
    return before_batch


def epoch_line(metrics: dict, valid: dict, cfg, n_sequences: int, train_s: float, total_s: float,
               heads: dict | None = None) -> str:
    """One line per epoch, so a log without a terminal (ray job logs, CI) shows progress; ``heads``: the head
    each domain validated with under model.head=select."""
    mrr = ", ".join(f"{d} {m['MRR']:.4f}" + (f" ({heads[d]} head)" if heads else "") for d, m in valid.items())
    return (f"epoch {metrics['epoch']}/{cfg.train.epochs}: train loss {metrics['train_loss']:.4f}; valid MRR "
            f"({cfg.train.select_protocol}) {mrr}; {total_s:.1f} s; {n_sequences / max(train_s, 1e-9):.0f} "
            f"training sequences/s")


def _report_checkpoint(session, rank, metrics, model, optimizer, scheduler, selection, history, best_states,
                       epoch, cfg, recorded: dict) -> None:
    if rank != 0:
        session.report(metrics, None)
        return
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "selection": selection.state(),
             "history": history, "best_states": best_states, **recorded}
    with tempfile.TemporaryDirectory(prefix="llm_emf_ckpt_") as tmp:
        save_checkpoint(tmp, state, cfg)
        session.report(metrics, tmp)
