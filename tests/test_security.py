"""Security guarantees that a grep can check: no unpickling, safe YAML, no eval, localhost by default."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("llm_emf", "workflows", "bench") for p in (ROOT / d).rglob("*.py")]

FORBIDDEN = {
    r"\bpickle\.loads?\(": "unpickling runs arbitrary code",
    r"\bcloudpickle\.loads?\(": "unpickling runs arbitrary code",
    r"\bjoblib\.load\(": "joblib.load unpickles",
    r"\bnp\.load\([^)]*allow_pickle\s*=\s*True": "numpy with allow_pickle unpickles",
    r"\byaml\.load\(": "yaml.load can build arbitrary objects: use yaml.safe_load",
    r"(?<![\w.])eval\(": "eval of strings",
    r"(?<![\w.])exec\(": "exec of strings",
}


def _code_lines(path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.split("#", 1)[0]
        if stripped.strip():
            yield n, stripped


def test_sources_were_found():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("pattern, why", FORBIDDEN.items())
def test_no_unsafe_deserialisation_or_eval(pattern, why):
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES for n, line in _code_lines(p) if re.search(pattern, line)]
    assert not hits, f"{why}: {hits}"


def test_every_torch_load_is_weights_only():
    hits = []
    for p in SOURCES:
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 200]
            if "weights_only=True" not in call.split("\n\n")[0]:
                hits.append(f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not hits, f"torch.load without weights_only=True: {hits}"


def test_no_server_binds_all_interfaces_by_default():
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES for n, line in _code_lines(p)
            if re.search(r"""["']0\.0\.0\.0["']""", line)]
    assert not hits, f"a default bind to 0.0.0.0: {hits}"
