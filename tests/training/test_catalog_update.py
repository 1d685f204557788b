"""Serving a trained model on a grown catalog: new items are scored from their content, no retraining."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from llm_emf.cli.main import main
from llm_emf.cli.recommend import user_history
from llm_emf.config import ConfigError
from llm_emf.data.schema import ITEM_SCHEMA, Dataset
from llm_emf.features.schema import FEATURE_SCHEMA
from llm_emf.model.batch import Ragged
from llm_emf.serving import load_models, recommend

from train_tiny_dataset import N_X, N_Y, tiny_dataset

pytestmark = pytest.mark.unit
E = 8


def _write_features(path, item_ids, vectors):
    n = len(item_ids)
    pq.write_table(pa.table({
        "item_id": item_ids, "domain": pa.array([0] * n, pa.int8()),
        "text_embedding": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32())),
        "image_embedding": pa.array([[] for _ in range(n)], pa.list_(pa.float32())),
        "has_text": [True] * n, "has_image": [False] * n, "text_truncated": [False] * n,
        "text_model": ["test"] * n, "image_model": ["test"] * n, "prompt_version": ["v0"] * n,
        "content_hash": [f"h{i}" for i in range(n)]}, schema=FEATURE_SCHEMA), path)
    return path


def _grown(ds: Dataset) -> Dataset:
    """The catalog plus a new X item (inserted before Y, so every Y index shifts) and a new Y item."""
    ids = ds.items.column("item_id").to_pylist()
    new_ids = ids[:N_X] + ["new_x"] + ids[N_X:] + ["new_y"]
    domains = [0] * (N_X + 1) + [1] * (N_Y + 1)
    items = pa.table({"item_index": pa.array(range(len(new_ids)), pa.int32()), "item_id": new_ids,
                      "domain": pa.array(domains, pa.int8()), "title": [f"title {i}" for i in new_ids],
                      "image_uri": [None] * len(new_ids), "attributes": [None] * len(new_ids)}, schema=ITEM_SCHEMA)
    shift = lambda seq: [i if i < N_X else i + 1 for i in seq]  # noqa: E731
    seqs = ds.sequences.to_pylist()
    for row in seqs:
        row["items"] = shift(row["items"])
    meta = type(ds.meta)(**{**ds.meta.__dict__, "n_items": (N_X + 1, N_Y + 1), "name": "tiny-grown"})
    return Dataset(items, pa.Table.from_pylist(seqs, schema=ds.sequences.schema), meta)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """One trained text run for the module's tests, which only read it (each grows the catalog in its own
    tmp_path)."""
    root = tmp_path_factory.mktemp("text_run")
    ds = tiny_dataset()
    ds.write(root / "dataset")
    vectors = np.random.default_rng(0).normal(size=(N_X + N_Y, E))
    _write_features(root / "features.parquet", ds.items.column("item_id").to_pylist(), vectors)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", f"data.dataset={root / 'dataset'}", f"train.storage={root / 'runs'}",
                     "train.run_name=text", "train.epochs=2", "train.batch_size=16", "model.hidden_size=16",
                     f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                     "model.n_blocks=1", "model.max_len=8", "eval.n_negatives=5", "seed=3", "model.use_text=true",
                     f"model.features={root / 'features.parquet'}"])
    assert code == 0
    return root / "runs/text", ds, vectors


def _grow(tmp_path, ds, vectors, new_x, new_y):
    grown = _grown(ds)
    grown.write(tmp_path / "grown")
    ids = ds.items.column("item_id").to_pylist()
    _write_features(tmp_path / "grown.parquet", ids + ["new_x", "new_y"], np.vstack([vectors, new_x, new_y]))
    return grown


def test_known_items_score_as_before_and_a_new_item_enters_the_top_k(text_run, tmp_path, capsys):
    run, ds, vectors = text_run
    _, _, before = load_models(run)
    history = [0, 1, N_X + 2, 2, N_X + 3]
    old_top = recommend(before, history, 1, k=N_Y)

    grown = _grow(tmp_path, ds, vectors, np.zeros(E), np.zeros(E))
    _, _, after = load_models(run, grown, str(tmp_path / "grown.parquet"))
    shifted = [i if i < N_X else i + 1 for i in history]
    new_top = recommend(after, shifted, 1, k=N_Y + 1)
    old_scores = {i + 1: s for i, s in old_top}                  # Y indices moved up by one
    for item, score in new_top:
        if item != N_X + 1 + N_Y:                                # the new Y item
            assert score == pytest.approx(old_scores[item], abs=1e-5)
    assert recommend(after, shifted, 0, k=N_X + 1)               # X scores, with new_x among them

    # The direction in feature space that raises new_y's score for this user, then new_y placed along it:
    # scores are linear in a new item's text vector (raw vectors, linear adaptor), so it must rank first.
    model, new_y = after[1], N_X + 1 + N_Y
    u100 = user_history(grown, "u100")
    batch = model.build_eval_batch(Ragged(np.asarray(u100), np.array([0]), np.array([len(u100)])))

    def score_with(vector):
        model.vectors.text_features[new_y] = torch.as_tensor(vector, dtype=torch.float32)
        return float(model.score(batch, 1)[0, new_y - (N_X + 1)])
    base = score_with(np.zeros(E))
    direction = np.array([score_with(np.eye(E)[j]) - base for j in range(E)])     # for user u100
    _grow(tmp_path, ds, vectors, np.zeros(E), 50 * direction / np.linalg.norm(direction))
    code = main(["recommend", "--run", str(run), "--dataset", str(tmp_path / "grown"), "--features",
                 str(tmp_path / "grown.parquet"), "--user", "u100", "--domain", "Kitchen", "-k", "3"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[1].split()[1] == "new_y" and "title new_y" in out[1]


def test_a_catalog_that_drops_moves_or_changes_trained_items_is_refused(text_run, tmp_path):
    run, ds, vectors = text_run
    _grow(tmp_path, ds, vectors, np.zeros(E), np.zeros(E))
    grown = Dataset.read(tmp_path / "grown")

    smaller = Dataset(grown.items.slice(1), grown.sequences, grown.meta)
    with pytest.raises(ConfigError, match="expected every item the model was trained on .* found 1 missing, e.g. 'i0'"):
        load_models(run, smaller, str(tmp_path / "grown.parquet"))

    domains = grown.items.column("domain").to_pylist()
    domains[0] = 1
    moved = Dataset(grown.items.set_column(2, "domain", pa.array(domains, pa.int8())), grown.sequences, grown.meta)
    with pytest.raises(ConfigError, match="expected item 'i0' in domain 0 as in training, found it in domain 1"):
        load_models(run, moved, str(tmp_path / "grown.parquet"))

    renamed = Dataset(grown.items.set_column(1, "item_id", pa.array([f"z{i}" for i in range(grown.n_items)])),
                      grown.sequences, grown.meta)
    with pytest.raises(ConfigError, match="found none of its 27 item_ids in dataset 'tiny-grown'"):
        load_models(run, renamed)

    changed = vectors.copy()
    changed[5] += 1.0                                             # a trained item's vector rewritten
    _grow(tmp_path, ds, changed, np.zeros(E), np.zeros(E))
    with pytest.raises(ConfigError, match="expected the item features this model was trained with"):
        load_models(run, grown, str(tmp_path / "grown.parquet"))


def test_the_checkpoint_records_its_catalog_and_which_items_training_saw(text_run):
    from llm_emf.checkpoints import load_state
    from llm_emf.serving import find_checkpoint

    run, ds, _ = text_run
    state = load_state(find_checkpoint(run))
    assert state["catalog"]["item_id"] == ds.items.column("item_id").to_pylist()
    from llm_emf.data.cold import trained_items
    assert state["catalog"]["trained"] == trained_items(ds).tolist()
    assert torch.is_tensor(state["model"]["vectors.id.weight"])


def test_a_trained_run_can_be_served_with_another_rule_for_its_cold_items(text_run, tmp_path):
    run, ds, vectors = text_run
    new_y_vector = vectors[N_X + 4] + 1e-3                       # a near-copy of a trained Kitchen item
    grown = _grow(tmp_path, ds, vectors, np.zeros(E), new_y_vector)
    features = str(tmp_path / "grown.parquet")
    new_y, twin = N_X + 1 + N_Y, N_X + 1 + 4                    # indices in the grown catalog
    _, _, zero = load_models(run, grown, features, unseen_id="zero")
    _, _, lent = load_models(run, grown, features, unseen_id="neighbor", unseen_neighbors=1)
    rows_zero, rows_lent = zero[1].vectors.id_rows().detach(), lent[1].vectors.id_rows().detach()
    assert torch.all(rows_zero[new_y] == 0)
    assert torch.equal(rows_lent[new_y], rows_lent[twin])        # borrowed from its content twin
    known = torch.ones(len(rows_zero), dtype=torch.bool)
    known[[N_X, new_y]] = False
    assert torch.equal(rows_zero[known], rows_lent[known])       # trained rows are the run's, untouched
    with pytest.raises(ConfigError, match=r"unseen_id: expected one of \('neighbor', 'zero', 'mean'\)"):
        load_models(run, grown, features, unseen_id="learned")
