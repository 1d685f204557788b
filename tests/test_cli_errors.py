"""Failures a user can cause end in one line and a non-zero exit, never a Python traceback on the terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_emf.cli.main import main

pytestmark = pytest.mark.unit


@pytest.fixture
def sample(tmp_path):
    assert main(["prepare", "data.source=sample", f"data.output={tmp_path / 'ds'}"]) == 0
    return tmp_path / "ds"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_truncated_dataset_files_under_stats(sample, capsys):
    capsys.readouterr()
    data = (sample / "sequences.parquet").read_bytes()
    (sample / "sequences.parquet").write_bytes(data[: len(data) // 2])
    assert main(["stats", f"data.output={sample}"]) == 2
    err = _one_line(capsys)
    assert "sequences.parquet: expected a readable Parquet file" in err and "truncated" in err

    (sample / "sequences.parquet").write_bytes(data)
    text = (sample / "dataset.json").read_text()
    (sample / "dataset.json").write_text(text[: len(text) // 2])
    assert main(["stats", f"data.output={sample}"]) == 2
    assert "dataset.json, line " in _one_line(capsys)


def test_data_output_naming_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert main(["prepare", "data.source=sample", f"data.output={tmp_path / 'taken'}"]) == 2
    assert "data.output: expected a folder for the prepared dataset" in _one_line(capsys)


def test_training_without_training_sequences_is_an_error(sample, tmp_path, capsys):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(sample / "sequences.parquet")
    pq.write_table(table.filter(pc.not_equal(table.column("split"), "train")), sample / "sequences.parquet")
    capsys.readouterr()
    assert main(["train", f"data.output={sample}", f"train.storage={tmp_path / 'runs'}", "train.epochs=1"]) == 2
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
    saved = Path(err.rsplit("full traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in saved.read_text() and "ZeroDivisionError" in saved.read_text()
    saved.unlink()
