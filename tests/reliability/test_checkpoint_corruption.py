"""A truncated or corrupted training checkpoint is detected (sha256 next to state.pt) and resume falls back
to the previous checkpoint, with a warning: in local mode (ending exactly where an uninterrupted run ends)
and, for Ray Train's checkpoint folders, in the choice of the folder to resume from (the end-to-end Ray runs
are in test_train_faults_ray.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from llm_emf.checkpoints import (DIGEST_FILE, STATE_FILE, CorruptCheckpoint, load_state, save_checkpoint,
                                 verify_state_file)
from llm_emf.serving import find_checkpoint
from llm_emf.training import train
from llm_emf.training.session import LocalSession, newest_usable, run_checkpoints

from train_tiny_dataset import tiny_dataset, tiny_train_config

pytestmark = pytest.mark.unit


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)        # a half-written file, as after a crash mid-copy


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # same size, one byte of tensor data changed
    path.write_bytes(bytes(data))


def small_checkpoint(folder: Path, tmp_path: Path) -> Path:
    state = {"epoch": 1, "model": {"w": torch.arange(4096, dtype=torch.float32)}}
    return save_checkpoint(folder, state, tiny_train_config(tmp_path))


def test_digest_is_written_and_a_good_checkpoint_loads(tmp_path):
    folder = small_checkpoint(tmp_path / "ck", tmp_path)
    assert len((folder / DIGEST_FILE).read_text().strip()) == 64
    verify_state_file(folder)
    assert torch.equal(load_state(folder)["model"]["w"], torch.arange(4096, dtype=torch.float32))


@pytest.mark.parametrize("damage, message", [(truncate, "truncated or corrupted"), (flip_byte, "expected sha256")])
def test_truncated_or_flipped_state_file_is_a_corrupt_checkpoint(tmp_path, damage, message):
    folder = small_checkpoint(tmp_path / "ck", tmp_path)
    damage(folder / STATE_FILE)
    with pytest.raises(CorruptCheckpoint, match=message) as e:
        load_state(folder)
    assert str(folder / STATE_FILE) in str(e.value)


def test_truncated_checkpoint_without_digest_is_still_detected(tmp_path):
    # Checkpoints written before the digest existed: torch's own failure becomes a CorruptCheckpoint.
    folder = small_checkpoint(tmp_path / "ck", tmp_path)
    (folder / DIGEST_FILE).unlink()
    truncate(folder / STATE_FILE)
    with pytest.raises(CorruptCheckpoint, match="readable torch state file"):
        load_state(folder)


def test_local_session_skips_a_corrupt_latest_checkpoint(tmp_path):
    session = LocalSession(tmp_path / "run")
    for epoch in (1, 2):
        src = small_checkpoint(tmp_path / f"src{epoch}", tmp_path)
        session.report({"epoch": epoch}, str(src))
    latest = session.latest_path()
    assert latest.name == "checkpoint_000001"
    flip_byte(latest / STATE_FILE)
    with pytest.warns(RuntimeWarning, match="checkpoint_000001 is corrupt.*previous checkpoint"):
        assert session.latest_path().name == "checkpoint_000000"
    assert (session.checkpoints / "corrupt_checkpoint_000001").is_dir()   # kept for inspection
    # the next report takes the freed name, and both remaining checkpoints are good
    session.report({"epoch": 2}, str(small_checkpoint(tmp_path / "src3", tmp_path)))
    assert session.latest_path().name == "checkpoint_000001"
    truncate(session.checkpoints / "checkpoint_000001" / STATE_FILE)
    truncate(session.checkpoints / "checkpoint_000000" / STATE_FILE)
    with pytest.warns(RuntimeWarning):
        assert session.latest_path() is None                                # nothing usable: start afresh


def test_resume_after_a_corrupt_latest_checkpoint_matches_an_uninterrupted_run(tmp_path, one_torch_thread):
    tiny_dataset().write(tmp_path / "dataset")
    full = train(tiny_train_config(tmp_path, epochs=3, run_name="full"))
    train(tiny_train_config(tmp_path, epochs=2, run_name="hurt"))                    # stopped after epoch 2
    checkpoints = tmp_path / "runs" / "hurt" / "checkpoints"
    truncate(checkpoints / "checkpoint_000001" / STATE_FILE)                         # epoch 2's state, half-written
    with pytest.warns(RuntimeWarning, match="checkpoint_000001 is corrupt"):
        resumed = train(tiny_train_config(tmp_path, epochs=3, run_name="hurt"))     # resumes from epoch 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history == full.history
    assert resumed.test.metrics == full.test.metrics
    # `evaluate/recommend --run` never pick the set-aside folder, even if it is the newest file on disk
    aside = checkpoints / "corrupt_checkpoint_000001" / STATE_FILE
    os.utime(aside, (aside.stat().st_atime + 3600, aside.stat().st_mtime + 3600))
    (Path(resumed.run_dir) / "results.json").unlink()
    assert find_checkpoint(resumed.run_dir).name == "checkpoint_000002"


def ray_run_folder(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    """A Ray Train run folder with ``n`` checkpoints named the way Ray Train V2 names them."""
    run = tmp_path / "run"
    names = [f"checkpoint_2026-11-27_10-00-0{i}.000000" for i in range(n)]
    for i, name in enumerate(names):
        save_checkpoint(run / name, {"epoch": i + 1, "model": {"w": torch.arange(4096.0)}}, tiny_train_config(tmp_path))
    return run, names


def test_ray_resume_takes_the_newest_stored_checkpoint_even_if_ray_registered_an_older_one(tmp_path):
    ray_train = pytest.importorskip("ray.train")
    run, names = ray_run_folder(tmp_path, 3)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")             # Ray's own files are not candidates
    # a worker killed within Ray's report-polling interval: its last checkpoint is stored, not registered
    registered = ray_train.Checkpoint(str(run / names[0]))
    candidates = run_checkpoints(registered, str(run))
    assert [Path(c.path).name for c in candidates] == names[::-1]
    with newest_usable(candidates, write_note=True) as folder:
        assert load_state(folder)["epoch"] == 3
    assert not list(run.glob("*.corrupt.txt"))


def test_ray_resume_skips_a_corrupt_newest_checkpoint_and_leaves_a_note(tmp_path):
    ray_train = pytest.importorskip("ray.train")
    run, names = ray_run_folder(tmp_path, 3)
    flip_byte(run / names[2] / STATE_FILE)
    truncate(run / names[1] / STATE_FILE)
    candidates = run_checkpoints(ray_train.Checkpoint(str(run / names[2])), None)    # beside Ray's checkpoint
    expected = (f"checkpoint {names[2]} is corrupt .*expected sha256.*; checkpoint {names[1]} is corrupt .*; "
                f"resuming from the previous checkpoint {names[0]}")
    with pytest.warns(RuntimeWarning, match=expected):
        with newest_usable(candidates, write_note=True) as folder:
            assert load_state(folder)["epoch"] == 1
    note = (run / f"{names[2]}.corrupt.txt").read_text().splitlines()
    assert len(note) == 3 and note[-1] == f"resuming from the previous checkpoint {names[0]}"
    assert all((run / name).is_dir() for name in names)                      # Ray prunes its own folders
    truncate(run / names[0] / STATE_FILE)
    with pytest.warns(RuntimeWarning, match="no usable checkpoint left: starting afresh"):
        with newest_usable(candidates, write_note=False) as folder:
            assert folder is None
    with newest_usable(run_checkpoints(None, str(tmp_path / "new_run")), write_note=True) as folder:
        assert folder is None                                                   # a fresh run: nothing to resume
