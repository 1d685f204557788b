"""Offline batch recommendations: the top-k items of each domain for every user of a split, as a Ray Data job.

Users are streamed through an actor pool; each actor loads the trained run once (``load_models``) and
scores a batch of histories for both domains at a time, a chunk of items at a time with a running top-k
(``scoring.top_k``), so an actor's memory does not grow with the catalog. Output is one Parquet row per
(user, domain), written the way the feature jobs write: every finished batch is a durable part file, so a killed job
rerun with the same arguments recomputes only the users it had not finished (``llm_emf.jobs.write_stream``).
The history fed to the model is everything the split holds for the user, target included: what a live
system would know when it refreshes that user's recommendations. The run, the dataset and the output may be
local paths or object-store URIs (``llm_emf.files``): the actors, on any node, load the run from where it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_emf import files
from llm_emf.checkpoints import load_checkpoint_config
from llm_emf.data.schema import SPLITS, Dataset
from llm_emf.features.actors import fault_point, map_batches_on_actors
from llm_emf.jobs import JobOutput, JobSummary, split_cached, table_blocks, write_stream
from llm_emf.ray_local import ensure_ray

from .run import find_checkpoint, load_models
from .scoring import top_k

RECOMMENDATION_SCHEMA = pa.schema([
    pa.field("request", pa.string(), nullable=False),     # "<domain>:<user_id>", unique: the resume key
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("item_ids", pa.list_(pa.string())),          # best first
    pa.field("item_indices", pa.list_(pa.int32())),
    pa.field("scores", pa.list_(pa.float32())),
])


def users_of(dataset: Dataset, split: str) -> pa.Table:
    """``user_id, items`` of every sequence of ``split`` (one row per user there)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, found '{split}'")
    rows = dataset.split(split).select(["user_id", "items"])
    if pc.count_distinct(rows.column("user_id")).as_py() != rows.num_rows:
        raise ValueError(f"dataset '{dataset.meta.name}', {split} split: expected one sequence per user, "
                         "found a user_id on several rows")
    return rows


class Recommender:
    """Ray Data actor: loads the run once, then turns batches of ``user_id, items`` into recommendation rows."""

    def __init__(self, run: str, dataset_folder: str, features: str | None, k: int, exclude_seen: bool):
        import ray
        import torch

        # As many torch threads as CPUs Ray gave this actor: more would spin against the other actors.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1) if ray.is_initialized() else 1
        torch.set_num_threads(max(1, int(cpus)))

        _, self.dataset, self.models = load_models(run, Dataset.read(dataset_folder), features)
        self.k, self.exclude_seen = k, exclude_seen
        self.item_ids = np.asarray(self.dataset.items.column("item_id").to_pylist(), dtype=object)

    def __call__(self, batch: pa.Table) -> pa.Table:
        fault_point()
        from llm_emf.model.batch import Ragged

        users = batch.column("user_id").to_pylist()
        histories = Ragged.from_arrow(batch.column("items"))
        out = {name: [] for name in RECOMMENDATION_SCHEMA.names}
        for domain, name in enumerate(self.dataset.meta.domains):
            indices, scores = top_k(self.models, histories, domain, self.k, self.exclude_seen)
            for user, idx, sc in zip(users, indices, scores):
                found = idx >= 0
                out["request"].append(f"{name}:{user}")
                out["user_id"].append(user)
                out["domain"].append(name)
                out["item_ids"].append(self.item_ids[idx[found]].tolist())
                out["item_indices"].append(idx[found].tolist())
                out["scores"].append(sc[found].tolist())
        return pa.table(out, schema=RECOMMENDATION_SCHEMA)


def recommend_all(run: str | Path, output: str | Path, split: str = "test", k: int = 10,
                  dataset_folder: str | Path | None = None, features: str | None = None,
                  exclude_seen: bool = True, batch_size: int = 256, concurrency: int = 1,
                  dashboard: bool = True) -> JobSummary:
    """Write the top-k of both domains for every user of ``split`` to ``output`` (Parquet); resumable.
    ``dashboard``: a local Ray started here serves its dashboard (``llm_emf.ray_local.ensure_ray``)."""
    import ray

    if k < 1:
        raise ValueError(f"k: expected a positive integer, found {k}")
    run = files.absolute(run)                       # the actors may run elsewhere
    dataset_folder = files.absolute(dataset_folder or load_checkpoint_config(find_checkpoint(run)).data.dataset)
    dataset = Dataset.read(dataset_folder)
    users = users_of(dataset, split)
    output = files.absolute(output)
    features = files.absolute(features) if features else None
    summary = JobSummary("recommend", total=users.num_rows, unit="users")
    ids = users.column("user_id").to_pylist()
    requests = pa.array([f"{name}:{u}" for name in dataset.meta.domains for u in ids])     # domain-major
    out = JobOutput(output, RECOMMENDATION_SCHEMA, "request")
    todo_mask, cached = split_cached(requests, out)
    # A user is redone unless both of its rows are there (they are written together, so normally both or none).
    missing = np.asarray(todo_mask.to_numpy(zero_copy_only=False)).reshape(2, len(ids)).any(axis=0)
    todo = users.filter(pa.array(missing))
    cached = cached.filter(pc.invert(pc.is_in(cached.column("user_id"), value_set=todo.column("user_id"))))
    summary.skipped_cached = users.num_rows - todo.num_rows

    def batches():
        if todo.num_rows == 0:
            return
        ensure_ray(dashboard=dashboard)
        ds = ray.data.from_arrow(table_blocks(todo, batch_size * 4))
        ds = map_batches_on_actors(ds, Recommender, fn_constructor_kwargs=dict(
            run=str(run), dataset_folder=dataset_folder, features=features, k=k, exclude_seen=exclude_seen),
            batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=concurrency))
        yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)

    # write_stream counts rows; one user is one row per domain, so report users.
    write_stream(batches(), cached, out, summary, total=2 * todo.num_rows)
    summary.done //= 2
    _write_manifest(output, run, dataset, split, k, exclude_seen, summary)
    return summary


def manifest_path(output: str | Path) -> str:
    """``<output stem>.json`` beside the table."""
    name = files.basename(output)
    return files.join(files.parent(output), (name.rsplit(".", 1)[0] if "." in name else name) + ".json")


def _write_manifest(output: str, run, dataset: Dataset, split: str, k: int, exclude_seen: bool,
                    summary: JobSummary) -> None:
    """What produced the table, next to it: a later reader can tell runs, datasets and settings apart."""
    manifest = {"run": str(run), "dataset": dataset.meta.name, "fingerprint": dataset.meta.fingerprint,
                "split": split, "k": k, "exclude_seen": exclude_seen, "users": summary.total,
                "domains": list(dataset.meta.domains)}
    files.write_json(manifest_path(output), manifest)
