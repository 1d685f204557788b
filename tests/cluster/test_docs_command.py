"""The parser that reads docs/cluster.md's job command (helpers.docs_commands), and the page's command itself."""

from __future__ import annotations

import textwrap

import pytest

from helpers.docs_commands import (MARK, ROOT, cluster_job_command, entrypoint, marked_block, runtime_env,
                                   shell_commands, substitute)

pytestmark = pytest.mark.unit


def _page(tmp_path, body: str):
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(body))
    return path


PAGE = f"""
    # A page

    ```bash
    ray job submit --address http://elsewhere -- python other.py   # an unmarked block is ignored
    ```

    {MARK}
    ```bash
    export RAY_AUTH_MODE=token     # a comment
    # a comment line
    ray job submit --address http://127.0.0.1:8265 \\
        --runtime-env-json '{{"working_dir": ".",
                             "excludes": [".git", "a b"]}}' \\
        -- python -m workflows.pipeline --config configs/demo.yaml \\
           pipeline.storage=s3://my-bucket/llm-emf "x.y=two words" train.num_workers=4   # trailing comment
    ray job logs --follow <job-id>
    ```
    """


def test_reads_the_marked_block_joins_continuations_and_keeps_quoted_newlines(tmp_path):
    argv = cluster_job_command(_page(tmp_path, PAGE))
    assert argv[:5] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265"]
    assert runtime_env(argv) == {"working_dir": ".", "excludes": [".git", "a b"]}
    assert entrypoint(argv) == ["python", "-m", "workflows.pipeline", "--config", "configs/demo.yaml",
                                "pipeline.storage=s3://my-bucket/llm-emf", "x.y=two words", "train.num_workers=4"]


def test_every_command_of_the_block_with_comments_dropped(tmp_path):
    commands = shell_commands(marked_block(_page(tmp_path, PAGE)))
    assert [c[:3] for c in commands] == [["export", "RAY_AUTH_MODE=token"], ["ray", "job", "submit"],
                                         ["ray", "job", "logs"]]
    assert commands[-1] == ["ray", "job", "logs", "--follow", "<job-id>"]


def test_substitute_points_the_command_at_a_test_cluster(tmp_path):
    argv = cluster_job_command(_page(tmp_path, PAGE))
    out = substitute(argv, address="http://127.0.0.1:1234", storage="s3://bucket/run", python="/venv/bin/python",
                     config="configs/smoke.yaml", runtime_env_update={"env_vars": {"A": "1"}},
                     extra=["train.num_workers=2", "train.use_gpu=false"])
    assert out[:5] == ["ray", "job", "submit", "--address", "http://127.0.0.1:1234"]
    assert runtime_env(out) == {"working_dir": ".", "excludes": [".git", "a b"], "env_vars": {"A": "1"}}
    assert entrypoint(out) == ["/venv/bin/python", "-m", "workflows.pipeline", "--config", "configs/smoke.yaml",
                               "pipeline.storage=s3://bucket/run", "x.y=two words", "train.num_workers=4",
                               "train.num_workers=2", "train.use_gpu=false"]
    assert argv[4] == "http://127.0.0.1:8265"                                # the input is left alone
    assert substitute(["ray", "job", "submit", "--address=http://a", "--", "python", "x.py"],
                      address="http://b")[3] == "--address=http://b"


@pytest.mark.parametrize("body, message", [
    ("```bash\nray job submit -- python x.py\n```\n", "expected one line"),
    (f"{MARK}\n```bash\nray job submit -- python x.py\n```\n{MARK}\n```bash\nls\n```\n", "expected one line"),
    (f"{MARK}\nsome text\n```bash\nray job submit -- python x.py\n```\n", "not followed by a fenced code block"),
    (f"{MARK}\n```python\nprint(1)\n```\n", "expected a ```bash block"),
    (f"{MARK}\n```bash\nray job submit -- python x.py\n", "never closed"),
    (f"{MARK}\n```bash\nray job list\n```\n", "expected one 'ray job submit'"),
    (f"{MARK}\n```bash\nray job submit python x.py\n```\n", "no '--'"),
    (f"{MARK}\n```bash\nray job submit --runtime-env-json '{{\"a\": 1}} -- python x.py\n```\n", "unclosed"),
])
def test_a_page_without_exactly_one_marked_job_command_is_an_error(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        cluster_job_command(_page(tmp_path, body))


def test_the_cluster_page_command_is_a_pipeline_job_with_valid_config_keys():
    """docs/cluster.md: the command users run submits the pipeline module with a config file of this checkout
    and overrides that the config tree accepts (no invented keys), storage on an object store."""
    from llm_emf.config import load_config

    argv = cluster_job_command()
    assert argv[:3] == ["ray", "job", "submit"] and "--address" in argv
    env = runtime_env(argv)
    assert env["working_dir"] == "." and {".git", ".venv", "runs"} <= set(env["excludes"])
    job = entrypoint(argv)
    assert job[:5] == ["python", "-m", "workflows.pipeline", "--config", job[4]]
    assert (ROOT / job[4]).is_file()
    cfg = load_config(ROOT / job[4], job[5:])
    assert cfg.pipeline.storage.startswith("s3://")
