"""bench/gpu/run.py, the GPU check of issue 16: its CPU dry run (tiny sizes) in a Python that cannot import
Ray, vLLM or MLflow and has no open_clip except the one the script installs from bench/gpu/wheels, as on the
GPU image. Checks the JSON's fields and that every measured number is positive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_emf.precision import native_bf16

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu" / "run.py"

pytestmark = pytest.mark.integration    # the script runs as its own process (what it may import is checked)

# Loaded at interpreter start through PYTHONPATH: Ray, vLLM and MLflow cannot be imported at all; open_clip and
# the two packages only it needs are found only under the folder the script installs the wheels into.
SITECUSTOMIZE = textwrap.dedent('''
    import importlib.abc, importlib.machinery, sys

    BLOCKED = {"ray", "vllm", "mlflow"}
    FROM_WHEELS = {"open_clip", "ftfy", "wcwidth"}

    class _Image(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in BLOCKED:
                raise ImportError(f"{name} is not installed on the GPU image (blocked by the test)")
            if top in FROM_WHEELS and name == top:
                where = [p for p in sys.path if "llm_emf_gpu_site_" in p]
                spec = importlib.machinery.PathFinder.find_spec(name, where) if where else None
                if spec is None:
                    raise ImportError(f"{name} is not installed on the GPU image (blocked by the test)")
                return spec
            return None

    sys.meta_path.insert(0, _Image())
''')


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, str, Path]:
    tmp = tmp_path_factory.mktemp("gpu_dry_run")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHONPATH=str(tmp / "site"), OMP_NUM_THREADS="1", TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    prefix = tmp / "gpu_cpu_tiny"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--threads", "1",
                           "--out", str(prefix)], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(prefix.with_suffix(".json").read_text()), prefix.with_suffix(".md").read_text(), tmp


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


def test_runs_without_ray_vllm_mlflow_and_records_the_machine(dry_run):
    doc, _, _ = dry_run
    assert doc["device"] == "cpu" and doc["tiny"] is True
    assert doc["errors"] == [], doc["errors"]
    assert doc["command"].startswith("python bench/gpu/run.py --device cpu --tiny")
    m = doc["machine"]
    assert m["ray_loaded"] is False and m["vllm_loaded"] is False and m["mlflow_loaded"] is False
    assert m["cuda"] is None and m["torch_threads"] == 1 and m["cpus"] >= 1 and m["python"] and m["torch"]
    assert set(doc["sizes"]) >= {"items_per_domain", "seq_len", "users", "text_dim", "eval_users",
                                 "eval_items_per_domain"}
    assert doc["sizes"]["text_dim"] == 384 and doc["sizes"]["seq_len"] == 30
    assert _positive(doc["wall_s"]) and doc["wall_s"] < 60


def test_training_rows(dry_run):
    doc, _, _ = dry_run
    train = doc["train"]
    assert train["model"]["use_text"] is True and train["model"]["fusion"] == "early"
    rows = train["results"]
    assert [r["batch_size"] for r in rows] == [16, 64]
    for r in rows:
        assert r["device"] == "cpu" and r["variant"] == "fused_loss"
        assert r["dtype"] == ("bf16 autocast" if native_bf16("cpu") else "fp32 (no native bf16)")
        assert r["timed_steps"] >= 1 and r["warmup_steps"] == 1
        for key in ("sequences_per_s", "positions_per_s", "step_ms_median", "timed_s", "last_loss"):
            assert _positive(r[key]), (key, r)
    assert train["host_cpu"] == []            # only a cuda run also times the host CPU


def test_evaluation_rows(dry_run):
    doc, _, _ = dry_run
    (r,) = doc["eval"]["results"]
    assert r["cases"] == doc["sizes"]["eval_users"] and r["items_per_domain"] == doc["sizes"]["eval_items_per_domain"]
    for key in ("evaluate_s", "scorer_s", "users_per_s", "scores_per_s"):
        assert _positive(r[key]), (key, r)
    assert r["scorer_calls"] >= 2 and set(r["mrr_full"]) == {"X", "Y"}
    assert all(0 < v <= 1 for v in r["mrr_full"].values())


def test_clip_rows_from_the_carried_wheels(dry_run):
    doc, _, tmp = dry_run
    clip = doc["clip"]
    assert "skipped" not in clip, clip.get("skipped")
    assert clip["open_clip"]["source"] == "bench/gpu/wheels" and clip["open_clip"]["version"] == "3.3.0"
    assert clip["open_clip"]["path"].startswith(str(tmp))       # installed into a temporary folder, not the venv
    assert clip["model"] == "ViT-B-32" and clip["vision_params"] > 80e6
    assert [(r["precision"], r["batch_size"]) for r in clip["results"]] == [("fp32", 2)]
    for r in clip["results"]:
        assert _positive(r["images_per_s"]) and r["finite"] and r["embedding_dim"] == 512 and r["image_size"] == 224


def test_targets_and_markdown(dry_run):
    doc, md, _ = dry_run
    t = doc["targets"]
    assert t["train_speedup"]["pass"] is None and _positive(t["train_speedup"]["device_best_sequences_per_s"])
    assert t["clip_images_per_s"]["target"] == 2500 and t["clip_images_per_s"]["pass"] is None
    for heading in ("## Targets", "## Training throughput", "## Full-ranking evaluation", "## CLIP image encoding"):
        assert heading in md
    assert doc["command"] in md


def test_wheels_are_small_and_pinned():
    wheels = sorted(p.name for p in (REPO / "bench" / "gpu" / "wheels").glob("*.whl"))
    assert wheels == ["ftfy-6.3.1-py3-none-any.whl", "open_clip_torch-3.3.0-py3-none-any.whl",
                      "wcwidth-0.2.13-py2.py3-none-any.whl"]
    assert sum((REPO / "bench" / "gpu" / "wheels" / w).stat().st_size for w in wheels) < 4 << 20
