"""A feature job that fails, is interrupted or is hard-killed midway keeps its finished batches (as part files);
the rerun processes only the rest and ends with the same table as an uninterrupted run. A corrupt part file is
set aside with a warning and its items are redone. (The real `llm-emf embed` under SIGKILL and actor crashes:
test_feature_job_hard_faults.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_emf.features import enrich as enrich_module
from llm_emf.jobs import JobOutput, JobSummary, parts_folder, split_cached, write_stream
from llm_emf.jobs.parts import write_part

SCHEMA = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.int64()),
                    pa.field("error", pa.string())])
KEYS = pa.array([f"k{i:02d}" for i in range(12)])


def compute(keys: list[str]) -> pa.Table:
    """The 'expensive' work: deterministic per key; k05 fails (an error row, retried on the next run)."""
    return pa.table({"key": keys, "value": [int(k[1:]) ** 2 for k in keys],
                     "error": ["boom" if k == "k05" else None for k in keys]}, schema=SCHEMA)


def run_job(output: Path, fail_after_batches: int | None = None, batch_size: int = 3) -> tuple[JobSummary, list]:
    out = JobOutput(output, SCHEMA, "key", is_failed=lambda t: pa.compute.is_valid(t.column("error")))
    todo_mask, cached = split_cached(KEYS, out)
    todo = KEYS.filter(todo_mask).to_pylist()
    processed: list[str] = []

    def batches():
        for n, i in enumerate(range(0, len(todo), batch_size)):
            if n == fail_after_batches:
                raise KeyboardInterrupt("interrupted by the test")
            processed.extend(todo[i:i + batch_size])
            yield compute(todo[i:i + batch_size])

    summary = JobSummary("test", total=len(todo), skipped_cached=cached.num_rows)
    write_stream(batches(), cached, out, summary, total=len(todo))
    return summary, processed


@pytest.mark.unit
def test_interrupted_job_keeps_finished_batches_and_rerun_does_only_the_rest(tmp_path):
    reference, _ = run_job(tmp_path / "ref.parquet")
    output = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        run_job(output, fail_after_batches=2)                      # 2 batches x 3 items finished
    assert not list(tmp_path.glob(".out.parquet.*.tmp"))
    saved = pq.read_table(output)
    assert saved.column("key").to_pylist() == [f"k{i:02d}" for i in range(6)]
    summary, processed = run_job(output)
    # k05 failed in the first run and is retried; k06..k11 were never done
    assert processed == ["k05"] + [f"k{i:02d}" for i in range(6, 12)]
    assert (summary.skipped_cached, summary.done, summary.failed) == (5, 7, 1)
    assert pq.read_table(output).sort_by("key").equals(pq.read_table(tmp_path / "ref.parquet").sort_by("key"))


@pytest.mark.unit
def test_summary_times_the_first_batch_apart_from_the_rest(tmp_path):
    out = JobOutput(tmp_path / "out.parquet", SCHEMA, "key")
    rows = KEYS.to_pylist()

    def batches():
        time.sleep(0.2)                      # start-up: the first batch is late
        yield compute(rows[:3])
        yield compute(rows[3:6])

    summary = JobSummary("test", total=6)
    write_stream(batches(), SCHEMA.empty_table(), out, summary, total=6)
    assert 0.2 <= summary.first_batch_s <= summary.seconds
    assert f"(first batch after {summary.first_batch_s:.1f} s)" in summary.report()


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import test_feature_job_interruption as t
    from pathlib import Path
    real = t.compute
    def compute_then_die(keys):
        if keys[0] == "k06":
            os.kill(os.getpid(), signal.SIGKILL)              # the OOM killer / kill -9 in the middle of the run
        return real(keys)
    t.compute = compute_then_die
    t.run_job(Path({output!r}))
""")


@pytest.mark.integration          # a process SIGKILLed mid-job
def test_hard_killed_job_resumes_from_its_part_files(tmp_path):
    output = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        run_job(output, fail_after_batches=1)                      # a previous run published k00..k02
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), output=str(output))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    # the killed run finished k03..k05 (one batch) before dying: durable as a part file, not yet published
    parts = sorted(p.name for p in Path(parts_folder(output)).iterdir())
    assert parts == ["part-000001.parquet"]
    assert pq.read_table(Path(parts_folder(output)) / parts[0]).column("key").to_pylist() == ["k03", "k04", "k05"]
    assert pq.read_table(output).column("key").to_pylist() == ["k00", "k01", "k02"]   # previous output intact
    summary, processed = run_job(output)
    # only k05 (failed, so retried) and the never-started k06..k11 are computed again
    assert processed == ["k05"] + [f"k{i:02d}" for i in range(6, 12)]
    assert (summary.skipped_cached, summary.done, summary.failed) == (5, 7, 1)
    assert not Path(parts_folder(output)).exists() and not list(tmp_path.glob(".out.parquet.*.tmp"))
    run_job(tmp_path / "ref.parquet")
    assert pq.read_table(output).sort_by("key").equals(pq.read_table(tmp_path / "ref.parquet").sort_by("key"))


@pytest.mark.unit
def test_corrupt_part_file_is_set_aside_with_a_warning_and_its_items_redone(tmp_path):
    output = tmp_path / "out.parquet"
    folder = Path(parts_folder(output))
    folder.mkdir()
    write_part(compute(["k00", "k01", "k02"]), str(folder), 1)
    bad = Path(write_part(compute(["k03", "k04", "k05"]), str(folder), 2))
    bad.write_bytes(bad.read_bytes()[:-20])                           # truncated: the footer is gone
    (folder / ".part-000003.parquet.tmp").write_bytes(b"PAR1 half a file")   # a write the kill interrupted
    with pytest.warns(RuntimeWarning, match=r"part-000002\.parquet: unreadable part file ignored"):
        summary, processed = run_job(output)
    assert processed == [f"k{i:02d}" for i in range(3, 12)]
    assert (summary.skipped_cached, summary.done) == (3, 9)
    run_job(tmp_path / "ref.parquet")
    assert pq.read_table(output).sort_by("key").equals(pq.read_table(tmp_path / "ref.parquet").sort_by("key"))
    assert not folder.exists()


@pytest.mark.unit
def test_kill_between_publishing_and_removing_parts_repeats_no_row(tmp_path):
    output = tmp_path / "out.parquet"
    run_job(output)
    published = pq.read_table(output)
    folder = Path(parts_folder(output))                                     # as if the rmtree never happened
    folder.mkdir()
    write_part(compute(["k00", "k01", "k02"]), str(folder), 1)
    write_part(compute(["k09", "k10", "k11"]), str(folder), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # nothing here is corrupt
        summary, processed = run_job(output)
    assert processed == ["k05"] and summary.skipped_cached == 11      # only the failed row is retried
    final = pq.read_table(output)
    assert final.num_rows == 12 and final.sort_by("key").equals(published.sort_by("key"))


@pytest.mark.integration
def test_interrupted_enrich_job_resumes_with_only_the_remaining_items(local_ray, tmp_path, monkeypatch):
    from features_fixtures import feature_config, make_catalog

    catalog = make_catalog(tmp_path / "dataset")
    domains = ("Food", "Kitchen")
    # batch_size=1 -> Ray Data blocks of 4 prompts: the 8-item catalog arrives in 2 batches
    overrides = {"features.enrich.backend": "none", "features.enrich.batch_size": 1}
    reference_cfg = feature_config(tmp_path / "ref", **overrides)
    reference = enrich_module.run_enrich(reference_cfg, catalog, domains)
    assert (reference.done, reference.skipped_cached) == (8, 0)

    real_write_stream = enrich_module.write_stream

    def interrupt_after_first_batch(batches, *args, **kwargs):
        def first_then_interrupt():
            iterator = iter(batches)
            yield next(iterator)
            raise KeyboardInterrupt("Ctrl-C during enrichment")
        return real_write_stream(first_then_interrupt(), *args, **kwargs)

    cfg = feature_config(tmp_path / "run", **overrides)
    monkeypatch.setattr(enrich_module, "write_stream", interrupt_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        enrich_module.run_enrich(cfg, catalog, domains)
    monkeypatch.setattr(enrich_module, "write_stream", real_write_stream)
    kept = pq.read_table(cfg.features.enrich.output).num_rows
    assert 0 < kept < 8

    rerun = enrich_module.run_enrich(cfg, catalog, domains)
    assert (rerun.skipped_cached, rerun.done) == (kept, 8 - kept)
    final = pq.read_table(cfg.features.enrich.output).sort_by("item_id")
    assert final.equals(pq.read_table(reference_cfg.features.enrich.output).sort_by("item_id"))
