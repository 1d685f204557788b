"""Every path, link and test name that README.md and docs/*.md mention exists.

What counts:
- a Markdown link target: relative to the page, its ``#anchor`` one of the target page's headings;
- a path in backticks or in a shell code block (bash, sh, shell, console; other blocks draw a run's folders):
  a token with a ``/`` that ends in ``/``, ends in a file suffix or starts with a top-level entry of the
  repository (``configs/smoke.yaml``, ``tests/cluster/``, ``llm_emf/files.py``), relative to the repository
  root or the page; a bare file name with a source suffix (``.py``, ``.md``, ``.toml``, ``.sh``) is the name
  of some file in the repository;
- a test name: ``tests/x.py::test_y``, or ``test_y`` in backticks, defined in one of the test files the
  same section names (in any test file when the section names none); ``test_y_*`` matches a prefix.

Not checked, by one rule each: URLs (``scheme://``), paths under ``../shared`` (the shared data, outside
the checkout), home and absolute paths (``~/``, ``/dev/zero``), shell variables (``$X``), placeholders
(any ``<...>``: ``<pipeline.storage>/mlflow.db``, ``<run>/checkpoints/``), and paths that ``.gitignore``
ignores: run-time outputs such as ``runs/demo/mlflow.db``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "toml", "txt", "tsv", "csv", "parquet", "gz", "jsonl",
                 "png", "sh", "cfg", "ini", "log", "db", "pt", "bin", "gguf", "whl", "sha256"}
SOURCE_SUFFIXES = {"py", "md", "toml", "sh"}  # bare names with other suffixes name files of a dataset or run

FENCE = re.compile(r"^\s*(```|~~~)")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
TEST_FILE = re.compile(r"tests/[\w/]+/test_\w+\.py|tests/test_\w+\.py")
TEST_NAME = re.compile(r"test_\w+\*?")
PATH_CHARS = re.compile(r"^[\w.\-*<>]+(/[\w.\-*<>]*)+$")
BARE_NAME = re.compile(r"^[\w.\-]+\.(\w+)$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
QUOTES = "\"'()[]{}"
TRAILING = ",;:.!?"


# -- reading a page ------------------------------------------------------------------------------------

def _lines_with_sections(text: str):
    """(line number, line, in a code block, section heading) for each line of a page; the lines of a code
    block other than a shell block are left out."""
    section, fenced, shell = "", False, False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            shell = fenced and line.strip()[3:].strip().lower() in SHELL_BLOCKS
            yield n, line, True, section
            continue
        if fenced and not shell:
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            section = m.group(2)
        yield n, line, fenced, section


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line, fenced, _ in _lines_with_sections(page.read_text(encoding="utf-8")):
        m = None if fenced else HEADING.match(line)
        if m:
            s = slug(m.group(2))
            k = seen.get(s, 0)
            out.add(s if k == 0 else f"{s}-{k}")
            seen[s] = k + 1
    return out


# -- what is a path, and what is skipped ---------------------------------------------------------------

def _gitignore_patterns() -> list[str]:
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return [p.strip() for p in lines if p.strip() and not p.startswith(("#", "!"))]


IGNORED = _gitignore_patterns()


def ignored(path: str) -> bool:
    """Whether .gitignore ignores ``path`` (relative to the root) or a folder above it."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    for pattern in IGNORED:
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        pat = pattern.strip("/")
        for i in range(1, len(parts) + 1):
            if anchored and fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                return True
            if not anchored and fnmatch.fnmatchcase(parts[i - 1], pat):
                return True
    return False


TOP_LEVEL = {p.name for p in ROOT.iterdir() if p.name != ".git" and not ignored(p.name)}


def skipped(token: str) -> bool:
    return (SCHEME.match(token) is not None or token.startswith(("~", "/", "$", "-", "../shared"))
            or "<" in token or ">" in token or "..." in token)


def is_path(token: str) -> bool:
    if not PATH_CHARS.match(token):
        return False
    last = token.rstrip("/").rsplit("/", 1)[-1]
    suffix = last.rsplit(".", 1)[-1] if "." in last else ""
    return token.endswith("/") or suffix in FILE_SUFFIXES or token.split("/", 1)[0] in TOP_LEVEL


def tokens(code: str):
    """Path candidates in a code span or a code-block line: words, and the value of ``key=value``."""
    for word in code.split():
        word = _trim(word)
        if "=" in word:
            word = _trim(word.rsplit("=", 1)[1])
        if word:
            yield word


def _trim(word: str) -> str:
    """Quotes and brackets around a word, and the punctuation after it (a leading dot stays: ``.ci/run``)."""
    return word.strip(QUOTES).rstrip(TRAILING).strip(QUOTES)


def path_exists(token: str, page: Path) -> bool:
    bases = [ROOT, page.parent]
    if "*" in token:
        return any(any(base.glob(token.rstrip("/"))) for base in bases)
    return any((base / token).exists() for base in bases)


_ALL_FILES: set[str] | None = None


def repo_file_names() -> set[str]:
    global _ALL_FILES
    if _ALL_FILES is None:
        _ALL_FILES = set()
        for folder, dirs, files in os.walk(ROOT):
            rel = Path(folder).relative_to(ROOT)
            dirs[:] = [d for d in dirs if d != ".git" and not ignored((rel / d).as_posix())]
            _ALL_FILES.update(f for f in files if not ignored((rel / f).as_posix()))
    return _ALL_FILES


# -- test names ----------------------------------------------------------------------------------------

_DEFINED: dict[Path, set[str]] = {}


def defined_tests(test_file: Path) -> set[str]:
    if test_file not in _DEFINED:
        text = test_file.read_text(encoding="utf-8") if test_file.is_file() else ""
        _DEFINED[test_file] = set(re.findall(r"^\s*(?:async\s+)?def\s+(test_\w+)", text, flags=re.M))
    return _DEFINED[test_file]


def _is_defined(name: str, files: list[Path]) -> bool:
    files = files or sorted((ROOT / "tests").rglob("test_*.py"))
    for f in files:
        names = defined_tests(f)
        if (name[:-1] and any(n.startswith(name[:-1]) for n in names)) if name.endswith("*") else name in names:
            return True
    return False


# -- the checks ----------------------------------------------------------------------------------------

def problems(page: Path) -> list[str]:
    """Every dangling path, link, anchor or test name of one page, as 'page:line: what'."""
    rel = page.relative_to(ROOT) if ROOT in page.parents else page.name
    text = page.read_text(encoding="utf-8")
    out: list[str] = []
    section_files: dict[str, list[Path]] = {}
    lines = list(_lines_with_sections(text))
    for _, line, _, section in lines:  # test files a section names, in order
        for f in TEST_FILE.findall(line):
            section_files.setdefault(section, [])
            if ROOT / f not in section_files[section]:
                section_files[section].append(ROOT / f)

    for n, code, fenced, section in _code(lines):
        where = f"{rel}:{n}"
        for f, name in NODE_ID.findall(code):
            if not (ROOT / f).is_file():
                out.append(f"{where}: test file {f} does not exist")
            elif name not in defined_tests(ROOT / f):
                out.append(f"{where}: {f} defines no {name}")
        for tok in tokens(code):
            if "::" in tok:
                continue
            if TEST_NAME.fullmatch(tok) and not fenced:
                if not _is_defined(tok, section_files.get(section, [])):
                    named = ", ".join(str(p.relative_to(ROOT)) for p in section_files.get(section, []))
                    out.append(f"{where}: test {tok} is defined in none of: {named or 'tests/'}")
                continue
            if skipped(tok) or ignored(tok):
                continue
            if is_path(tok):
                if not path_exists(tok, page):
                    out.append(f"{where}: path {tok} does not exist")
            elif "/" not in tok and (m := BARE_NAME.match(tok)) and m.group(1) in SOURCE_SUFFIXES:
                if tok not in repo_file_names():
                    out.append(f"{where}: no file named {tok} in the repository")
    for n, line, fenced, _ in lines:
        if not fenced:
            for target in LINK.findall(_without_spans(line)):
                out += check_link(target, page, f"{rel}:{n}")
    return out


def _code(lines):
    """(line number, code, in a code block, section): each code-block line, and each code span of the
    prose (a span may run over a line break within a paragraph)."""
    para: list[tuple[int, str, str]] = []

    def spans():
        text = "\n".join(line for _, line, _ in para)
        for m in SPAN.finditer(text):
            n = para[0][0] + text.count("\n", 0, m.start())
            yield n, m.group(2), False, para[text.count("\n", 0, m.start())][2]

    for n, line, fenced, section in lines:
        if fenced or not line.strip():
            yield from spans()
            para = []
            if fenced and not FENCE.match(line):
                yield n, line, True, section
        else:
            para.append((n, line, section))
    yield from spans()


def _without_spans(line: str) -> str:
    return SPAN.sub("", line)


def check_link(target: str, page: Path, where: str) -> list[str]:
    if SCHEME.match(target):
        return []
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if dest == SHARED or SHARED in dest.parents:
        return []
    if not dest.exists():
        return [f"{where}: link target {target} does not exist"]
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return [f"{where}: link target {target}: {dest.name} has no heading #{anchor}"]
    return []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_link_and_test_name_a_page_mentions_exists(page):
    found = problems(page)
    assert not found, f"{len(found)} dangling reference(s):\n" + "\n".join(found)


def test_the_rules_tell_paths_from_other_tokens():
    # paths: a slash and a suffix, a trailing slash, or a top-level entry first
    assert is_path("configs/smoke.yaml") and is_path("tests/cluster/") and is_path("llm_emf/files")
    # not paths: choices, key lists, shorthand
    assert not is_path("none/center/whiten") and not is_path("model.use_id/use_text")
    assert not is_path("MLFLOW_TRACKING_USERNAME/PASSWORD")
    # skipped by rule: placeholders, URLs, home, absolute, the shared data, ignored run-time outputs
    for tok in ("<pipeline.storage>/mlflow.db", "s3://bucket/x", "~/.ray/auth_token", "/dev/zero",
                "../shared/data/llmcdsr_food_kitchen", "file://"):
        assert skipped(tok), tok
    assert ignored("runs/demo/mlflow.db") and ignored("bench/results/raw/x.json") and ignored(".venv/py3.12")
    assert not ignored("bench/results/overhead.md")
    assert slug("4. Feature jobs (enrich, embed) that die midway") == "4-feature-jobs-enrich-embed-that-die-midway"
    assert list(tokens("llm-emf tune --space tune_spaces/fusion.yaml data.dataset=runs/fk")) == [
        "llm-emf", "tune", "--space", "tune_spaces/fusion.yaml", "runs/fk"]


def test_a_page_with_dangling_references_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "See [the method](../../nowhere.md), [a heading](#title), [another](#no-such-heading).\n"
        "Code in `llm_emf/no_such_module.py` and `configs/smoke.yaml`; output in `runs/x/y.json`, "
        "`<run>/checkpoints/latest.json`.\n\n"
        "Tests (`tests/test_docs.py`): `test_a_page_with_dangling_references_fails`, `test_no_such_test`.\n\n"
        "```bash\nllm-emf tune --space tune_spaces/no_such_space.yaml data.dataset=runs/fk\n```\n\n"
        "```\nrun/\n  checkpoints/latest.json   a drawing, not checked\n```\n",
        encoding="utf-8")
    found = "\n".join(problems(page))
    for expected in ("../../nowhere.md", "#no-such-heading", "llm_emf/no_such_module.py", "test_no_such_test",
                     "tune_spaces/no_such_space.yaml"):
        assert expected in found, (expected, found)
    for fine in ("#title", "configs/smoke.yaml", "runs/x", "latest.json", "test_a_page_with"):
        assert fine not in found, (fine, found)
