"""``llm-emf recommend --all``: every user's top-k of both domains as a Ray Data job, resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from llm_emf.cli.main import main
from llm_emf.data.schema import Dataset
from llm_emf.jobs import parts_folder
from llm_emf.serving import load_models, recommend, top_k

pytestmark = pytest.mark.integration


def _argv(run, output, batch_size=8):
    return ["recommend", "--run", str(run), "--all", "--output", str(output), "-k", "4", "--batch-size",
            str(batch_size)]


def test_every_test_user_gets_the_same_top_k_as_one_at_a_time(trained_run, local_ray, tmp_path, capsys):
    run, dataset_dir = trained_run
    output = tmp_path / "recs.parquet"
    assert main(_argv(run, output)) == 0
    assert "recommend: 20 users: 20 done, 0 skipped (cached), 0 failed" in capsys.readouterr().out

    ds = Dataset.read(dataset_dir)
    test = ds.split("test")
    table = pq.read_table(output)
    assert table.num_rows == 2 * test.num_rows
    assert sorted(table.column("request").to_pylist()) == sorted(
        f"{d}:{u}" for d in ds.meta.domains for u in test.column("user_id").to_pylist())
    _, _, models = load_models(run)
    rows = {r["request"]: r for r in table.to_pylist()}
    ids = ds.items.column("item_id").to_pylist()
    for user, history in zip(test.column("user_id").to_pylist(), test.column("items").to_pylist()):
        for d, name in enumerate(ds.meta.domains):
            row = rows[f"{name}:{user}"]
            expected = recommend(models, history, d, 4)
            assert row["item_indices"] == [i for i, _ in expected]
            assert row["item_ids"] == [ids[i] for i, _ in expected]
            np.testing.assert_allclose(row["scores"], [s for _, s in expected], rtol=1e-5, atol=1e-6)
            assert not set(row["item_indices"]) & set(history)          # seen items left out
    manifest = json.loads(output.with_suffix(".json").read_text())
    assert (manifest["split"], manifest["k"], manifest["users"]) == ("test", 4, 20)

    # A rerun finds every user done and computes nothing.
    assert main(_argv(run, output)) == 0
    assert "20 users: 0 done, 20 skipped (cached)" in capsys.readouterr().out
    assert pq.read_table(output).sort_by("request").equals(table.sort_by("request"))


def test_top_k_marks_positions_beyond_the_unseen_items():
    class Flat:
        def domain_slice(self, d):
            return slice(0, 3)

        def build_eval_batch(self, inputs):
            return len(inputs.starts)

        def score(self, n, d):
            import torch
            return torch.tensor([[3.0, 2.0, 1.0]] * n)

    from llm_emf.model.batch import Ragged

    inputs = Ragged(np.array([0, 1, 2]), np.array([0, 2]), np.array([2, 3]))     # histories [0, 1] and [2]
    indices, scores = top_k({0: Flat()}, inputs, 0, k=3, exclude_seen=True)
    assert indices.tolist() == [[2, -1, -1], [0, 1, -1]]
    assert scores[0, 0] == 1.0 and np.isinf(scores[0, 1])


def test_bad_arguments_are_clear_errors(trained_run, capsys):
    run, _ = trained_run
    assert main(["recommend", "--run", str(run)]) == 2
    assert "expected --user and --domain (one user), or --all" in capsys.readouterr().err
    assert main(["recommend", "--run", str(run), "--all", "--batch-size", "0"]) == 2
    assert "--batch-size and --concurrency: expected positive integers, found 0" in capsys.readouterr().err


STALL_AFTER_FIRST_PART = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import llm_emf.jobs.parts as parts
    real_write_part = parts.write_part
    def write_part_then_stall(*args, **kwargs):
        path = real_write_part(*args, **kwargs)
        Path({marker!r}).touch()
        time.sleep(600)
    parts.write_part = write_part_then_stall
    from llm_emf.cli.main import main
    sys.exit(main({argv!r}))
""")


@pytest.mark.slow
def test_a_killed_job_resumes_without_redoing_finished_users(trained_run, local_ray, tmp_path, capsys):
    run, _ = trained_run
    output, marker = tmp_path / "recs.parquet", tmp_path / "one-part-written"
    # batch size 2: Ray Data blocks of 8 users, so the first part file holds some users, not all 20
    script = STALL_AFTER_FIRST_PART.format(marker=str(marker), argv=_argv(run, output, 2))
    env = {**os.environ, "RAY_ADDRESS": "local"}    # the child starts its own Ray, never joins this one
    with open(tmp_path / "killed.log", "wb") as log:
        job = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not marker.exists() and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), (tmp_path / "killed.log").read_text()[-3000:]
            os.kill(job.pid, signal.SIGKILL)
            assert job.wait(timeout=30) == -signal.SIGKILL
        finally:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            job.wait(timeout=30)
    assert not output.exists()
    [part] = Path(parts_folder(output)).glob("part-*.parquet")
    finished = len(set(pq.read_table(part).column("user_id").to_pylist()))
    assert 0 < finished < 20

    assert main(_argv(run, output, 2)) == 0
    assert f"20 users: {20 - finished} done, {finished} skipped (cached)" in capsys.readouterr().out
    reference = tmp_path / "reference.parquet"
    assert main(_argv(run, reference)) == 0
    resumed, expected = (pq.read_table(p).sort_by("request").to_pydict() for p in (output, reference))
    # Same rows and rankings; scores equal up to float32 rounding (users were batched differently): scores
    # are dot products of size ~0.3, so a score near 0 can differ by ~1e-8, far beyond any rtol of itself.
    assert resumed["request"] == expected["request"] and resumed["item_ids"] == expected["item_ids"]
    np.testing.assert_allclose(np.concatenate(resumed["scores"]), np.concatenate(expected["scores"]), rtol=1e-5,
                               atol=1e-6)
