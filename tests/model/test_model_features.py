"""Loading the stage-1 feature table and aligning it to item_index through item_id."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.data.schema import ITEM_SCHEMA, DataError
from llm_emf.model.features import load_item_features

from model_tiny import write_feature_table

pytestmark = pytest.mark.unit


def items_table(ids=("a", "b", "c", "d")):
    n = len(ids)
    return pa.table({"item_index": pa.array(range(n), pa.int32()), "item_id": list(ids),
                     "domain": pa.array([0, 0, 1, 1][:n], pa.int8()), "title": [None] * n,
                     "image_uri": [None] * n, "attributes": [None] * n}, schema=ITEM_SCHEMA)


def test_rows_are_aligned_by_item_id_and_missing_items_are_masked(tmp_path):
    # feature rows in a different order than the catalog, item "b" absent, "c" without image
    text = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)           # for d, a, c
    image = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    path = write_feature_table(tmp_path / "f.parquet", ["d", "a", "c"], text, image,
                               [True, True, True], [True, True, False])
    f = load_item_features(path, items_table())
    assert f.text.shape == (4, 2) and f.image.shape == (4, 3)
    torch.testing.assert_close(f.text[0], torch.tensor([0.0, 1.0]))          # "a"
    torch.testing.assert_close(f.text[3], torch.tensor([1.0, 0.0]))          # "d"
    assert f.has_text.tolist() == [True, False, True, True]
    assert f.has_image.tolist() == [True, False, False, True]
    assert torch.all(f.text[1] == 0) and f.missing_rows == 1


def test_unknown_item_id_names_file_and_row(tmp_path):
    path = write_feature_table(tmp_path / "f.parquet", ["a", "zz"], np.eye(2, dtype=np.float32),
                               np.eye(2, dtype=np.float32), [True, True], [True, True])
    with pytest.raises(DataError, match=r"f\.parquet, line 2: expected an item_id present .* found 'zz'"):
        load_item_features(path, items_table())


def test_wrong_embedding_width_names_the_row(tmp_path):
    path = tmp_path / "f.parquet"
    write_feature_table(path, ["a", "b"], [[1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0], [1.0]], [True, True], [True, True])
    with pytest.raises(DataError, match=r"line 2: expected text_embedding of length 2"):
        load_item_features(path, items_table())


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_item_features(tmp_path / "nope.parquet", items_table())
