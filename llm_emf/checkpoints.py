"""A checkpoint folder: its files, writing it, and reading it back verified.

A checkpoint is a folder holding ``state.pt`` (a plain state dict: model, optimizer, scheduler, RNG states,
epoch, history, best per-domain model states, early-stopping counters, the catalog) and ``config.yaml`` (the
resolved config, so a run can be rebuilt from the folder alone). ``state.pt`` is written with ``torch.save``
and read with ``weights_only=True``: nothing is pickled. ``state.pt.sha256`` holds the state file's sha256, so
a truncated or corrupted file is detected on load (``CorruptCheckpoint``) instead of resuming from garbage.

Training writes checkpoints (``llm_emf.training``) and serving reads them (``llm_emf.serving.run``); both go
through this module. A folder is a local path or an object-store URI (``llm_emf.files``): torch reads and
writes a local copy.
"""

from __future__ import annotations

import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from llm_emf import files
from llm_emf.config import Config, ConfigError, save_config
from llm_emf.config.loader import from_dict, safe_yaml_load
from llm_emf.hashing import file_sha256

STATE_FILE = "state.pt"
DIGEST_FILE = STATE_FILE + ".sha256"
CONFIG_FILE = "config.yaml"


class CorruptCheckpoint(ValueError):
    """A checkpoint's state file is truncated, corrupted, or does not match its recorded sha256."""


def save_checkpoint(folder: str | Path, state: dict[str, Any], cfg: Config) -> Path | str:
    """Write a checkpoint folder (a Path back for a local one, the URI for a remote one). A remote folder is
    written locally and uploaded file by file: the caller's marker written afterwards (latest.json, Ray's
    own records) is what says it is complete."""
    if files.is_remote(folder):
        with tempfile.TemporaryDirectory(prefix="llm_emf_ckpt_") as tmp:
            save_checkpoint(tmp, state, cfg)
            files.upload(Path(tmp), folder)
        return str(folder)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    (folder / DIGEST_FILE).write_text(file_sha256(folder / STATE_FILE) + "\n", encoding="ascii")
    save_config(cfg, folder / CONFIG_FILE)
    return folder


def _check_digest(state_file: str | Path, folder: str | Path, shown: str) -> None:
    """``state_file`` (the state file itself or a local copy of it) against ``folder``'s recorded sha256."""
    digest = files.join(folder, DIGEST_FILE)
    if files.is_file(digest):
        expected, found = files.read_text(digest).strip(), file_sha256(state_file)
        if expected != found:
            raise CorruptCheckpoint(f"{shown}: expected sha256 {expected} (from {DIGEST_FILE}), found {found} "
                                    f"({files.info(state_file).size} bytes): the file does not match its recorded "
                                    f"sha256, so it is truncated or corrupted (or altered) and is not loaded")


def verify_state_file(folder: str | Path) -> None:
    """Raise CorruptCheckpoint unless ``state.pt`` exists and matches ``state.pt.sha256``.

    Checkpoints written before the digest existed have no ``.sha256``; they pass here and a truncated one is
    still caught by :func:`load_state` when torch cannot read it.
    """
    path = files.join(folder, STATE_FILE)
    if not files.is_file(path):
        raise CorruptCheckpoint(f"{path}: expected a training checkpoint ({STATE_FILE}), found no such file")
    _check_digest(path, folder, path)


def load_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = files.join(folder, STATE_FILE)
    if not files.is_file(path):
        raise FileNotFoundError(f"{path}: expected a training checkpoint ({STATE_FILE}), found no such file")
    with files.local_copy(path) as local:            # a remote state file is downloaded once, then verified
        _check_digest(local, folder, path)
        try:
            return torch.load(local, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            # weights_only refused an object: this file was not written by save_checkpoint (which stores tensors
            # and plain values only) or was altered along with its digest. torch's own text advises loading it
            # with weights_only=False, i.e. running whatever the file holds: never repeat that advice.
            raise CorruptCheckpoint(f"{path}: expected a safe training state file (tensors and plain values, as "
                                    f"llm-emf writes them), found {_refused_object(str(e))}: not written by "
                                    f"llm-emf, or altered. It is not loaded; use a checkpoint from a source you "
                                    f"trust, or train again") from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:   # e.g. a truncated zip archive
            raise CorruptCheckpoint(f"{path}: expected a readable torch state file, found {type(e).__name__}: "
                                    f"{_first_line(str(e))}") from None


def _first_line(text: str) -> str:
    """The first line of an error from torch, without its advice to load with weights_only=False."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return "" if "weights_only" in line else line


def _refused_object(text: str) -> str:
    """What torch's weights_only unpickler refused, in a few words (its message names the global)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"a pickled reference to '{found[1]}' (code or an object a state file never holds)"
    return "pickled content that a state file never holds"


def check_usable(folder: str | Path) -> None:
    """Raise CorruptCheckpoint unless ``folder`` holds a state file a resume can read.

    With a digest the sha256 decides (the file is hashed, not loaded); without one (checkpoints older than
    the digest) torch must at least be able to read the file.
    """
    verify_state_file(folder)
    if not files.is_file(files.join(folder, DIGEST_FILE)):
        load_state(folder)


def load_checkpoint_config(folder: str | Path) -> Config:
    """The resolved config saved with a checkpoint; any problem with it is a ConfigError naming the file."""
    path = files.join(folder, CONFIG_FILE)
    if not files.is_file(path):
        raise ConfigError(f"{path}: expected the config saved with the checkpoint, found no such file")
    try:
        text = files.read_text(path)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 text (the config saved with the checkpoint), found an "
                          f"undecodable byte at offset {e.start}") from None
    mapping = safe_yaml_load(text, str(path)) or {}
    cfg = from_dict(Config, mapping, source=str(path))
    try:
        cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def features_fingerprint(features) -> str | None:
    """What a checkpoint records of its item features (None for a model without content features)."""
    return None if features is None else features.fingerprint()


def check_features(state: dict[str, Any], found: str | None, folder: str | Path, feature_path: str) -> None:
    """Refuse to pair a checkpoint with other item features than it was trained on; ``found`` is
    :func:`features_fingerprint` of the features at hand.

    A feature table rewritten with the same width would otherwise load silently and change every score of
    a trained or served model. Checkpoints older than the fingerprint have none and pass.
    """
    recorded = state.get("features_fingerprint")
    if recorded is not None and recorded != found:
        raise ConfigError(f"{folder}: expected the item features this model was trained with (fingerprint "
                          f"{recorded[:16]}), found {'none' if found is None else found[:16]} in model.features "
                          f"'{feature_path}'; point model.features at the original table or retrain")
