"""The one way into Ray (llm_emf.ray_local): the dashboard switch, the dashboard agent's port, and Ray Data's
non-TTY progress log folded into one line per dataset per interval (the full blocks stay in Ray Data's log
file)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from llm_emf.ray_local import (AGENT_PORT_ENV, PROGRESS_LOGGER, CompactProgress, agent_port_wanted,
                               compact_data_progress, dashboard_line, dashboard_wanted)

# Ray Data's LoggingExecutionProgressManager.refresh() as it logs one block (ray 2.60).
BLOCK = [
    "======= Running Dataset: dataset_abc_0 =======",
    "Total Progress: 244/488",
    "Active & requested resources: 1/2 CPU, 38.5MiB/3.3GiB object store",
    "",
    "MapBatches(ImageLoader): 500/500",
    "  Tasks: 0; Actors: 0; Queued blocks: 0 (0.0B); Resources: 0.0 CPU, 36.8MiB object store",
    "MapBatches(EncoderActor): 244/488",
    "  Tasks: 1; Actors: 1; Queued blocks: 0 (0.0B); Resources: 1.0 CPU, 1.7MiB object store",
    "    - sub: 3/?",
    "=" * 65,
]


class Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.all, self.console = [], []

    def emit(self, record):
        self.all.append(record.getMessage())
        if not getattr(record, "hide", False):       # what Ray Data's console filter (HiddenRecordFilter) lets by
            self.console.append(record.getMessage())


@pytest.mark.unit
def test_a_progress_block_becomes_one_console_line_and_stays_whole_in_the_file():
    logger = logging.getLogger("test.compact_progress")
    logger.propagate = False
    keep = Keep()
    logger.addHandler(keep)
    logger.addFilter(CompactProgress())
    logger.setLevel(logging.INFO)
    for _ in range(3):
        for line in BLOCK:
            logger.info(line)
    logger.info("something else")
    assert keep.console == ["Ray Data dataset_abc_0: 244/488 rows; MapBatches(ImageLoader) 500/500; "
                            "MapBatches(EncoderActor) 244/488; 1/2 CPU, 38.5MiB/3.3GiB object store"] * 3 + [
                            "something else"]
    assert len(keep.all) == 3 * len(BLOCK) + 1                    # the file handler still gets every line


@pytest.mark.unit
def test_the_filter_is_installed_once_on_ray_datas_progress_logger():
    compact_data_progress()
    compact_data_progress()
    assert sum(isinstance(f, CompactProgress) for f in logging.getLogger(PROGRESS_LOGGER).filters) == 1


@pytest.mark.unit
def test_dashboard_switch_and_line(monkeypatch):
    monkeypatch.delenv("LLM_EMF_RAY_DASHBOARD", raising=False)
    assert dashboard_wanted(True) and not dashboard_wanted(False)
    monkeypatch.setenv("LLM_EMF_RAY_DASHBOARD", "0")
    assert not dashboard_wanted(True)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    line = dashboard_line("http://127.0.0.1:8265")
    assert "\n" not in line and line.startswith("Ray dashboard: http://127.0.0.1:8265") and "token" in line
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "OFF" in dashboard_line("http://127.0.0.1:8265")


@pytest.mark.integration
def test_a_real_non_tty_ray_data_job_logs_one_line_per_interval(tmp_path):
    """A Ray Data job whose stdout and stderr are files: progress lines, no 9-line blocks."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import time
        import ray
        from llm_emf.ray_local import ensure_ray

        ensure_ray(dashboard=False, num_cpus=2)
        def slow(batch):
            time.sleep(0.3)
            return batch
        n = ray.data.range(40, override_num_blocks=20).map_batches(slow, batch_size=2).count()
        print("rows", n)
    """))
    env = {**os.environ, "RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL": "1"}
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "log.txt", "w") as log:
        res = subprocess.run([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, timeout=300)
    text = (tmp_path / "log.txt").read_text()
    assert res.returncode == 0, text[-3000:]
    assert "rows 40" in text
    lines = [line for line in text.splitlines() if "Ray Data dataset_" in line]
    assert len(lines) >= 2, text[-3000:]
    assert all("rows" in line and "MapBatches(slow)" in line for line in lines)
    assert "Running Dataset" not in text and "Tasks:" not in text and "Total Progress" not in text


@pytest.mark.unit
def test_agent_port_setting(monkeypatch):
    monkeypatch.delenv(AGENT_PORT_ENV, raising=False)
    assert agent_port_wanted() is None
    for text, port in (("", None), (" 0 ", 0), ("41234", 41234)):
        monkeypatch.setenv(AGENT_PORT_ENV, text)
        assert agent_port_wanted() == port
    for text in ("-1", "65536", "52365x", "port"):
        monkeypatch.setenv(AGENT_PORT_ENV, text)
        with pytest.raises(ValueError, match=rf"{AGENT_PORT_ENV}: expected a port number in \[0, 65535\] "
                                             rf"\(0: a free one\), found '{text}'"):
            agent_port_wanted()


DEFAULT_AGENT_PORT = 52365


def _hold_default_agent_port():
    """A listening socket on Ray's default agent port, or None when another process already holds it (another
    Ray on the machine): either way the port is taken while the command runs."""
    s = socket.socket()
    try:
        s.bind(("", DEFAULT_AGENT_PORT))
        s.listen()
    except OSError:
        s.close()
        return None
    return s


def _catalog(folder: Path) -> Path:
    """A four-item items.parquet, titles only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llm_emf.data.schema import ITEM_SCHEMA

    folder.mkdir()
    rows = [dict(item_index=i, item_id=f"i{i}", domain=i % 2, title=f"item {i}", image_uri=None, attributes=None)
            for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA), folder / "items.parquet")
    return folder


@pytest.mark.integration
def test_a_command_starts_ray_while_the_default_agent_port_is_taken(tmp_path):
    """`llm-emf enrich` starts a local Ray with the suite's LLM_EMF_RAY_AGENT_PORT=0 while port 52365 is taken:
    it succeeds, and its dashboard agent serves on a free port (Ray records -1 when the agent could not bind)."""
    assert os.environ.get(AGENT_PORT_ENV) == "0"            # set for the session (tests/helpers/ray_local.py)
    held = _hold_default_agent_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ra-", dir="/tmp"))       # short: Unix socket paths < 108 bytes
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    cli = Path(sys.executable).with_name("llm-emf")
    try:
        res = subprocess.run([str(cli), "enrich", "--dataset", str(_catalog(tmp_path / "dataset")),
                              "features.enrich.backend=none",
                              f"features.enrich.output={tmp_path / 'e.parquet'}"], env=env, capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert "enrich: 4 items: 4 done" in res.stdout, res.stdout
        recorded = list(ray_tmp.glob("ray/session_latest/dashboard_agent_listen_port_*"))
        assert len(recorded) == 1, sorted(str(p) for p in ray_tmp.rglob("*port*"))
        port = int(recorded[0].read_text())
        assert port not in (-1, DEFAULT_AGENT_PORT) and port > 0, port
    finally:
        if held is not None:
            held.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
