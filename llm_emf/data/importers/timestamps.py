"""One time unit per file: a millisecond value among seconds would reorder a sequence (and can replace its
valid/test target) without a word, so it is a bad row; a file that is all milliseconds (or finer) is read
and converted to the unix seconds of SEQUENCE_SCHEMA, and the unit is recorded in dataset.json."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Iterable

UNITS = ("seconds", "milliseconds", "microseconds", "nanoseconds")
PER_SECOND = (1, 10 ** 3, 10 ** 6, 10 ** 9)
# A value's size tells its unit: unix seconds stay below 1e11 until the year 5138, milliseconds pass 1e11
# in 1973, microseconds 1e14 and nanoseconds 1e17 at the same date.
UPPER_BOUNDS = (10 ** 11, 10 ** 14, 10 ** 17)


def unit_of(ts: int) -> int:
    """Index into UNITS of a non-negative timestamp."""
    return bisect.bisect_right(UPPER_BOUNDS, ts)


def file_unit(stamps: Iterable[int]) -> int:
    """The unit most of a file's timestamps are in (seconds on a tie or with none)."""
    counts = Counter(unit_of(ts) for ts in stamps)
    return max(range(len(UNITS)), key=lambda u: (counts[u], -u))


def unit_problem(ts: int, unit: int, where: str = "",
                 basis: str = "like most of the file") -> tuple[str, str] | None:
    """(expected, found) for a bad row when ``ts`` is not in ``unit``, else None; ``basis`` says where the unit comes
    from (the file's majority, or a schema that fixes it)."""
    if unit_of(ts) == unit:
        return None
    return (f"unix timestamps in {UNITS[unit]}, {basis}", f"{ts}{where}, which looks like {UNITS[unit_of(ts)]}")


def odd_unit(stamps: list[int], unit: int) -> tuple[str, str] | None:
    """unit_problem of the first of a line's ``stamps`` that is not in ``unit``."""
    for position, ts in enumerate(stamps, start=1):
        problem = unit_problem(ts, unit, f" (token {position})")
        if problem:
            return problem
    return None


def to_seconds(stamps: list[int], unit: int) -> list[int]:
    return [ts // PER_SECOND[unit] for ts in stamps] if unit else stamps
