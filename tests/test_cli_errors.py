"""Failures a user can cause end in one line and a non-zero exit, never a Python traceback on the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_emf.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture
def sample(tmp_path):
    assert main(["prepare", "data.source=sample", f"data.dataset={tmp_path / 'ds'}"]) == 0
    return tmp_path / "ds"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_truncated_dataset_files_under_stats(sample, capsys):
    capsys.readouterr()
    data = (sample / "sequences.parquet").read_bytes()
    (sample / "sequences.parquet").write_bytes(data[: len(data) // 2])
    assert main(["stats", f"data.dataset={sample}"]) == 2
    err = _one_line(capsys)
    assert "sequences.parquet: expected a readable Parquet file" in err and "truncated" in err

    (sample / "sequences.parquet").write_bytes(data)
    text = (sample / "dataset.json").read_text()
    (sample / "dataset.json").write_text(text[: len(text) // 2])
    assert main(["stats", f"data.dataset={sample}"]) == 2
    assert "dataset.json, line " in _one_line(capsys)


def test_data_output_naming_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert main(["prepare", "data.source=sample", f"data.dataset={tmp_path / 'taken'}"]) == 2
    assert "data.dataset: expected a folder for the prepared dataset" in _one_line(capsys)


def test_training_without_training_sequences_is_an_error(sample, tmp_path, capsys):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(sample / "sequences.parquet")
    pq.write_table(table.filter(pc.not_equal(table.column("split"), "train")), sample / "sequences.parquet")
    capsys.readouterr()
    assert main(["train", f"data.dataset={sample}", f"train.storage={tmp_path / 'runs'}", "train.epochs=1",
                 "tracking.enabled=false"]) == 2      # (a first sqlite store logs its creation to stderr)
    err = _one_line(capsys)
    assert "expected training sequences of at least two items" in err and "found none (0 train sequences)" in err


def test_an_unexpected_error_prints_one_line_and_keeps_the_traceback(monkeypatch, tmp_path, capsys):
    import llm_emf.cli.stats as stats

    def broken(cfg, args):
        raise ZeroDivisionError("division by zero somewhere deep")
    monkeypatch.setattr(stats, "run", broken)
    assert main(["stats"]) == 1
    err = _one_line(capsys)
    assert "llm-emf stats: error: ZeroDivisionError: division by zero somewhere deep (full traceback in " in err
    saved = Path(err.rsplit("full traceback in ", 1)[1].split("; ")[0].rstrip(")"))
    assert "Traceback" in saved.read_text() and "ZeroDivisionError" in saved.read_text()
    saved.unlink()


def test_tracebacks_do_not_pile_up(monkeypatch, tmp_path, capsys):
    """Each unexpected error keeps its traceback, in one private folder that holds only the newest ones."""
    import os
    import time

    import llm_emf.cli.main as cli
    import llm_emf.cli.stats as stats

    folder = tmp_path / "tracebacks"
    monkeypatch.setenv(cli.TRACEBACK_DIR_ENV, str(folder))
    monkeypatch.setattr(cli, "KEEP_TRACEBACKS", 3)

    def broken(cfg, args):
        raise RuntimeError("no good: http://alice:s3cr3t@tracker:5000/api said no")
    monkeypatch.setattr(stats, "run", broken)
    written = []
    for _ in range(5):
        assert main(["stats"]) == 1
        err = _one_line(capsys)
        assert f"(full traceback in {folder}/llm-emf-stats-" in err and "; the newest 3 are kept there)" in err
        assert "s3cr3t" not in err
        written.append(Path(err.rsplit("full traceback in ", 1)[1].split("; ")[0]))
        stamp = time.time_ns() - (10 - len(written)) * 10**9       # distinct, increasing times on any filesystem
        os.utime(written[-1], ns=(stamp, stamp))
    kept = sorted(folder.glob("*.traceback.txt"))
    assert kept == sorted(written[-3:])
    assert all("RuntimeError" in p.read_text() and "s3cr3t" not in p.read_text() for p in kept)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_the_default_traceback_folder_is_private_to_the_user(monkeypatch):
    import os
    import tempfile

    import llm_emf.cli.main as cli

    monkeypatch.delenv(cli.TRACEBACK_DIR_ENV, raising=False)
    assert cli.traceback_dir() == Path(tempfile.gettempdir()) / f"llm-emf-{os.getuid()}"


def test_train_on_a_truncated_parquet_names_the_file(sample, tmp_path, capsys):
    data = (sample / "sequences.parquet").read_bytes()
    (sample / "sequences.parquet").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["train", f"data.dataset={sample}", f"train.storage={tmp_path / 'runs'}", "train.epochs=1",
                 "tracking.enabled=false"]) == 2
    err = _one_line(capsys)
    assert f"{sample / 'sequences.parquet'}: expected a readable Parquet file" in err, err
    assert "ArrowInvalid" in err and "run `llm-emf prepare` again" in err and "full traceback" not in err


@pytest.mark.integration          # a real pipe to a real process: SIGPIPE's exit status
def test_output_cut_short_by_the_reader_ends_quietly(sample):
    """`llm-emf stats | head`: the reader goes away; no error message, no traceback, SIGPIPE's exit status."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "llm_emf.cli.main", "stats", "--json", f"data.dataset={sample}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1])
    proc.stdout.close()                   # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""
