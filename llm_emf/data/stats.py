"""Statistics of a prepared dataset: what ``llm-emf stats`` prints, as a plain dict first (tests read it).

Sequences (rows: training sequences and evaluation cases) and people are counted apart: a person may have
several rows in a split (an Amazon user has a valid/test case per domain; a C2DSR user may be on several lines of
a file). Who the person behind a row is comes from the importer's case ids (people.py)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from .cold import cold_report
from .people import last_items, person_ids
from .schema import SPLITS, Dataset

# sequence-length histogram bins: [lo, hi)
LENGTH_BINS = ((1, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, 100), (100, 200), (200, None))
BAR_WIDTH = 30


def _bin_label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo}+"
    return str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"


def split_stats(ds: Dataset, split: str, people=None) -> dict:
    mask = pc.equal(ds.sequences.column("split"), split)
    table = ds.sequences.filter(mask)
    lengths = pc.list_value_length(table.column("items")).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(table.column("items")).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(table.column("items")).to_numpy(zero_copy_only=False)
    in_y = flat >= ds.n_x
    y_per_row = np.bincount(parents, weights=in_y, minlength=len(lengths)).astype(np.int64)
    people = person_ids(ds) if people is None else people
    out = {
        "sequences": int(table.num_rows),
        "people": int(pc.count_distinct(people.filter(mask.combine_chunks())).as_py()),
        "interactions": [int((~in_y).sum()), int(in_y.sum())],
        "sequences_both_domains": int(((y_per_row > 0) & (y_per_row < lengths)).sum()),
        "length": None,
    }
    if split != "train" and len(lengths):  # target = last item
        targets = last_items(table.column("items"))
        out["targets"] = [int((targets < ds.n_x).sum()), int((targets >= ds.n_x).sum())]
    if len(lengths):
        out["length"] = {
            "min": int(lengths.min()), "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max()),
            "histogram": {_bin_label(lo, hi): int(((lengths >= lo) & (lengths < (hi or np.inf))).sum())
                          for lo, hi in LENGTH_BINS},
        }
    if ds.meta.source_format == "llmcdsr":  # user_id = "<source file tag>:<user>"
        tags = [u.split(":", 1)[0] for u in table.column("user_id").to_pylist()]
        out["users_by_source"] = {t: tags.count(t) for t in dict.fromkeys(tags)}
    return out


def compute_stats(ds: Dataset) -> dict:
    domains = ds.item_domains()
    titles = ds.items.column("title").is_valid().to_numpy(zero_copy_only=False)
    images = ds.items.column("image_uri").is_valid().to_numpy(zero_copy_only=False)
    extra = ds.meta.extra if isinstance(ds.meta.extra, dict) else {}
    people = person_ids(ds)
    files = extra.get("source_files") or {}
    return {
        "name": ds.meta.name,
        "source_format": ds.meta.source_format,
        "fingerprint": ds.meta.fingerprint,
        "domains": list(ds.meta.domains),
        "items": [int((domains == d).sum()) for d in (0, 1)],
        "items_with_title": [int(titles[domains == d].sum()) for d in (0, 1)],
        "items_with_image": [int(images[domains == d].sum()) for d in (0, 1)],
        "people": int(pc.count_distinct(people).as_py()),
        "sequences": int(ds.sequences.num_rows),
        "case_ids": extra.get("case_ids"),
        "splits": {split: split_stats(ds, split, people) for split in SPLITS},
        "lines_by_file": {k: {f: v[f] for f in ("file", "lines", "cases", "users", "users_on_several_lines")}
                          for k, v in files.items() if isinstance(v, dict) and "lines" in v and v.get("file")},
        "missing_split_files": list(extra.get("missing_split_files", [])),
        "quarantined_rows": int(ds.meta.quarantined_rows),
        "short_users": extra.get("short_users", {}).get("count"),
        "cold": cold_report(ds),
        "withheld": {k: v for k, v in extra.get("cold_items", {}).items() if k != "item_index"} or None,
        "recipe": extra.get("recipe"),           # amazon format: counts of each step
        "items_missing_metadata": extra.get("items_missing_metadata"),
    }


def _recipe_lines(s: dict, x: str, y: str) -> list[str]:
    """The amazon recipe's steps: what each left in X / Y (interactions, users, items)."""
    r = s.get("recipe")
    if not r:
        return []
    def left(v: list[dict]) -> str:
        return " / ".join(f"{d} {c['interactions']:,} inter., {c['users']:,} users, {c['items']:,} items"
                          for d, c in zip((x, y), v))

    st = r["settings"]
    lines = [f"recipe: read {left(r['read'])}"]
    if "repeated_reviews" in r:
        rep = r["repeated_reviews"]
        lines.append(f"  repeated reviews (same user, item and time) dropped: {x} {rep[0]:,} / {y} {rep[1]:,}")
    core = "k-core off" if st["k_core"] <= 1 else \
        f"{st['k_core']}-core ({r['k_core'][0]['rounds']} / {r['k_core'][1]['rounds']} rounds)"
    lines.append(f"  {core}: {left(r['k_core'])}")
    if "min_per_domain" in r:
        lines.append(f"  >= {st['min_per_domain']} per domain: {left(r['min_per_domain'])}")
    lines.append(f"  users in both domains: {r['users_in_both_domains']:,}")
    if "overlap" in r:
        lines.append(f"  only those: {left(r['overlap'])}")
    sp = r["split"]
    lines.append(f"  held out ({st['holdout']}): users {sp['users']:,}, train sequences {sp['train_sequences']:,}, "
                 f"valid cases {x} {sp['valid_cases'][0]:,} / {y} {sp['valid_cases'][1]:,}, test cases "
                 f"{x} {sp['test_cases'][0]:,} / {y} {sp['test_cases'][1]:,}; users without train "
                 f"{sp['users_without_train']:,}, cases without history {sp['cases_without_history']:,}, "
                 f"short users {sp['short_users']:,}")
    if s.get("items_missing_metadata"):
        m = s["items_missing_metadata"]
        lines.append(f"  items without metadata (kept, no text): {x} {m[0]:,} / {y} {m[1]:,}")
    return lines


def _cold_lines(s: dict, x: str, y: str) -> list[str]:
    pair = lambda v: f"{x} {v[0]:,} / {y} {v[1]:,}"  # noqa: E731
    c, w = s["cold"], s.get("withheld")
    lines = []
    if w:
        lines.append(f"withheld for cold-start (data.cold_items={w['fraction']:g}, seed {w['seed']}): items "
                     f"{pair(w['withheld'])}; training interactions removed {pair(w['train_interactions_removed'])}"
                     f"; training sequences left empty and dropped {w['train_sequences_dropped']:,}; cases with a "
                     f"withheld target: valid {pair(w['valid_cases_withheld'])}, test {pair(w['test_cases_withheld'])}")
    lines.append(f"cold items (in no training sequence): {pair(c['items'])}; cases with a cold target: "
                 f"valid {pair(c['valid_cases'])}, test {pair(c['test_cases'])}")
    return lines


def format_stats(s: dict) -> str:
    x, y = s["domains"]
    lines = [f"dataset {s['name']} ({s['source_format']}, fingerprint {s['fingerprint']})",
             f"items: {x} {s['items'][0]:,}  {y} {s['items'][1]:,}  (with title {s['items_with_title'][0]:,} / "
             f"{s['items_with_title'][1]:,}; with image {s['items_with_image'][0]:,} / {s['items_with_image'][1]:,})",
             f"people (distinct users): {s['people']:,}   sequences (training sequences and evaluation cases): "
             f"{s['sequences']:,}   quarantined rows: {s['quarantined_rows']:,}"]
    if s.get("case_ids"):
        lines.append(f"case ids: {s['case_ids']}")
    for name, f in s.get("lines_by_file", {}).items():
        several = f" ({f['users_on_several_lines']:,} on several lines)" if f["users_on_several_lines"] else ""
        lines.append(f"{f['file']}: {f['lines']:,} lines, {f['cases']:,} kept, {f['users']:,} users{several}")
    if s["missing_split_files"]:
        lines.append(f"missing split files (0 users): {', '.join(s['missing_split_files'])}")
    if s["short_users"]:
        lines.append(f"users left out for too few interactions: {s['short_users']:,}")
    lines += _recipe_lines(s, x, y)
    lines += _cold_lines(s, x, y)
    lines.append(f"{'split':<6} {'sequences':>9} {'people':>8} {'both dom.':>9} {x + ' inter.':>14} "
                 f"{y + ' inter.':>14} {'len min/med/p90/max':>22}")
    for split, st in s["splits"].items():
        ln = st["length"]
        lens = f"{ln['min']}/{ln['median']:g}/{ln['p90']:g}/{ln['max']}" if ln else "-"
        lines.append(f"{split:<6} {st['sequences']:>9,} {st['people']:>8,} {st['sequences_both_domains']:>9,} "
                     f"{st['interactions'][0]:>14,} {st['interactions'][1]:>14,} {lens:>22}")
    for split, st in s["splits"].items():
        extras = []
        if st.get("users_by_source"):
            extras.append("users by source file: " + ", ".join(f"{k} {v:,}" for k, v in st["users_by_source"].items()))
        if st.get("targets"):
            extras.append(f"targets: {x} {st['targets'][0]:,}, {y} {st['targets'][1]:,}")
        if extras:
            lines.append(f"{split}: " + "; ".join(extras))
    for split, st in s["splits"].items():
        if not st["length"]:
            continue
        hist = st["length"]["histogram"]
        top = max(hist.values()) or 1
        lines.append(f"{split} sequence lengths:")
        lines += [f"  {label:>8} {count:>8,} {'#' * round(BAR_WIDTH * count / top)}" for label, count in hist.items()]
    return "\n".join(lines)
