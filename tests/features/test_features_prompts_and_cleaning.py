"""Prompt templates, reasoning stripping and content hashes."""

from __future__ import annotations

import pytest

from llm_emf.config import ConfigError
from llm_emf.features.generation import strip_reasoning
from llm_emf.hashing import stable_hash
from llm_emf.features.prompts import load_template

pytestmark = pytest.mark.unit


def test_bundled_template_renders_title_and_domain():
    t = load_template("enrich_v1")
    prompt, has_title = t.render("Kuhn Rikon Heart Spring 10-Inch Whisk", "Kitchen")
    assert has_title
    assert "Product title: Kuhn Rikon Heart Spring 10-Inch Whisk" in prompt
    assert 'Amazon "Kitchen" category' in prompt
    assert t.version.startswith("enrich_v1@") and len(t.version) == len("enrich_v1@") + 8


@pytest.mark.parametrize("title", [None, "", "   "])
def test_missing_title_gets_domain_only_prompt(title):
    prompt, has_title = load_template("enrich_v1").render(title, "Food")
    assert not has_title
    assert "title is unknown" in prompt and '"Food"' in prompt and "{title}" not in prompt


def test_editing_a_template_changes_its_version(tmp_path):
    (tmp_path / "p.txt").write_text("Title {title} in {domain}")
    (tmp_path / "p.notitle.txt").write_text("Something in {domain}")
    v1 = load_template(str(tmp_path / "p.txt")).version
    (tmp_path / "p.txt").write_text("Title: {title} ({domain})")
    v2 = load_template(str(tmp_path / "p.txt")).version
    assert v1 != v2 and v1.startswith("p@")


def test_template_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="enrich_v9.txt not found"):
        load_template("enrich_v9")
    (tmp_path / "q.txt").write_text("Title {title} in {domain}")
    with pytest.raises(ConfigError, match="q.notitle.txt"):
        load_template(str(tmp_path / "q.txt"))
    (tmp_path / "q.notitle.txt").write_text("no placeholder")
    with pytest.raises(ConfigError, match=r"q.notitle.txt: expected placeholders \['\{domain\}'\]"):
        load_template(str(tmp_path / "q.txt"))


@pytest.mark.parametrize("raw, clean", [
    ("<think>let me see</think>\nKey terms: whisk", "Key terms: whisk"),
    ("Summary: a mat <THINK>hmm\n</THINK> for cutting", "Summary: a mat  for cutting"),
    ("<think>cut off by the token cap", ""),
    ("Key terms: a</think> b", "Key terms: a b"),
    ("  plain  ", "plain"),
])
def test_strip_reasoning(raw, clean):
    assert strip_reasoning(raw) == clean


def test_stable_hash_separates_fields_and_none():
    assert stable_hash("ab", "c") != stable_hash("a", "bc")
    assert stable_hash(None) != stable_hash("None") != stable_hash("")
    assert stable_hash("x", 1) == stable_hash("x", 1) and len(stable_hash("x")) == 16
