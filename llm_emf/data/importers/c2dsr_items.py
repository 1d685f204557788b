"""C2DSR's item lists (``Alist.txt`` / ``Blist.txt``: ``orig_idx \\t item_id \\t new_idx``).

Every row fixes what an id in the split files means, so a bad, repeated or missing row stops the import,
with or without skip_bad_rows: a placeholder or a skipped row would silently move items onto their
neighbours' ids. Blist's new_idx is either local (0..|B|-1) or already offset by |A| (|A|..|A|+|B|-1, as
some releases ship it); C2DSR's own loader only counts the lines, so both spellings are valid input.
"""

from __future__ import annotations

from pathlib import Path

from ..schema import DataError
from ..tables import ItemRows
from ..textio import BadRows, fields_found, parse_int, read_lines

FIELDS = "3 tab-separated fields (orig_idx, item_id, new_idx)"


def read_item_list(path: Path, seen_ids: set[str], n_before: int = 0) -> tuple[ItemRows, int]:
    """-> (ItemRows in new_idx order, the offset new_idx carried: 0, or ``n_before`` = |A| for an offset Blist)."""
    strict = BadRows(skip=False)      # every row matters, see the module docstring
    line_of: dict[int, int] = {}      # new_idx -> line
    id_of: dict[int, str] = {}
    for number, text in read_lines(path, strict):
        fields = text.split("\t")
        if len(fields) != 3:
            raise DataError(path, number, FIELDS, fields_found(fields, text))
        item_id, idx = fields[1].strip(), parse_int(fields[2])
        if idx is None or idx < 0:
            raise DataError(path, number, "a non-negative integer new_idx", repr(fields[2]))
        if idx in line_of:
            raise DataError(path, number, "each new_idx once", f"new_idx {idx} again (first on line {line_of[idx]})")
        if not item_id:
            raise DataError(path, number, "a non-empty item id", "''")
        if item_id in seen_ids:
            raise DataError(path, number, "each item id once across Alist and Blist", f"{item_id} again")
        line_of[idx], id_of[idx] = number, item_id
        seen_ids.add(item_id)
    if not line_of:
        raise DataError(path, None, f"item rows ({FIELDS})", "an empty file")
    offset = _offset(path, line_of, n_before)
    _check_dense(path, line_of, offset)
    rows = ItemRows()
    for idx in sorted(id_of):
        rows.add(id_of[idx])
    return rows, offset


def _offset(path: Path, line_of: dict[int, int], n_before: int) -> int:
    low = min(line_of)
    if low == 0 or (n_before and low == n_before):
        return low
    starts = "0" + (f" or |A| = {n_before} (the rows of Alist)" if n_before else "")
    raise DataError(path, line_of[low], f"new_idx starting at {starts}", f"lowest new_idx {low}")


def _check_dense(path: Path, line_of: dict[int, int], offset: int) -> None:
    """new_idx must be offset, offset+1, ... without a hole: a hole means a missing row."""
    if max(line_of) == offset + len(line_of) - 1:
        return
    missing = next(i for i in range(offset, max(line_of)) if i not in line_of)
    after = min(i for i in line_of if i > missing)
    raise DataError(path, line_of[after], f"a row for every new_idx from {offset} (dense)",
                    f"new_idx {after} but no row for new_idx {missing}")
