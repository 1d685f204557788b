"""`llm-emf evaluate --baseline popularity` end to end on a written tiny dataset."""

import json

import pytest

from llm_emf.cli.main import main

from eval_tiny_dataset import make_dataset

pytestmark = pytest.mark.unit


@pytest.fixture
def dataset_dir(tmp_path):
    return make_dataset().write(tmp_path / "ds")


def test_baseline_prints_tables_and_writes_json(dataset_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = main(["evaluate", "--baseline", "popularity", f"data.dataset={dataset_dir}", f"eval.output={out}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "popularity: test split of tiny" in printed and "popularity: valid split of tiny" in printed
    assert "sampled   Food" in printed and "full      Kitchen" in printed
    result = json.loads(out.read_text())
    assert set(result["splits"]) == {"test", "valid"}
    test = result["splits"]["test"]
    assert test["counts"] == {"Food": 3, "Kitchen": 2}
    assert test["metrics"]["full"]["Food"]["MRR"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 3) / 3)
    # valid: u1 -> 1 (count 2, rank 2), u2 -> 5 (count 1, tied with 6: rank 3)
    valid = result["splits"]["valid"]
    assert valid["metrics"]["full"]["Food"]["MRR"] == pytest.approx(0.5)
    assert valid["metrics"]["full"]["Kitchen"]["MRR"] == pytest.approx(1 / 3)
    assert (dataset_dir / "negatives_test_seed42_n999.parquet").is_file()
    assert (dataset_dir / "negatives_valid_seed42_n999.parquet").is_file()


def test_dataset_flag_and_default_output(dataset_dir, tmp_path):
    rc = main(["evaluate", "--baseline", "popularity", "--dataset", str(dataset_dir), "--splits", "test",
               "eval.protocol=full"])
    assert rc == 0
    written = json.loads((dataset_dir.parent / "eval" / "popularity.json").read_text())
    assert list(written["splits"]) == ["test"] and written["splits"]["test"]["protocols"] == ["full"]
    assert not (dataset_dir / "negatives_test_seed42_n999.parquet").exists()    # full needs no negatives


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one of --run PATH or --baseline NAME"),
    (["--run", "nowhere/run"], "no such path 'nowhere/run'"),
    (["--baseline", "popularity", "--splits", "train"], "--splits: expected a comma-separated subset"),
    (["--baseline", "popularity", "eval.negatives_file=/tmp/n.parquet"], "needs a {split} placeholder"),
])
def test_usage_errors_exit_2_with_a_message(dataset_dir, capsys, argv, message):
    assert main(["evaluate", *argv, f"data.dataset={dataset_dir}"]) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_names_the_file(tmp_path, capsys):
    assert main(["evaluate", "--baseline", "popularity", f"data.dataset={tmp_path / 'none'}"]) == 2
    assert "items.parquet: expected a prepared dataset file" in capsys.readouterr().err


@pytest.mark.integration
def test_evaluating_a_trained_run_reproduces_its_test_metrics(tmp_path, capsys):
    """Train one tiny in-process epoch on the bundled sample, then `evaluate --run` its run folder."""
    ds = tmp_path / "ds"
    assert main(["prepare", "data.source=sample", f"data.dataset={ds}"]) == 0
    assert main(["train", f"data.dataset={ds}", "train.epochs=1", f"train.storage={tmp_path / 'runs'}",
                 "train.run_name=t1", "model.hidden_size=16", "model.n_blocks=1", "tracking.enabled=false"]) == 0
    run = tmp_path / "runs" / "t1"
    assert main(["evaluate", "--run", str(run)]) == 0      # the dataset comes from the run's own config
    assert "t1: test split of" in capsys.readouterr().out
    evaluated = json.loads((run / "evaluation.json").read_text())["splits"]["test"]
    trained = json.loads((run / "results.json").read_text())["test"]
    assert evaluated["counts"] == trained["counts"]
    for protocol in ("sampled", "full"):
        for domain, metrics in trained["metrics"][protocol].items():
            assert evaluated["metrics"][protocol][domain] == pytest.approx(metrics)
