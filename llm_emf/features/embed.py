"""``llm-emf embed``: frozen text and image encoders over the catalog on Ray Data (method.md stage 1).

catalog (+ enriched text joined on item_id) -> [CPU stage] fetch, decode, resize images -> [actor pool]
frozen encoders -> FEATURE_SCHEMA Parquet, one row per item. Rows whose content_hash (inputs + model
names) is already in the output are copied, not recomputed. Images that are missing or unreadable get a
zero vector and has_image=false; they are counted and listed in ``<output stem>.image_problems.parquet``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llm_emf import files
from llm_emf.config import Config
from llm_emf.data.schema import DataError
from llm_emf.features.actors import fault_point, map_batches_on_actors
from llm_emf.features.catalog import read_catalog
from llm_emf.features.encoders import MINILM_NAME, FeatureEncoder, clip_image_size, clip_label
from llm_emf.features.images import FetchPolicy, ImageLoader
from llm_emf.features.schema import ENRICHED_SCHEMA, FEATURE_SCHEMA
from llm_emf.hashing import stable_hash
from llm_emf.jobs import JobOutput, JobSummary, side_table, split_cached, table_blocks, write_stream
from llm_emf.ray_local import ensure_ray

PROBLEM_SCHEMA = pa.schema([("item_id", pa.string()), ("image_uri", pa.string()), ("status", pa.string()),
                            ("error", pa.string())])
# kept in the job's part files beside FEATURE_SCHEMA, so a resumed run still knows the image problems of the
# items a killed run finished
PART_EXTRA = pa.schema([("image_uri", pa.string()), ("image_status", pa.string()), ("image_error", pa.string())])


class EncoderActor(FeatureEncoder):
    """The job's encoder actor: ``FeatureEncoder`` behind the actor hook point (off unless a test sets
    $LLM_EMF_ACTOR_HOOK)."""

    def __call__(self, batch):
        fault_point()
        return super().__call__(batch)


def texts_for(catalog: pa.Table, enriched_path: str | None, summary: JobSummary) -> tuple[list, list]:
    """Per catalog row: the text to encode and its prompt version (enriched text where available, else title)."""
    titles = catalog.column("title").to_pylist()
    if enriched_path is None:
        return titles, [None] * len(titles)
    if not files.is_file(enriched_path):
        raise DataError(enriched_path, None, "an enriched table (run `llm-emf enrich` first)", "no such file")
    enriched = files.read_parquet(enriched_path)
    missing = [n for n in ("item_id", "text", "prompt_version") if n not in enriched.column_names]
    if missing:
        raise DataError(enriched_path, None, f"columns of ENRICHED_SCHEMA {ENRICHED_SCHEMA.names}", f"missing {missing}")
    by_id = dict(zip(enriched.column("item_id").to_pylist(),
                     zip(enriched.column("text").to_pylist(), enriched.column("prompt_version").to_pylist())))
    texts, versions = [], []
    for item_id, title in zip(catalog.column("item_id").to_pylist(), titles):
        text, version = by_id.get(item_id, (None, None))
        if text is None:
            summary.count("text_from_title")  # not enriched (or failed without a title): fall back to the title
            text = title
        texts.append(text)
        versions.append(version)
    return texts, versions


def run_embed(cfg: Config, items_path: str | Path, enriched_path: str | Path | None = None) -> JobSummary:
    import ray
    import torch

    ec = cfg.features.embed
    catalog = read_catalog(items_path)
    summary = JobSummary("embed", total=catalog.num_rows)
    texts, versions = texts_for(catalog, str(enriched_path) if enriched_path else None, summary)
    clip_name = clip_label(ec.clip_model, ec.clip_pretrained, cfg.seed) if (ec.use_images or ec.text_backend == "clip") else None
    text_model = MINILM_NAME if ec.text_backend == "minilm" else clip_name
    image_model = clip_name if ec.use_images else None
    uris = catalog.column("image_uri").to_pylist() if ec.use_images else [None] * catalog.num_rows
    ids, domains = catalog.column("item_id").to_pylist(), catalog.column("domain").to_pylist()
    # image content is keyed by its URI: hashing the bytes would mean reading every image on every re-run
    hashes = [stable_hash(i, d, t, u, text_model, image_model, v) for i, d, t, u, v in
              zip(ids, domains, texts, uris, versions)]
    rows = pa.table({"item_id": ids, "domain": pa.array(domains, pa.int8()), "text": pa.array(texts, pa.string()),
                     "image_uri": pa.array(uris, pa.string()), "prompt_version": pa.array(versions, pa.string()),
                     "content_hash": hashes})
    out = JobOutput(ec.output, FEATURE_SCHEMA, "content_hash", extra=PART_EXTRA)
    todo_mask, cached = split_cached(rows.column("content_hash"), out)
    todo = rows.filter(todo_mask)
    summary.skipped_cached = cached.num_rows
    problems: list[dict] = []

    def batches():
        if todo.num_rows == 0:
            return
        ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)
        ds = ray.data.from_arrow(table_blocks(todo, ec.batch_size * 8))
        size = clip_image_size(ec.clip_model) if ec.use_images else 1
        # CPU stage: its own resource request keeps Ray from fusing it into the encoder actor, so images are
        # fetched and decoded by parallel tasks while the actor encodes
        policy = FetchPolicy.from_config(ec, files.parent(items_path))   # images: dataset folder + roots
        ds = ds.map_batches(ImageLoader(size, policy=policy), batch_size=ec.batch_size, batch_format="numpy",
                            num_cpus=0.5)
        ds = map_batches_on_actors(ds, EncoderActor, fn_constructor_kwargs=dict(
            text_backend=ec.text_backend, clip_model=ec.clip_model, clip_pretrained=ec.clip_pretrained,
            use_images=ec.use_images, seed=cfg.seed), batch_size=ec.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=ec.concurrency), num_gpus=1 if torch.cuda.is_available() else 0,
            threads=ec.threads, actors=ec.concurrency)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            n = batch.num_rows
            status = batch.column("image_status")
            if ec.use_images:
                for name in ("missing", "unreadable"):
                    summary.count(f"image_{name}", pc.sum(pc.equal(status, name)).as_py() or 0)
                bad = batch.filter(pc.not_equal(status, "ok")).select(["item_id", "image_uri", "image_status",
                                                                       "image_error"]).to_pylist()
                problems.extend(dict(item_id=r["item_id"], image_uri=r["image_uri"], status=r["image_status"],
                                     error=r["image_error"]) for r in bad)
            summary.count("text_truncated", pc.sum(batch.column("text_truncated")).as_py() or 0)
            summary.count("no_text", n - (pc.sum(batch.column("has_text")).as_py() or 0))
            yield batch.append_column("text_model", pa.array([text_model] * n, pa.string())) \
                       .append_column("image_model", pa.array([image_model] * n, pa.string()))

    side = side_table(out.path, "image_problems")

    def write_problems() -> None:
        table = image_problems(cached, side, problems, ec.use_images)
        if table.num_rows:
            files.write_parquet(table, side)
            summary.failed_output = side
        else:
            files.remove(side)

    write_stream(batches(), cached, out, summary, total=todo.num_rows, before_publish=write_problems)
    return summary


def image_problems(cached: pa.Table, side: str, new: list[dict], use_images: bool) -> pa.Table:
    """The problem rows of every item in the output: from the old side table for items reused from the
    published output (their PART_EXTRA columns are null), from the part files for items a killed run
    finished, and this run's."""
    tables = [pa.Table.from_pylist(new, schema=PROBLEM_SCHEMA)]
    status = cached.column("image_status")
    if files.is_file(side):
        old = files.read_parquet(side).cast(PROBLEM_SCHEMA)
        from_output = cached.filter(pc.is_null(status)).column("item_id")
        tables.insert(0, old.filter(pc.is_in(old.column("item_id"), value_set=from_output)))
    if use_images:
        bad = cached.filter(pc.fill_null(pc.not_equal(status, "ok"), False))
        tables.insert(-1, pa.table([bad.column(c) for c in ("item_id", "image_uri", "image_status", "image_error")],
                                   schema=PROBLEM_SCHEMA))
    return pa.concat_tables(tables)
