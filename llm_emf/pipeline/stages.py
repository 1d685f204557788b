"""Content-addressed pipeline stages: each stage's output folder is named by a hash of what determines it.

A stage's key hashes (stage name, code version, the config values it reads, the keys of the stages it
reads from). Its outputs go to ``<storage>/<stage>/<key>/`` and a ``_SUCCESS.json`` marker is written last.
A resubmitted job recomputes the keys, finds the markers, and skips finished stages; a changed setting
changes the key of that stage and of everything downstream of it, and nothing else.
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

MARKER = "_SUCCESS.json"


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]                 # config key prefixes that determine the output
    upstream: tuple[str, ...] = ()         # stages whose outputs it reads
    ignores: tuple[str, ...] = ()          # keys under `reads` that do not change the output (paths, names)
    run: Callable[[Config, "StageContext"], dict] = field(default=None, repr=False, compare=False)


@dataclass
class StageContext:
    storage: Storage
    keys: dict[str, str]                   # stage name -> key, for this run
    outputs: dict[str, str]                # stage name -> output folder

    def output(self, stage: str) -> str:
        return self.outputs[stage]


def _selected(flat: dict, stage: Stage) -> dict:
    def wanted(k: str) -> bool:
        hit = any(k == p or k.startswith(p + ".") for p in stage.reads)
        return hit and not any(k == p or k.startswith(p + ".") for p in stage.ignores)

    return {k: v for k, v in sorted(flat.items()) if wanted(k)}


def stage_key(cfg: Config, stage: Stage, upstream_keys: dict[str, str]) -> str:
    payload = {
        "stage": stage.name,
        "version": __version__,
        "config": _selected(flatten_config(cfg), stage),
        "upstream": {u: upstream_keys[u] for u in stage.upstream},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan(cfg: Config, stages: list[Stage], storage: Storage) -> StageContext:
    """Compute every stage's key and output folder (upstream first)."""
    keys: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for st in stages:
        missing = [u for u in st.upstream if u not in keys]
        if missing:
            raise ValueError(f"stage '{st.name}' reads {missing}, which are not earlier stages of this pipeline")
        keys[st.name] = stage_key(cfg, st, keys)
        outputs[st.name] = storage.path(st.name, keys[st.name])
    return StageContext(storage, keys, outputs)


def run_stages(cfg: Config, stages: list[Stage], storage: Storage, log=print) -> dict[str, dict]:
    """Run the stages in order, skipping those whose marker exists. Returns each stage's summary."""
    ctx = plan(cfg, stages, storage)
    summaries: dict[str, dict] = {}
    for st in stages:
        out = ctx.output(st.name)
        marker = storage.path(st.name, ctx.keys[st.name], MARKER)
        done = storage.read_json(marker)
        if done is not None:
            log(f"[{st.name}] skipped: already done in {out}")
            summaries[st.name] = {**done.get("summary", {}), "skipped": True}
            continue
        log(f"[{st.name}] running -> {out}")
        storage.makedirs(out)
        start = time.time()
        summary = st.run(cfg, ctx) or {}
        elapsed = round(time.time() - start, 1)
        storage.write_json(marker, {"stage": st.name, "key": ctx.keys[st.name], "seconds": elapsed,
                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "summary": summary})
        log(f"[{st.name}] done in {elapsed} s")
        summaries[st.name] = {**summary, "skipped": False}
    return summaries
