"""The benchmarks. Each is a module run from the repository root, e.g. ``python -m bench.quality.run ...``;
``bench/README.md`` lists them and ``bench/results/INDEX.md`` their current results."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reruns benchmark ``module`` (its ``__spec__.name``, e.g. ``bench.quality.run``) with
    ``argv``, as recorded in its results."""
    return shlex.join(["python", "-m", module, *argv])
