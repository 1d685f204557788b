"""Load the quality benchmark's modules (bench/quality is scripts, not a package) for the tests here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

QUALITY = Path(__file__).resolve().parents[2] / "bench" / "quality"


def load(name: str):
    """bench/quality/<name>.py as a fresh module; its sibling imports (table, paired, ...) resolve too."""
    if str(QUALITY) not in sys.path:
        sys.path.insert(0, str(QUALITY))
    spec = importlib.util.spec_from_file_location(f"quality_{name}", QUALITY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
