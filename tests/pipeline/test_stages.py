"""Content-addressed stages: keys follow exactly the settings a stage reads; finished stages are skipped."""

import pytest

from llm_emf.config import load_config
from llm_emf.pipeline.stages import MARKER, Stage, plan, run_stages
from llm_emf.storage import Storage

pytestmark = pytest.mark.unit


def _stages(calls):
    def runner(name):
        def run(cfg, ctx):
            calls.append(name)
            return {"stage": name}
        return run

    return [
        Stage("prepare", reads=("data",), ignores=("data.dataset",), run=runner("prepare")),
        Stage("train", reads=("model", "train", "seed"), upstream=("prepare",), run=runner("train")),
    ]


def test_keys_depend_on_what_a_stage_reads(tmp_path):
    st = Storage(str(tmp_path))
    base = plan(load_config(), _stages([]), st).keys
    model_changed = plan(load_config(None, ["model.n_blocks=3"]), _stages([]), st).keys
    data_changed = plan(load_config(None, ["data.domain_x=Books"]), _stages([]), st).keys
    path_changed = plan(load_config(None, ["data.dataset=/elsewhere"]), _stages([]), st).keys
    assert model_changed["prepare"] == base["prepare"] and model_changed["train"] != base["train"]
    assert data_changed["prepare"] != base["prepare"] and data_changed["train"] != base["train"]  # downstream too
    assert path_changed == base


def test_second_run_skips_everything_and_a_change_reruns_only_downstream(tmp_path):
    st = Storage(str(tmp_path))
    calls = []
    first = run_stages(load_config(), _stages(calls), st, log=lambda *_: None)
    assert calls == ["prepare", "train"] and not first["train"]["skipped"]
    second = run_stages(load_config(), _stages(calls), st, log=lambda *_: None)
    assert calls == ["prepare", "train"] and second["prepare"]["skipped"] and second["train"]["skipped"]
    run_stages(load_config(None, ["model.n_blocks=3"]), _stages(calls), st, log=lambda *_: None)
    assert calls == ["prepare", "train", "train"]


def test_a_failed_stage_leaves_no_marker(tmp_path):
    st = Storage(str(tmp_path))

    def boom(cfg, ctx):
        raise RuntimeError("worker lost")

    stages = [Stage("prepare", reads=("data",), run=boom)]
    with pytest.raises(RuntimeError):
        run_stages(load_config(), stages, st, log=lambda *_: None)
    key = plan(load_config(), stages, st).keys["prepare"]
    assert not st.exists(st.path("prepare", key, MARKER))
