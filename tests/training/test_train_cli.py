"""`llm-emf train` and `llm-emf recommend` end to end on the tiny dataset."""

import contextlib
import io
import json
import re

import pytest

from llm_emf.cli.main import main
from llm_emf.serving import load_models, recommend

from train_tiny_dataset import N_X, tiny_dataset

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run for the module's tests, which only read it (train's own output is checked here)."""
    root = tmp_path_factory.mktemp("train_cli")
    tiny_dataset().write(root / "dataset")
    storage = root / "runs"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["train", f"data.dataset={root / 'dataset'}", f"train.storage={storage}", "train.run_name=cli",
                     f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                     "train.epochs=1", "train.batch_size=16", "model.hidden_size=16", "model.n_blocks=1",
                     "model.max_len=8", "eval.n_negatives=5", "seed=3"])
    out = printed.getvalue()
    assert code == 0
    assert "test split at each domain's best validation epoch" in out and "full" in out and "sampled" in out
    # one progress line per epoch, also without a terminal (captured here)
    assert re.search(r"^epoch 1/1: train loss \d+\.\d{4}; valid MRR \(full\) Food 0\.\d{4}, Kitchen 0\.\d{4}; "
                     r"[\d.]+ s; \d+ training sequences/s$", out, re.M), out
    return storage / "cli"


def test_train_writes_results_and_recommend_prints_top_k(trained_run, capsys):
    results = json.loads((trained_run / "results.json").read_text())
    assert results["run_name"] == "cli" and results["epochs_run"] == 1
    code = main(["recommend", "--run", str(trained_run), "--user", "u100", "--domain", "Food", "-k", "4"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("top 4 Food items for user u100")
    assert len(out) == 5 and all("item " in line for line in out[1:])        # titles shown
    ids = [line.split()[1] for line in out[1:]]
    assert all(int(i[1:]) < N_X for i in ids)                                   # Food items only


def test_recommend_excludes_seen_items_unless_asked(trained_run, dataset_dir):
    _, dataset, models = load_models(trained_run)
    history = [0, 1, 2, 3, N_X + 1]
    top = recommend(models, history, 0, k=N_X, exclude_seen=True)
    assert len(top) == N_X - 4 and not {0, 1, 2, 3} & {i for i, _ in top}
    everything = recommend(models, history, 0, k=N_X, exclude_seen=False)
    assert sorted(i for i, _ in everything) == list(range(N_X))
    assert [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)


def test_recommend_errors_name_what_was_expected(trained_run, capsys):
    assert main(["recommend", "--run", str(trained_run), "--user", "nobody", "--domain", "X"]) == 2
    assert "expected a user_id" in capsys.readouterr().err
    assert main(["recommend", "--run", str(trained_run), "--user", "u100", "--domain", "Books"]) == 2
    assert "--domain: expected X, Y, 0, 1, Food or Kitchen, found 'Books'" in capsys.readouterr().err


def test_evaluate_command_scores_a_trained_run(trained_run, dataset_dir, capsys):
    code = main(["evaluate", "--run", str(trained_run), f"data.dataset={dataset_dir}", "eval.n_negatives=5"])
    assert code == 0
    saved = json.loads((trained_run / "results.json").read_text())["test"]["metrics"]["full"]["Food"]["MRR"]
    out = capsys.readouterr().out
    assert f"{saved:.4f}" in out                   # same number as training's own test evaluation
