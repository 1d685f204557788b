"""The one way into Ray (llm_emf.ray_local): the dashboard switch, and Ray Data's non-TTY progress log folded
into one line per dataset per interval (the full blocks stay in Ray Data's log file)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from llm_emf.ray_local import PROGRESS_LOGGER, CompactProgress, compact_data_progress, dashboard_line, dashboard_wanted

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
