"""`llm-emf tune` errors that need no sweep: an interrupted sweep's exit code, a bad space file."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_emf.cli.main import main as cli_main

pytestmark = pytest.mark.unit


def test_cli_reports_an_interrupted_sweep_with_exit_code_130(monkeypatch, capsys):
    import llm_emf.tuning.sweep as sweep

    def interrupted(cfg):
        raise sweep.SweepInterrupted("sweep s interrupted with 1 of 3 trials finished; run the same command")
    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    space = Path(__file__).resolve().parents[2] / "tune_spaces/optim.yaml"
    assert cli_main(["tune", "--space", str(space)]) == 130
    assert "interrupted with 1 of 3 trials finished" in capsys.readouterr().err


def test_bad_space_file_is_a_clear_cli_error(tmp_path, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text("model.n_head: {choice: [1, 2]}\n")
    assert cli_main(["tune", "--space", str(space)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "did you mean 'model.n_heads'" in err
