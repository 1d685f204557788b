"""Config keys that were renamed, and the one place their old names are read.

A YAML file, an override, a search space or a config saved with an earlier run may still use an old name: it
is read as the new key with a :class:`RenamedKeyWarning` naming the new key. Giving both names in one source
is an error, since it cannot be told which one is meant.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Iterable

from .fields import ConfigError

_AMAZON = ("schema", "domains", "k_core", "min_per_domain", "overlap_only", "holdout", "text_fields", "text_chars",
           "batch_rows")

# old dotted key -> new dotted key
RENAMED: dict[str, str] = {
    "data.output": "data.dataset",        # prepare writes it and every later stage reads it: not only an output
    **{f"data.amazon_{k}": f"data.amazon.{k}" for k in _AMAZON},    # the amazon importer's own section
}


class RenamedKeyWarning(DeprecationWarning):
    """A config key was given by its old name."""


def current_keys(items: Iterable[tuple[str, Any]], where: str) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs of one source with old names replaced by the new ones, a warning for each.

    Raises ConfigError when the source gives a key under both its old and its new name."""
    items = list(items)
    given = {key for key, _ in items}
    out = []
    for key, value in items:
        new = RENAMED.get(key)
        if new is None:
            out.append((key, value))
            continue
        if new in given:
            raise ConfigError(f"{where}: '{key}' and '{new}' are both given; '{key}' is the old name of '{new}': "
                              f"keep '{new}' only")
        warnings.warn(f"{where}: config key '{key}' is renamed '{new}' (the old name still works, with this "
                      f"warning)", RenamedKeyWarning, stacklevel=3)
        out.append((new, value))
    return out


_shown_as = {"prog": "llm-emf", "python_showwarning": warnings.showwarning}


def _one_line(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, RenamedKeyWarning):
        print(f"{_shown_as['prog']}: warning: {message}", file=file or sys.stderr)
    else:
        _shown_as["python_showwarning"](message, category, filename, lineno, file, line)


def show_renamed_keys(prog: str) -> None:
    """Make a command print each :class:`RenamedKeyWarning` as one line on stderr, ``<prog>: warning: ...``
    (Python hides a DeprecationWarning raised outside ``__main__``). ``-W`` or PYTHONWARNINGS, when given,
    decide instead."""
    _shown_as["prog"] = prog
    if sys.warnoptions or warnings.showwarning is _one_line:
        return
    _shown_as["python_showwarning"] = warnings.showwarning
    warnings.filterwarnings("default", category=RenamedKeyWarning)
    warnings.showwarning = _one_line
