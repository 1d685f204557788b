"""ABXI's release (github.com/DiMarzioBian/ABXI ``data/<data>/``, WWW 2025), each file plain or gzip'd.

    <data>_<len_max>_preprocessed.txt   ``user_idx item|unix_ts item|unix_ts ...``: one user a line, both domains
                                        interleaved, oldest first (data/prepare_amazon.py sorts by user and time)
    map_item_<len_max>.txt              one JSON object ``{ASIN: [item_id, domain]}``: domain 0 (A) has ids
                                        1..|A|, domain 1 (B) |A|+1..|A|+|B|; 0 is ABXI's padding
    map_user_<len_max>.txt              JSON ``{reviewerID: user_idx}``; optional

(ABXI's first releases name the maps ``map_item.txt`` / ``map_user.txt``: either name is read, never both.)

The split is ABXI's own (models/data/dataloader.py, ``get_dataset``): a line's last ``len_max`` tokens (the
number in the file name; ``line[1:][-len_max:]``) are the sequence ``seq``; training is ``seq[:-2]``, the valid
case is ``seq[:-1]`` (target ``seq[-2]``, history every earlier item of both domains) and the test case is
``seq`` (target ``seq[-1]``, history including the valid target). One leave-one-out on the merged sequence, not
one per domain: trainer.py (``evaluate_batch``) scores a case in the domain of its target, so a domain's cases
are the users whose last (test) or second-to-last (valid) item is in it. Nothing after a target is in its
history. This is the canonical layout as is (``valid`` / ``test`` rows end with their target).

ABXI tells an item's domain by its id (``id <= |A|``, |A| = the map's domain-0 entries), so the map must number
A before B without gaps: ids of one domain among the other's, or more gaps than quarantined map entries explain,
stop the import even with skip_bad_rows (ids would change domain). A map entry that is not ``[id >= 1, 0 or 1]``,
or repeats an ASIN or an id, is a bad row (named by its line and its ASIN: ABXI writes each map on one line).

A sequence line is a bad row when its user_idx is not a non-negative integer (or is repeated, or is missing from
the user map), it has no tokens, a token is not ``item|unix_ts`` of non-negative integers, an item is not in the
item map, its timestamps go back in time (ABXI takes the file order as the time order; ties keep it), or a
timestamp is in another unit than most of the file's. Lines with fewer than ``data.min_interactions`` items after
the cut are left out and counted (``extra.short_users``; ABXI's files have >= 10).

Ids: ``item_id`` is the ASIN, ``item_index`` the ABXI id - 1 (the rank among the kept ids); ``user_id`` is the
reviewerID from the user map, else the user_idx, the same in every split (``extra.case_ids``). Timestamps are
kept (unix seconds). Domain names (domains.py): data.domain_x / data.domain_y when set, else the pair ABXI's
main.py names by the file's ``<data>`` code (``ABXI_PAIRS``), else "X" and "Y".
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from ...config.data import DataConfig
from ..schema import DataError, Dataset, DatasetMeta
from ..tables import ItemRows, SequenceRows, items_table
from ..textio import BadRows, TruncatedFileWarning, parse_int, read_lines, single_file
from .domains import DomainNames, resolve_names
from .timestamps import UNITS, file_unit, odd_unit, to_seconds

# ABXI's main.py: --data 'afk' Food-Kitchen, 'abe' Beauty-Electronics, 'amb' Movie-Book (domain 0 first)
ABXI_PAIRS = {"afk": ("Food", "Kitchen"), "abe": ("Beauty", "Electronics"), "amb": ("Movie", "Book")}
SEQUENCE_FILE = re.compile(r"(?P<data>.+)_(?P<len_max>\d+)_preprocessed\.txt(\.gz)?")
MAX_LISTED_USERS = 20
CASE_IDS = ("<reviewerID> (map_user) or <user_idx> when there is no user map, in every split: one training "
            "sequence, one valid and one test case per user (ABXI's leave-one-out on the merged sequence)")


# --- files ------------------------------------------------------------------------------------------------

def sequence_file(folder: Path) -> tuple[Path, str, int]:
    """-> (the one ``<data>_<len_max>_preprocessed.txt[.gz]``, its ``<data>`` code, len_max)."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and SEQUENCE_FILE.fullmatch(p.name))
    if not found:
        others = sorted(p.name for p in folder.iterdir())[:8]
        raise DataError(folder / "<data>_<len_max>_preprocessed.txt", None,
                        "one ABXI sequence file <data>_<len_max>_preprocessed.txt (or .gz), as ABXI's main.py names "
                        "it", f"none; files here: {', '.join(others) or 'none'}")
    path = single_file(folder / "<data>_<len_max>_preprocessed.txt", "ABXI sequence file", found)
    match = SEQUENCE_FILE.fullmatch(path.name)
    return path, match["data"], int(match["len_max"])


def map_file(folder: Path, kind: str, len_max: int, required: bool) -> Path | None:
    """``map_<kind>_<len_max>.txt`` or the first releases' ``map_<kind>.txt``, plain or gzip'd; two is an error."""
    names = (f"map_{kind}_{len_max}.txt", f"map_{kind}.txt")
    found = [folder / f"{n}{gz}" for n in names for gz in ("", ".gz") if (folder / f"{n}{gz}").is_file()]
    path = single_file(folder / names[0], f"{kind} map {names[0]} or {names[1]} (or .gz)", found)
    if path is None and required:
        raise DataError(folder / names[0], None, f"the {kind} map {names[0]} or {names[1]} (or .gz)", "no such file")
    return path


class Pairs(list):
    """A JSON object as its (key, value) pairs in file order: repeated keys stay visible (a dict keeps the last)."""


def shown(value) -> str:
    """A parsed JSON value written back as JSON (objects as objects), for messages and the quarantine."""
    def plain(v):
        if isinstance(v, Pairs):
            return {k: plain(x) for k, x in v}
        return [plain(x) for x in v] if isinstance(v, list) else v
    return json.dumps(plain(value), ensure_ascii=False)


def json_object(path: Path, bad: BadRows, what: str) -> tuple[Pairs, str]:
    """-> (the object's (key, value) pairs in file order, repeated keys included; the file's text). The whole
    file is one JSON object; its text is kept to say on which line an entry is."""
    lines: list[str] = []
    with warnings.catch_warnings():
        # json.dump writes no final newline; a map cut short does not parse, which says more than the warning
        warnings.simplefilter("ignore", TruncatedFileWarning)
        for number, text in read_lines(path, bad, required=what):
            lines += [""] * (number - 1 - len(lines)) + [text]
    text = "\n".join(lines)
    try:
        pairs = json.loads(text, object_pairs_hook=Pairs)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, what, f"invalid JSON: {e.msg} (column {e.colno}); the file may be cut "
                        "short") from None
    if not isinstance(pairs, Pairs):
        kind = "array" if isinstance(pairs, list) else type(pairs).__name__
        raise DataError(path, 1, what, f"a JSON {kind}")
    return pairs, text


class EntryLines:
    """The line of each ``"key"`` of a JSON object, asked for in file order: one pass over the text in all."""

    def __init__(self, text: str):
        self.text, self.at, self.line_at = text, 0, 1

    def line(self, key: str) -> int | None:
        """None where the key is written with escapes (it is then not found as is)."""
        at = self.text.find(json.dumps(key, ensure_ascii=False), self.at)
        if at < 0:
            return None
        self.line_at += self.text.count("\n", self.at, at)
        self.at = at + 1                      # past this one: a repeated key is found at its next place
        return self.line_at


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- maps -------------------------------------------------------------------------------------------------

def read_item_map(path: Path, bad: BadRows) -> tuple[ItemRows, ItemRows, dict[int, int], dict]:
    """-> (A items, B items, ABXI id -> item_index, summary), each domain in id order."""
    what = "a JSON object {ASIN: [item_id, domain]} (domain 0 = A, 1 = B)"
    pairs, text = json_object(path, bad, what)
    lines = EntryLines(text)
    by_id: dict[int, tuple[str, int]] = {}
    asins: set[str] = set()
    bad_before = len(bad)
    for asin, value in pairs:
        line = lines.line(asin)
        entry = f"{json.dumps(asin)}: {shown(value)}"
        pair = value if isinstance(value, list) and not isinstance(value, Pairs) and len(value) == 2 else None
        item, domain = (_int(pair[0]), _int(pair[1])) if pair else (None, None)
        if not asin.strip():
            bad.report(path, line, "a non-empty ASIN as each key", repr(asin), entry)
        elif asin in asins:
            bad.report(path, line, "each ASIN once", f"ASIN {asin!r} again", entry)
        elif item is None or domain is None:
            bad.report(path, line, "[item_id, domain] (two integers) for each ASIN",
                       f"{shown(value)[:80]} for ASIN {asin!r}", entry)
        elif domain not in (0, 1):
            bad.report(path, line, "domain 0 (A) or 1 (B)", f"domain {domain} for ASIN {asin!r}", entry)
        elif item < 1:
            bad.report(path, line, "an item_id >= 1 (0 is ABXI's padding)", f"{item} for ASIN {asin!r}", entry)
        elif item in by_id:
            bad.report(path, line, "each item_id once", f"item_id {item} again, for ASIN {asin!r} (first "
                       f"{by_id[item][0]!r})", entry)
        else:
            by_id[item] = (asin, domain)
            asins.add(asin)
    n_bad = len(bad) - bad_before
    ids = {d: sorted(i for i, (_, dom) in by_id.items() if dom == d) for d in (0, 1)}
    if not ids[0] or not ids[1]:
        raise DataError(path, None, "items of both domains (0 = A and 1 = B)",
                        f"{len(ids[0])} A and {len(ids[1])} B items")
    if ids[0][-1] > ids[1][0]:
        a_above = next(i for i in reversed(ids[0]) if i > ids[1][0])
        raise DataError(path, EntryLines(text).line(by_id[a_above][0]),
                        "every domain-0 (A) item_id below every domain-1 (B) one (ABXI tells an item's domain by "
                        "item_id <= |A|)", f"A item_id {a_above} (ASIN {by_id[a_above][0]!r}) above B item_id "
                        f"{ids[1][0]}: ABXI would read items of one domain as the other's (fatal even with "
                        "skip_bad_rows)")
    top = ids[1][-1]
    gaps = top - len(by_id)
    if gaps > n_bad:
        missing = next(i for i in range(1, top + 1) if i not in by_id)
        raise DataError(path, None, f"item_ids 1..{top} without gaps (ABXI's |A| is the count of domain-0 "
                        "entries, so a gap moves the A/B boundary)", f"{gaps} ids without an entry, first "
                        f"{missing}, more than its {n_bad} bad entries (fatal even with skip_bad_rows)")
    rows = (ItemRows(), ItemRows())
    index: dict[int, int] = {}
    for d in (0, 1):
        for item in ids[d]:
            rows[d].add(by_id[item][0])
            index[item] = len(index)          # A ids all come first: the rank is the item_index
    summary = {"file": path.name, "entries": len(pairs), "bad_entries": n_bad, "items": [len(rows[0]), len(rows[1])],
               "ids_without_entry": gaps}
    return rows[0], rows[1], index, summary


def read_user_map(path: Path, bad: BadRows) -> tuple[dict[int, str], dict]:
    """-> (user_idx -> reviewerID, summary)."""
    pairs, text = json_object(path, bad, "a JSON object {reviewerID: user_idx}")
    lines = EntryLines(text)
    users: dict[int, str] = {}
    seen: set[str] = set()
    bad_before = len(bad)
    for reviewer, value in pairs:
        line = lines.line(reviewer)
        entry = f"{json.dumps(reviewer)}: {shown(value)}"
        idx = _int(value)
        if not reviewer.strip():
            bad.report(path, line, "a non-empty reviewerID as each key", repr(reviewer), entry)
        elif reviewer in seen:
            bad.report(path, line, "each reviewerID once", f"{reviewer!r} again", entry)
        elif idx is None or idx < 0:
            bad.report(path, line, "a non-negative integer user_idx", f"{shown(value)[:80]} for {reviewer!r}",
                       entry)
        elif idx in users:
            bad.report(path, line, "each user_idx once", f"user_idx {idx} again, for {reviewer!r} (first "
                       f"{users[idx]!r})", entry)
        else:
            users[idx] = reviewer
            seen.add(reviewer)
    return users, {"file": path.name, "entries": len(pairs), "bad_entries": len(bad) - bad_before}


# --- sequences --------------------------------------------------------------------------------------------

def parse_line(text: str, index: dict[int, int], item_map: str) -> tuple[int, list[int], list[int]] | tuple[str, str]:
    """-> (user_idx, item indices, timestamps), or (expected, found) for a bad row."""
    fields = text.split()
    user = parse_int(fields[0])
    if user is None or user < 0:
        return "a user_idx (non-negative integer) first, then item|unix_ts tokens", repr(fields[0][:40])
    if len(fields) < 2:
        return "item|unix_ts tokens after the user_idx", "none"
    items, stamps = [], []
    for position, token in enumerate(fields[1:], start=1):
        parts = token.split("|")
        item, ts = (parse_int(parts[0]), parse_int(parts[1])) if len(parts) == 2 else (None, None)
        if item is None or ts is None or item < 0 or ts < 0:
            return "tokens item|unix_ts of non-negative integers", f"{token[:40]!r} (token {position})"
        if item not in index:
            return f"item ids of {item_map}", f"item {item} (token {position}), not in it"
        if stamps and ts < stamps[-1]:
            return ("timestamps in file order (ABXI reads a line's order as its time order)",
                    f"{ts} after {stamps[-1]} (token {position})")
        items.append(index[item])
        stamps.append(ts)
    return user, items, stamps


def import_abxi(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    seq_path, code, len_max = sequence_file(folder)
    item_path = map_file(folder, "item", len_max, required=True)
    user_path = map_file(folder, "user", len_max, required=False)
    x_items, y_items, index, item_summary = read_item_map(item_path, bad)
    reviewers, user_summary = read_user_map(user_path, bad) if user_path else (None, None)

    lines: list[tuple[int, str, int, list[int], list[int]]] = []
    users: set[int] = set()
    bad_before = len(bad)
    for number, text in read_lines(seq_path, bad, required="user lines (user_idx item|unix_ts ...)"):
        parsed = parse_line(text, index, item_path.name)
        if isinstance(parsed[0], str):
            bad.report(seq_path, number, *parsed, text)
            continue
        user, items, stamps = parsed
        if user in users:
            bad.report(seq_path, number, "each user_idx once", f"user_idx {user} again", text)
        elif reviewers is not None and user not in reviewers:
            bad.report(seq_path, number, f"a user_idx of {user_path.name}", f"user_idx {user}, not in it", text)
        else:
            users.add(user)
            lines.append((number, text, user, items, stamps))
    n_lines = len(lines) + len(bad) - bad_before      # every non-blank line: read, or quarantined
    unit = file_unit(ts for *_, stamps in lines for ts in stamps)

    sequences = SequenceRows()
    short: list[str] = []
    cut_users = cut_items = interactions = 0
    for number, text, user, items, stamps in lines:
        problem = odd_unit(stamps, unit)
        if problem:
            bad.report(seq_path, number, *problem, text)
            continue
        if len(items) > len_max:              # ABXI reads line[1:][-len_max:]
            cut_users, cut_items = cut_users + 1, cut_items + len(items) - len_max
            items, stamps = items[-len_max:], stamps[-len_max:]
        user_id = reviewers[user] if reviewers is not None else str(user)
        if len(items) < cfg.min_interactions:
            short.append(user_id)
            continue
        stamps = to_seconds(stamps, unit)
        interactions += len(items)
        sequences.add(user_id, "train", items[:-2], stamps[:-2])
        sequences.add(user_id, "valid", items[:-1], stamps[:-1])
        sequences.add(user_id, "test", items, stamps)
    kept = len(sequences) // 3
    if not kept:
        raise DataError(seq_path, None, f"at least one user with >= {cfg.min_interactions} interactions",
                        f"none of {len(lines)} users")

    names = resolve_names(cfg, DomainNames(ABXI_PAIRS[code], f"ABXI's dataset code {code!r} in {seq_path.name} "
                                           f"(its main.py: {code} = {'-'.join(ABXI_PAIRS[code])})")
                          if code in ABXI_PAIRS else None)
    extra = {
        "domain_names": names.origin, "missing_split_files": [], "case_ids": CASE_IDS,
        "source_files": {
            "sequences": {"file": seq_path.name, "lines": n_lines, "cases": kept, "users": kept,
                          "users_on_several_lines": 0, "interactions": interactions,
                          "time_unit": UNITS[unit]},
            "item_map": item_summary, "user_map": user_summary},
        "abxi": {"data": code, "len_max": len_max, "users_cut_to_len_max": cut_users,
                 "interactions_cut": cut_items,
                 "split": "ABXI models/data/dataloader.py get_dataset: train seq[:-2], valid seq[:-1] (target "
                          "seq[-2]), test seq (target seq[-1]), seq = the line's last len_max items"},
        "short_users": {"count": len(short), "min_interactions": cfg.min_interactions,
                        "first": short[:MAX_LISTED_USERS]},
    }
    meta = DatasetMeta(name=cfg.name or folder.name, domains=names.names, n_items=(len(x_items), len(y_items)),
                       source=str(folder), source_format="abxi", extra=extra)
    return Dataset(items_table(x_items, y_items), sequences.table(), meta)
