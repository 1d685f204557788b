"""Versioned prompt templates for LLM enrichment (method.md stage 1).

A template is a text file ``<name>.txt`` with ``{title}`` and ``{domain}`` placeholders, next to a
``<name>.notitle.txt`` variant used for items without a title (domain-only prompt). The prompt version
recorded with every enriched row is ``<name>@<sha256 of both files, 8 hex>``, so editing a template
invalidates the enrichment cache without anyone having to remember to bump a number.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from llm_emf.config import ConfigError

PROMPT_DIR = Path(__file__).with_name("prompts")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    with_title: str
    without_title: str

    @property
    def version(self) -> str:
        digest = hashlib.sha256((self.with_title + "\0" + self.without_title).encode()).hexdigest()[:8]
        return f"{self.name}@{digest}"

    def render(self, title: str | None, domain: str) -> tuple[str, bool]:
        """The prompt for one item and whether it had a usable title."""
        title = html.unescape(title or "").strip()  # source titles carry HTML entities (&amp;)
        if title:
            return self.with_title.format(title=title, domain=domain), True
        return self.without_title.format(domain=domain), False


def load_template(spec: str) -> PromptTemplate:
    """``spec`` is a bundled template name (``enrich_v1``) or a path to a ``.txt`` template."""
    path = Path(spec)
    if path.suffix != ".txt":
        path = PROMPT_DIR / f"{spec}.txt"
    if not path.is_file():
        bundled = sorted(p.stem for p in PROMPT_DIR.glob("*.txt") if ".notitle" not in p.name)
        raise ConfigError(f"features.enrich.prompt: template {path} not found; bundled templates: {bundled}")
    notitle = path.with_name(path.stem + ".notitle.txt")
    if not notitle.is_file():
        raise ConfigError(f"features.enrich.prompt: {path} needs a domain-only variant {notitle} "
                          f"for items without a title")
    with_title, without_title = path.read_text(encoding="utf-8"), notitle.read_text(encoding="utf-8")
    for file, text, needed in ((path, with_title, ("{title}", "{domain}")), (notitle, without_title, ("{domain}",))):
        missing = [n for n in needed if n not in text]
        if missing:
            raise ConfigError(f"{file}: expected placeholders {list(needed)}, found none for {missing}")
    return PromptTemplate(path.stem, with_title, without_title)
