"""Content-addressed pipeline stages: each stage's output folder is named by a hash of what determines it.

A stage's key hashes (stage name, the config values it reads, the keys of the stages it reads from, the
content of the input files it names and the source of the code it runs: ``fingerprint.py``). Its outputs go
to ``<storage>/<stage>/<key>/`` and a ``_SUCCESS.json`` marker is written last. A resubmitted job recomputes
the keys, finds the markers, and skips finished stages; a changed setting, input file or stage code changes
the key of that stage and of everything downstream of it, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from llm_emf import __version__
from llm_emf.config import Config, flatten_config
from llm_emf.storage import Storage

from .fingerprint import code_fingerprint, input_fingerprint

MARKER = "_SUCCESS.json"


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]                 # config key prefixes that determine the output
    upstream: tuple[str, ...] = ()         # stages whose outputs it reads
    ignores: tuple[str, ...] = ()          # keys under `reads` that do not change the output (paths, names)
    run: Callable[[Config, "StageContext"], dict] = field(default=None, repr=False, compare=False)
    code: tuple[str, ...] = ()             # package paths (under llm_emf/) whose source makes the output
    inputs: Callable[[Config], list[str]] | None = field(default=None, repr=False, compare=False)  # files read


@dataclass
class StageContext:
    storage: Storage
    keys: dict[str, str]                   # stage name -> key, for this run
    outputs: dict[str, str]                # stage name -> output folder
    basis: dict[str, dict] = field(default_factory=dict)   # stage name -> code and input fingerprints

    def output(self, stage: str) -> str:
        return self.outputs[stage]


def _selected(flat: dict, stage: Stage) -> dict:
    def wanted(k: str) -> bool:
        hit = any(k == p or k.startswith(p + ".") for p in stage.reads)
        return hit and not any(k == p or k.startswith(p + ".") for p in stage.ignores)

    return {k: v for k, v in sorted(flat.items()) if wanted(k)}


def key_inputs(cfg: Config, stage: Stage) -> dict:
    """What besides config and upstream keys a stage's key hashes: its code and its input files (each with
    where it was read, for the record; the key hashes content only: the bundled sample's install folder, or a
    job's working_dir copy, changes from one run to the next)."""
    return {"version": __version__, "code": code_fingerprint(stage.code),
            "inputs": {str(p): input_fingerprint(p) for p in (stage.inputs(cfg) if stage.inputs else [])}}


def stage_key(cfg: Config, stage: Stage, upstream_keys: dict[str, str], basis: dict | None = None) -> str:
    basis = basis if basis is not None else key_inputs(cfg, stage)
    payload = {
        "stage": stage.name,
        "config": _selected(flatten_config(cfg), stage),
        "upstream": {u: upstream_keys[u] for u in stage.upstream},
        **basis, "inputs": list(basis["inputs"].values()),   # in config order; paths are in the config
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan(cfg: Config, stages: list[Stage], storage: Storage) -> StageContext:
    """Compute every stage's key and output folder (upstream first)."""
    keys: dict[str, str] = {}
    outputs: dict[str, str] = {}
    basis: dict[str, dict] = {}
    for st in stages:
        missing = [u for u in st.upstream if u not in keys]
        if missing:
            raise ValueError(f"stage '{st.name}' reads {missing}, which are not earlier stages of this pipeline")
        basis[st.name] = key_inputs(cfg, st)
        keys[st.name] = stage_key(cfg, st, keys, basis[st.name])
        outputs[st.name] = storage.path(st.name, keys[st.name])
    return StageContext(storage, keys, outputs, basis)


def still_valid(basis: dict) -> str:
    """Why a finished stage's outputs still hold, for the skip line."""
    inputs = basis["inputs"]
    files_part = "; input files unchanged: " + ", ".join(
        f"{p} ({i.get('files', 0)} files, {i.get('digest', 'missing')})" for p, i in inputs.items()) if inputs else ""
    return f"same config and upstream outputs, code {basis['code']}{files_part}"


def run_stages(cfg: Config, stages: list[Stage], storage: Storage, log=print) -> dict[str, dict]:
    """Run the stages in order, skipping those whose marker exists. Returns each stage's summary."""
    ctx = plan(cfg, stages, storage)
    summaries: dict[str, dict] = {}
    for st in stages:
        out = ctx.output(st.name)
        marker = storage.path(st.name, ctx.keys[st.name], MARKER)
        done = storage.read_json(marker)
        if done is not None:
            log(f"[{st.name}] skipped: already done in {out} ({still_valid(ctx.basis[st.name])})")
            summaries[st.name] = {**done.get("summary", {}), "skipped": True}
            continue
        log(f"[{st.name}] running -> {out}")
        storage.makedirs(out)
        start = time.time()
        summary = st.run(cfg, ctx) or {}
        elapsed = round(time.time() - start, 1)
        storage.write_json(marker, {"stage": st.name, "key": ctx.keys[st.name], "seconds": elapsed,
                                    "basis": ctx.basis[st.name],
                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "summary": summary})
        log(f"[{st.name}] done in {elapsed} s")
        summaries[st.name] = {**summary, "skipped": False}
    return summaries
