"""`make demo` (configs/demo.yaml on the bundled sample): small enough for about two minutes on 2 cores
(bench/results/demo_time.md), still the real LLM and CLIP, the LLM converted at install, and a last line that
says how to run a full catalog."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llm_emf.cli.run import full_catalog_lines
from llm_emf.config import load_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"


def test_demo_config_runs_the_real_models_on_a_small_share():
    cfg = load_config(DEMO)
    ec, em = cfg.features.enrich, cfg.features.embed
    assert cfg.data.source == "sample" and cfg.data.synthetic_images
    assert ec.backend == "transformers" and ec.model == "embedded:qwen2.5-coder-0.5b-instruct"
    # enrichment was 250 of the demo's 367 s: a couple dozen items, in one generate() call, short outputs
    assert 0 < ec.limit <= 24 and ec.batch_size >= ec.limit and ec.max_new_tokens <= 32
    assert em.use_images and em.clip_model == "ViT-B-32" and em.text_backend == "minilm"
    assert cfg.model.use_text and cfg.model.use_image
    # it still trains and reports metrics, in a few seconds
    assert {"train", "evaluate"} <= set(cfg.pipeline.stages) and 1 < cfg.train.epochs <= 8
    assert cfg.train.compile is False     # compiling the step took longer than the whole training here


def test_make_demo_converts_the_demo_llm_at_install_and_lets_threads_sleep():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*\binstall\b", text, re.M), "make demo must run the install target first"
    install = re.search(r"^install:.*\n((?:\t.*\n)+)", text, re.M)
    assert install and "-m llm_emf.features.model_source --config configs/demo.yaml" in install.group(1)
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    # threads that sleep while they wait: spinning ones made the demo 2-8x slower on shared cores
    assert "OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE}" in demo and "--config configs/demo.yaml" in demo


def test_demo_ends_with_a_full_catalog_command_that_loads(tmp_path):
    lines = full_catalog_lines(load_config(DEMO), "configs/demo.yaml")
    assert 1 <= len(lines) <= 2 and re.search(r"~\d+ h", lines[0]) and "docs/data.md" in lines[1]
    assert (ROOT / "docs" / "data.md").is_file()
    argv = shlex.split(re.search(r"llm-emf run .*$", lines[0]).group(0))
    assert argv[:4] == ["llm-emf", "run", "--config", "configs/demo.yaml"]
    overrides = [a.replace("=DIR", f"={tmp_path}") for a in argv[4:]]
    full = load_config(ROOT / argv[3], overrides)         # the printed command is a valid config
    assert full.data.source == str(tmp_path) and full.features.enrich.limit == 0
    assert not (full.data.synthetic_images or full.features.embed.use_images or full.model.use_image)
    assert full.eval.n_negatives == 999 and full.pipeline.storage != load_config(DEMO).pipeline.storage
    # after a run on other data there is nothing to add
    assert full_catalog_lines(full, "configs/demo.yaml") == []
