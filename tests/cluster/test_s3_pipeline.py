"""The README's storage setting for real: ``llm-emf run --config configs/smoke.yaml pipeline.storage=s3://...``
against a real S3 API (moto on 127.0.0.1) with MLflow tracked on a server whose artifacts are in the same bucket.

One sequence of runs, as a user would meet them: the first run is killed (SIGKILL) during ``embed``, the second
during ``train`` after its first epoch's checkpoint, the third finishes, the fourth skips every stage. Checked
on the way: the killed embed job's finished batches are in the bucket and the rerun encodes only the rest; the
resumed training trains only the missing epoch and its history has each epoch once; every stage output is an
object in the bucket; the working directory stays empty; the runs, params, metrics and artifacts are on the
MLflow server and its artifacts in the bucket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
# small feature batches: the killed embed job has finished parts and unfinished items
OVERRIDES = ["features.embed.batch_size=8", "pipeline.ray_dashboard=false", "tracking.experiment=s3-smoke"]

# Runs the real CLI in a child; at a known point (``{point}``) it signals the test and stalls, so the test's
# SIGKILL lands there while Ray keeps working.
STALLING_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    def stall():
        Path({marker!r}).touch()
        time.sleep(900)

    if {point!r} == "embed":                       # after the embed job's 2nd part is in the bucket
        import llm_emf.jobs.parts as parts
        real, written = parts.write_part, []
        def write_part(table, folder, number):
            path = real(table, folder, number)
            if "/embed/" in folder:
                written.append(path)
                if len(written) == 2:
                    stall()
            return path
        parts.write_part = write_part
    else:                                           # after the first epoch's checkpoint is in the bucket
        import llm_emf.training.loop as loop
        real = loop._report_checkpoint
        def report(*args, **kwargs):
            real(*args, **kwargs)
            stall()
        loop._report_checkpoint = report
    from llm_emf.cli.main import main
    sys.exit(main({argv!r}))
""")


def _child_env(extra: dict) -> dict:
    env = {**os.environ, **extra, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["RAY_ADDRESS"] = "local"        # its own small Ray, never a cluster someone left running
    return env


def _argv(storage: str) -> list[str]:
    return ["run", "--config", str(ROOT / "configs" / "smoke.yaml"), f"pipeline.storage={storage}", *OVERRIDES]


def _run(argv: list[str], env: dict, cwd: Path, log: Path) -> str:
    with open(log, "wb") as out:
        res = subprocess.run([sys.executable, "-m", "llm_emf.cli.main", *argv], cwd=cwd, env=env, stdout=out,
                             stderr=subprocess.STDOUT, timeout=900)
    text = log.read_text(errors="replace")
    assert res.returncode == 0, text[-4000:]
    return text


def _run_and_kill(point: str, argv: list[str], env: dict, cwd: Path, tmp: Path) -> float:
    """Start a run that stalls at ``point``, SIGKILL it (and the Ray it started) there; the seconds it ran."""
    marker, log = tmp / f"{point}.reached", tmp / f"killed-in-{point}.log"
    script = STALLING_RUN.format(marker=str(marker), point=point, argv=argv)
    start = time.monotonic()
    with open(log, "wb") as out:
        job = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while not marker.exists() and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), log.read_text(errors="replace")[-4000:]
            os.killpg(job.pid, signal.SIGKILL)     # the driver and the local Ray it started: a lost machine
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
    return time.monotonic() - start


def _s3(s3_server):
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(endpoint_override=s3_server.endpoint, access_key="testing", secret_key="testing",
                             region="us-east-1")


def _marker(s3_server, bucket: str, key: str) -> dict:
    with _s3(s3_server).open_input_stream(f"{bucket}/{key}") as f:
        return json.loads(f.read())


def _read_rows(s3_server, bucket: str, key: str) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(f"{bucket}/{key}", filesystem=_s3(s3_server)).num_rows


def _stage_keys(keys: list[str], stage: str) -> list[str]:
    return [k for k in keys if k.startswith(f"smoke/{stage}/")]


def test_smoke_pipeline_on_s3_survives_kills_resumes_and_skips(s3_server, mlflow_server, mlflow_client, tmp_path):
    bucket = s3_server.create_bucket()
    storage = f"s3://{bucket}/smoke"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = _child_env({**s3_server.env, **mlflow_server.env, "LLM_EMF_CACHE": str(tmp_path / "cache")})
    argv = _argv(storage)

    # 1. killed during embed: two finished batches are objects, nothing is published
    _run_and_kill("embed", argv, env, cwd, tmp_path)
    keys = s3_server.keys(bucket, "smoke")
    parts = [k for k in _stage_keys(keys, "embed") if "/features.parquet.parts/part-" in k]
    assert len(parts) == 2, keys
    finished = sum(_read_rows(s3_server, bucket, k) for k in parts)
    assert not any(k.endswith("/features.parquet") for k in keys)
    assert _stage_keys(keys, "prepare") and any(k.endswith("_SUCCESS.json") for k in _stage_keys(keys, "enrich"))

    # 2. the rerun skips prepare and enrich, embeds only what the killed run had not; killed after epoch 1
    _run_and_kill("train", argv, env, cwd, tmp_path)
    keys = s3_server.keys(bucket, "smoke")
    [embed_done] = [k for k in _stage_keys(keys, "embed") if k.endswith("_SUCCESS.json")]
    embed = _marker(s3_server, bucket, embed_done)["summary"]
    assert embed["skipped_cached"] == finished and embed["done"] == embed["total"] - finished, embed
    assert not any(".parts/" in k for k in _stage_keys(keys, "embed"))
    assert any("/checkpoint" in k for k in _stage_keys(keys, "train")), keys
    assert not any(k.endswith("_SUCCESS.json") for k in _stage_keys(keys, "train"))

    # 3. the rerun resumes training at epoch 2 and finishes every stage
    log = _run(argv, env, cwd, tmp_path / "third.log")
    assert "[prepare] skipped" in log and "[embed] skipped" in log and "[train] running" in log
    assert "epoch 1/2" not in log and "epoch 2/2" in log          # epoch 1 came from the bucket's checkpoint
    keys = s3_server.keys(bucket, "smoke")
    summary = _marker(s3_server, bucket, [k for k in keys if k.endswith("last_run.json")][0])["stages"]
    for stage in ("prepare", "enrich", "embed", "train", "evaluate", "recommend"):
        assert any(k.endswith("_SUCCESS.json") for k in _stage_keys(keys, stage)), (stage, keys)
    [history_key] = [k for k in _stage_keys(keys, "train") if k.endswith("/history.json")]
    history = _marker(s3_server, bucket, history_key)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert any(k.endswith("recommendations.parquet") for k in _stage_keys(keys, "recommend"))
    assert summary["recommend"]["users"] > 0

    # 4. a second run finds every marker
    log = _run(argv, env, cwd, tmp_path / "fourth.log")
    for stage in ("prepare", "enrich", "embed", "train", "evaluate", "recommend"):
        assert f"[{stage}] skipped" in log

    # nothing but the bucket: no s3:/ folder, no mlflow.db, no runs/ in the working directory
    assert sorted(p.name for p in cwd.iterdir()) == []

    # MLflow: the training run on the server, its artifacts in the bucket
    client = mlflow_client
    [experiment] = [e for e in client.search_experiments() if e.name == "s3-smoke"]
    runs = client.search_runs([experiment.experiment_id])
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert finished, [(r.info.run_name, r.info.status) for r in runs]
    run = finished[0]
    assert run.data.params["seed"] == "7" and run.data.params["pipeline.storage"] == storage
    assert "train_loss" in run.data.metrics and any(m.startswith("valid/") for m in run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    artifacts = s3_server.keys(mlflow_server.bucket, mlflow_server.artifacts_prefix)
    assert any(k.endswith(".png") for k in artifacts) and any(k.endswith("config.yaml") for k in artifacts), artifacts
