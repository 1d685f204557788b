"""Storage roots: local paths, remote URIs, and the multi-node guard."""

import pytest

from llm_emf.storage import Storage, StorageError, check_for_cluster, is_remote

pytestmark = pytest.mark.unit


def test_local_path_on_multi_node_cluster_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LLM_EMF_SHARED_FS", raising=False)
    with pytest.raises(StorageError, match=r"local path on a 3-node Ray cluster.*expected an s3:// or gs:// URI"):
        check_for_cluster(str(tmp_path / "runs"), n_nodes=3)


def test_single_node_remote_and_declared_shared_paths_pass(tmp_path, monkeypatch):
    check_for_cluster(str(tmp_path), n_nodes=1)
    check_for_cluster("s3://bucket/llm-emf", n_nodes=8)
    monkeypatch.setenv("LLM_EMF_SHARED_FS", "1")
    check_for_cluster(str(tmp_path), n_nodes=8)


def test_paths_and_json_markers(tmp_path):
    st = Storage(str(tmp_path / "root"))
    marker = st.path("embed", "abc123", "_SUCCESS.json")
    assert marker.startswith(str(tmp_path)) and not st.exists(marker)
    st.write_json(marker, {"rows": 3})
    assert st.exists(marker) and st.read_json(marker) == {"rows": 3}
    assert st.read_json(st.path("missing.json")) is None
    assert Storage("s3://b/p").path("x", "y") == "s3://b/p/x/y" and is_remote("gs://b")


def test_empty_root_rejected():
    with pytest.raises(StorageError, match="empty"):
        Storage("")
