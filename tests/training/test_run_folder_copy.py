"""A run folder is relocatable, and a bad checkpoint file is named (issue 24, items 4 and 6).

``evaluate --run COPY`` reads COPY's own checkpoint (results.json names it by an absolute path; inside the run
folder it is looked up relative to the folder given), a copy whose state file does not match its sha256 (the
digest beside it, or the one results.json recorded) is refused naming the file, and a truncated results.json, a
checkpoint config.yaml with a python tag or a tampered state.pt is an error naming the file, never a traceback
and never torch's advice to load with weights_only=False.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from llm_emf.checkpoints import DIGEST_FILE, STATE_FILE, CorruptCheckpoint, load_checkpoint_config, load_state
from llm_emf.cli.main import main
from llm_emf.serving import find_checkpoint

from train_tiny_dataset import tiny_dataset

pytestmark = pytest.mark.unit

CHECKPOINT = Path("checkpoints", "checkpoint_000000")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny in-process training run (one epoch), shared by the tests; each works on copies of it."""
    root = tmp_path_factory.mktemp("trained")
    tiny_dataset().write(root / "dataset")
    code = main(["train", f"data.dataset={root / 'dataset'}", f"train.storage={root / 'runs'}", "train.run_name=r1",
                 "train.epochs=1", "train.batch_size=16", "model.hidden_size=16", "model.n_blocks=1",
                 "model.max_len=8", "eval.n_negatives=5", "seed=3", "tracking.enabled=false", "--quiet"])
    assert code == 0
    run = root / "runs" / "r1"
    results = json.loads((run / "results.json").read_text())
    assert results["checkpoint"] == str(run / CHECKPOINT)          # the original names itself absolutely
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "elsewhere" / "r1-copy"
    shutil.copytree(run, copy)
    return copy


def _flip_byte(path: Path) -> bytes:
    data = path.read_bytes()
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF
    path.write_bytes(bytes(changed))
    return data


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_results_record_the_checkpoint_sha256(trained):
    results = json.loads((trained / "results.json").read_text())
    assert results["checkpoint_sha256"] == (trained / CHECKPOINT / DIGEST_FILE).read_text().strip()
    assert results["checkpoint_sha256"] == hashlib.sha256((trained / CHECKPOINT / STATE_FILE).read_bytes()).hexdigest()


def test_a_copied_run_folder_reads_its_own_checkpoint(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    assert find_checkpoint(copy) == copy / CHECKPOINT
    # the original's checkpoint goes bad after the copy was made: the copy must not care
    original = _flip_byte(trained / CHECKPOINT / STATE_FILE)
    try:
        assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 0
    finally:
        (trained / CHECKPOINT / STATE_FILE).write_bytes(original)
    assert "r1-copy: test split of tiny" in capsys.readouterr().out
    assert (copy / "evaluation.json").is_file() and not (trained / "evaluation.json").exists()


def test_a_corrupt_copy_is_detected_and_named(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    _flip_byte(copy / CHECKPOINT / STATE_FILE)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 2
    err = _err_line(capsys)
    assert f"{copy / CHECKPOINT / STATE_FILE}: expected sha256" in err and "does not match" in err, err


def test_a_copy_whose_checkpoint_was_replaced_is_refused(trained, tmp_path, capsys):
    """A different state file with a digest to match passes the folder's own check; results.json's does not."""
    copy = _copy(trained, tmp_path)
    state = copy / CHECKPOINT / STATE_FILE
    torch.save({"epoch": 1, "model": {"w": torch.zeros(3)}}, state)
    (copy / CHECKPOINT / DIGEST_FILE).write_text(hashlib.sha256(state.read_bytes()).hexdigest() + "\n")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 2
    err = _err_line(capsys)
    assert f"{state}: expected sha256" in err and f"recorded in {copy / 'results.json'}" in err, err


def test_a_copy_without_its_checkpoint_never_reads_the_original(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    shutil.rmtree(copy / "checkpoints")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 2
    err = _err_line(capsys)
    assert f"{copy}: expected a training checkpoint (state.pt) inside, found none" in err, err


def test_a_moved_run_folder_with_another_checkpoint_inside_says_which_it_uses(trained, tmp_path):
    copy = _copy(trained, tmp_path)
    (copy / CHECKPOINT).rename(copy / "checkpoints" / "checkpoint_000007")
    with pytest.warns(UserWarning, match=r"results.json: the checkpoint it names is not in .*checkpoint_000007"):
        assert find_checkpoint(copy) == copy / "checkpoints" / "checkpoint_000007"


@pytest.mark.cluster
def test_a_run_folder_copied_to_an_object_store_reads_its_own_checkpoint(trained, s3_bucket):
    from llm_emf import files

    copy = f"{s3_bucket}/copies/r1"
    files.upload(trained, copy)
    assert str(find_checkpoint(copy)) == f"{copy}/{CHECKPOINT.as_posix()}"
    assert set(load_state(find_checkpoint(copy))["best_states"]) == {"Food", "Kitchen"}
    bad = f"{s3_bucket}/copies/bad"
    files.upload(trained, bad)
    data = bytearray(files.read_bytes(f"{bad}/{CHECKPOINT.as_posix()}/{STATE_FILE}"))
    data[len(data) // 2] ^= 0xFF
    files.write_bytes(f"{bad}/{CHECKPOINT.as_posix()}/{STATE_FILE}", bytes(data))
    with pytest.raises(CorruptCheckpoint, match=f"{bad}/{CHECKPOINT.as_posix()}/{STATE_FILE}: expected sha256"):
        load_state(find_checkpoint(bad))


def test_a_truncated_results_json_is_named(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    text = (copy / "results.json").read_text()
    (copy / "results.json").write_text(text[: len(text) // 2])
    capsys.readouterr()
    assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 2
    err = _err_line(capsys)
    assert f"{copy / 'results.json'}, line " in err and "invalid JSON" in err and "truncated" in err, err


def test_a_checkpoint_config_with_a_python_tag_is_named(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    config = copy / CHECKPOINT / "config.yaml"
    config.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n" + config.read_text())
    capsys.readouterr()
    assert main(["evaluate", "--run", str(copy), "--splits", "test"]) == 2
    err = _err_line(capsys)
    assert f"{config} line 1: expected plain YAML" in err and "!!python/object/apply:os.system" in err, err
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(Exception, match=f"{config} line 1"):
        load_checkpoint_config(copy / CHECKPOINT)


class _Code:
    def __reduce__(self):
        # len, not print: a Ray started earlier in the process replaces builtins.print with its own
        return (len, ("pwned",))


@pytest.mark.parametrize("digest", ["updated", "removed", "stale"])
def test_a_tampered_state_file_is_named_and_never_loaded_unsafely(trained, tmp_path, capsys, digest):
    copy = _copy(trained, tmp_path)
    state = copy / CHECKPOINT / STATE_FILE
    torch.save({"epoch": 1, "model": _Code()}, state)         # what weights_only=True refuses to unpickle
    if digest == "updated":
        (copy / CHECKPOINT / DIGEST_FILE).write_text(hashlib.sha256(state.read_bytes()).hexdigest() + "\n")
    elif digest == "removed":
        (copy / CHECKPOINT / DIGEST_FILE).unlink()
    with pytest.raises(CorruptCheckpoint) as e:
        load_state(copy / CHECKPOINT)
    message = str(e.value)
    assert message.startswith(f"{state}: ") and "weights_only" not in message, message
    if digest == "stale":
        assert "does not match its recorded sha256" in message
    else:
        assert "expected a safe training state file" in message and "reference to 'len'" in message, message
    capsys.readouterr()
    assert main(["recommend", "--run", str(copy / CHECKPOINT), "--user", "u100", "--domain", "Food"]) == 2
    captured = capsys.readouterr()
    assert "pwned" not in captured.out and "weights_only" not in captured.err
    assert f"{state}: " in _err_line_of(captured.err)


def _err_line_of(err: str) -> str:
    err = err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err
