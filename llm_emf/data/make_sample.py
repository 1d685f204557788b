"""Cut the bundled sample (llm_emf/sample_data/food_kitchen) from the full LLMCDSR Food-Kitchen release.

    python -m llm_emf.data.make_sample --source /work/shared/data/llmcdsr_food_kitchen \\
        --output llm_emf/sample_data/food_kitchen --seed 0

Why this way: every sample item is later enriched by a 0.5B LLM on CPU, so the catalog must stay under
ITEM_BUDGET items, yet every kept sequence must be a real, untouched sequence (no interactions removed).
Picking the most popular items and keeping users inside them leaves almost nobody (valid/test sequences
have ~19 items), so users are picked greedily instead: repeatedly take, from the file furthest below its
quota (valid/test weighted to come first), the user whose sequence adds the fewest items not yet in the
catalog (ties: the one whose new items are most popular in the whole source), until the next user would
exceed the budget. Candidate order is shuffled with ``seed``, which only breaks the remaining ties, so the
same seed gives the same files byte for byte (gzip with mtime 0). Items are then re-indexed
densely (A first, in source order) and a new num.txt is written.
"""

from __future__ import annotations

import argparse
import gzip
import random
from collections import Counter
from pathlib import Path

from .importers.llmcdsr import SEQUENCE_FILES, read_num
from .textio import BadRows, find_file, read_lines

ITEM_BUDGET = 500
QUOTAS = {"valid": 60, "test": 60, "train_overlap": 300, "train_A": 60, "train_B": 60}
PRIORITY = {"valid": 0.3, "test": 0.3, "train_overlap": 1.0, "train_A": 1.0, "train_B": 1.0}


def read_source(folder: Path) -> dict[str, list[tuple[str, list[int]]]]:
    bad = BadRows(skip=False)
    out = {}
    for stem, *_ in SEQUENCE_FILES:
        out[stem] = [(t.split("\t")[0], [int(i) for i in t.split("\t")[1].split(",")])
                     for _, t in read_lines(find_file(folder, f"{stem}.txt"), bad)]
    return out


def choose_users(seqs: dict[str, list[tuple[str, list[int]]]], seed: int) -> tuple[dict[str, list[int]], set[int]]:
    rng = random.Random(seed)
    popularity = Counter(i for rows in seqs.values() for _, items in rows for i in set(items))
    candidates = {stem: rng.sample(range(len(rows)), len(rows)) for stem, rows in seqs.items()}
    item_sets = {stem: [frozenset(items) for _, items in rows] for stem, rows in seqs.items()}
    quotas, chosen, catalog = dict(QUOTAS), {stem: [] for stem in QUOTAS}, set()
    while open_files := [s for s in quotas if len(chosen[s]) < quotas[s]]:
        stem = min(open_files, key=lambda s: len(chosen[s]) / quotas[s] * PRIORITY[s])
        # cost = new catalog items; among equals prefer popular new items (they help later users fit)
        (cost, _), pos = min(((len(new := item_sets[stem][u] - catalog), -sum(popularity[i] for i in new)), pos)
                             for pos, u in enumerate(candidates[stem]))
        if len(catalog) + cost > ITEM_BUDGET:
            quotas[stem] = len(chosen[stem])  # this file is full: no user fits any more
            continue
        user = candidates[stem].pop(pos)
        chosen[stem].append(user)
        catalog |= item_sets[stem][user]
    return {stem: sorted(users) for stem, users in chosen.items()}, catalog


def _write_gz(path: Path, lines: list[str]) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write("".join(line + "\n" for line in lines).encode("utf-8"))


def make_sample(source: Path, output: Path, seed: int = 0) -> dict:
    n_a, _ = read_num(source)
    seqs = read_source(source)
    chosen, catalog = choose_users(seqs, seed)
    kept = sorted(catalog)  # A ids sort before B ids, so A stays first
    new_id = {old: new for new, old in enumerate(kept)}
    new_a = sum(1 for i in kept if i < n_a)
    output.mkdir(parents=True, exist_ok=True)
    _write_gz(output / "num.txt.gz", [str(new_a), str(len(kept) - new_a)])
    for letter, domain_ids in (("A", [i for i in kept if i < n_a]), ("B", [i for i in kept if i >= n_a])):
        offset = 0 if letter == "A" else n_a
        wanted = {i - offset for i in domain_ids}
        rows = {}
        for _, text in read_lines(find_file(source, f"items_{letter}.tsv"), BadRows(skip=False)):
            idx, rest = text.split("\t", 1)
            if idx.isdigit() and int(idx) in wanted:
                rows[int(idx)] = rest
        local = {old: new for new, old in enumerate(sorted(wanted))}
        _write_gz(output / f"items_{letter}.tsv.gz",
                  ["item_idx\tasin\ttitle"] + [f"{local[i]}\t{rows[i]}" for i in sorted(wanted)])
    counts = {}
    for stem, users in chosen.items():
        lines = [f"{seqs[stem][u][0]}\t{','.join(str(new_id[i]) for i in seqs[stem][u][1])}" for u in users]
        _write_gz(output / f"{stem}.txt.gz", lines)
        counts[stem] = (len(users), sum(len(seqs[stem][u][1]) for u in users))
    return {"items": (new_a, len(kept) - new_a), "users": counts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(make_sample(a.source, a.output, a.seed))


if __name__ == "__main__":
    main()
