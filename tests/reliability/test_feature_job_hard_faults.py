"""The real ``llm-emf embed`` job under hard faults: the driver SIGKILLed midway resumes from its part files,
and an encoder actor whose process dies is restarted by Ray without failing the job. Both end with the table
(rows, embedding values, image-problem side table) of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_emf.cli.main import main
from llm_emf.features.actors import map_batches_on_actors
from llm_emf.jobs import parts_folder

from faults import actor_hook_env

pytestmark = pytest.mark.integration

# 24 items, batch_size 1 -> Ray Data blocks of 8 rows -> 3 part files; images on (bad-image cases included)
OVERRIDES = ["features.embed.clip_model=tiny-clip-64", "features.embed.text_backend=clip",
             "features.embed.batch_size=1"]


def embed_argv(catalog: Path, output: Path, summary: Path) -> list[str]:
    return ["embed", "--items", str(catalog), "--raw-titles", "--summary-json", str(summary),
            f"features.embed.output={output}", *OVERRIDES]


def child_env(**extra: str) -> dict[str, str]:
    # RAY_ADDRESS=local: the child starts its own small Ray, never joins this test's or anyone else's cluster
    return {**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def problems(output: Path) -> pa.Table:
    return pq.read_table(output.with_name(output.stem + ".image_problems.parquet")).sort_by("item_id")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    from features_fixtures import make_catalog
    return make_catalog(tmp_path_factory.mktemp("dataset"), n_per_domain=12)


@pytest.fixture(scope="module")
def reference(local_ray, catalog, tmp_path_factory) -> Path:
    """An uninterrupted run in this process."""
    folder = tmp_path_factory.mktemp("reference")
    assert main(embed_argv(catalog, folder / "features.parquet", folder / "summary.json")) == 0
    assert json.loads((folder / "summary.json").read_text())["done"] == 24
    return folder / "features.parquet"


def assert_same_table(output: Path, reference: Path) -> None:
    final, expected = pq.read_table(output).sort_by("item_id"), pq.read_table(reference).sort_by("item_id")
    assert final.num_rows == 24 and final.column("item_id").to_pylist() == expected.column("item_id").to_pylist()
    # each item is encoded alone (batch_size 1) by the same seeded random weights: bit-identical
    assert final.equals(expected)
    assert problems(output).equals(problems(reference))   # the corrupt / missing images of make_catalog


# Runs the real CLI; right after the job's 2nd part file is on disk it signals the test and stalls, so the
# test's SIGKILL lands at a known point (the Ray pipeline keeps running meanwhile).
STALL_AFTER_PARTS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import llm_emf.jobs.parts as parts
    real_write_part, written = parts.write_part, []
    def write_part_then_stall(*args, **kwargs):
        written.append(real_write_part(*args, **kwargs))
        if len(written) == 2:
            Path({marker!r}).touch()
            time.sleep(600)
        return written[-1]
    parts.write_part = write_part_then_stall
    from llm_emf.cli.main import main
    sys.exit(main({argv!r}))
""")


@pytest.mark.cluster      # a Ray job killed mid-run
@pytest.mark.slow
def test_sigkilled_embed_job_resumes_with_only_the_remaining_items(local_ray, catalog, reference, tmp_path):
    output, marker = tmp_path / "out" / "features.parquet", tmp_path / "two-parts-written"
    script = STALL_AFTER_PARTS.format(marker=str(marker), argv=embed_argv(catalog, output, tmp_path / "killed.json"))
    with open(tmp_path / "killed.log", "wb") as log:
        job = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT,
                               env=child_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not marker.exists() and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), (tmp_path / "killed.log").read_text()[-3000:]
            os.kill(job.pid, signal.SIGKILL)                           # kill -9 / the OOM killer, on the driver
            assert job.wait(timeout=30) == -signal.SIGKILL
        finally:
            try:
                os.killpg(job.pid, signal.SIGKILL)   # the Ray processes the killed driver had started
            except ProcessLookupError:
                pass
            job.wait(timeout=30)

    assert not output.exists()                                         # never published
    parts = sorted(Path(parts_folder(output)).glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000001.parquet", "part-000002.parquet"]
    kept = sum(pq.read_metadata(p).num_rows for p in parts)
    assert kept == 16

    summary_path = tmp_path / "rerun.json"
    assert main(embed_argv(catalog, output, summary_path)) == 0
    summary = json.loads(summary_path.read_text())
    assert (summary["total"], summary["skipped_cached"], summary["done"]) == (24, kept, 24 - kept)
    assert not Path(parts_folder(output)).exists()
    assert_same_table(output, reference)


@pytest.mark.cluster      # a Ray actor that dies
@pytest.mark.slow
def test_embed_job_survives_an_encoder_actor_that_dies(catalog, reference, tmp_path):
    output, marker = tmp_path / "out" / "features.parquet", tmp_path / "actor-crashed"
    command = [sys.executable, "-m", "llm_emf.cli.main", *embed_argv(catalog, output, tmp_path / "summary.json")]
    job = subprocess.run(command, capture_output=True, timeout=300,
                         env=child_env(**actor_hook_env(marker)))
    assert job.returncode == 0, job.stderr.decode()[-3000:]
    assert marker.exists()                        # the fault point did fire: the actor's process exited
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["total"], summary["done"], summary["skipped_cached"]) == (24, 24, 0)
    assert_same_table(output, reference)


def crash_on_poison_actor():
    """An actor class that dies (process exit) on the batch holding row 5: once, or on every attempt. Made in a
    function so Ray pickles it by value (workers cannot import this test module)."""

    class CrashOnPoison:
        def __init__(self, marker: str, always: bool):
            self.marker, self.always = marker, always

        def __call__(self, batch):
            if 5 in batch["id"]:
                with open(self.marker, "a") as f:
                    f.write("x")                  # one mark per attempt
                if self.always or os.path.getsize(self.marker) == 1:
                    os._exit(1)
            return batch

    return CrashOnPoison


@pytest.mark.parametrize("always", [False, True], ids=["crashes-once", "crashes-every-time"])
def test_actor_crash_is_retried_but_a_poison_batch_fails_the_job(local_ray, tmp_path, always):
    import ray

    marker = tmp_path / "attempts"
    ds = map_batches_on_actors(ray.data.range(20, override_num_blocks=4), crash_on_poison_actor(),
                               fn_constructor_kwargs=dict(marker=str(marker), always=always), batch_size=5,
                               compute=ray.data.ActorPoolStrategy(size=1))
    if not always:
        assert sorted(ds.to_pandas()["id"]) == list(range(20))          # retried on the restarted actor
        assert marker.read_text() == "xx"
    else:
        with pytest.raises(Exception, match="actor"):                  # bounded, not retried forever
            ds.materialize()
        assert marker.read_text() == "x" * 4                            # 1 try + ACTOR_FAULT_TOLERANCE's 3 restarts
