"""What the tier markers promise, enforced (hooks in tests/conftest.py).

A test marked neither ``integration`` nor ``cluster`` is a unit test: fast and in-process. It is marked
``unit`` when it names no tier, and while it runs (setup, call, teardown) starting a process fails with
:class:`NotInProcess`, which tells its author to mark it ``integration``: a subprocess (``subprocess``,
``os.system``, ``multiprocessing``) or a Ray (``ray.init``, which starts the GCS, a raylet and workers).
``make test-fast`` runs the unit tests, so the inner loop never waits on a process start.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
import sys

import pytest

TIERS = ("unit", "integration", "cluster")
# Short read-only probes, not a test's own process: ctypes.util.find_library runs ldconfig (then gcc / cc / ld
# and objdump), platform runs uname, and the tracker and bench scripts record the commit with git queries.
PROBES = {"ldconfig", "gcc", "cc", "ld", "objdump", "uname"}
GIT_QUERIES = {"rev-parse", "status", "diff", "describe", "log"}
ADVICE = ("mark it @pytest.mark.integration (and @pytest.mark.slow when it takes over ~30 s): `unit` means fast "
          "and in-process, and `make test-fast` runs every unit test")


class NotInProcess(BaseException):
    """A unit test started a process. Not an Exception, so that code which survives failures (the tracker
    warns and goes on) cannot hide it."""


def mark_default_tier(items) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in TIERS):
            item.add_marker(pytest.mark.unit)


def is_unit(item) -> bool:
    """Unit unless marked integration or cluster at any level (a module's ``unit`` with a test's
    ``integration`` is integration, as ``-m "not integration"`` reads it)."""
    return item.get_closest_marker("integration") is None and item.get_closest_marker("cluster") is None


@contextlib.contextmanager
def in_process_only(nodeid: str):
    """While active, starting a process or a Ray raises NotInProcess naming the test."""

    def refuse(what: str):
        raise NotInProcess(f"{nodeid} is a unit test but starts {what}: {ADVICE}")

    def popen(self, args, *rest, **kwargs):
        argv = [os.fsdecode(a) for a in ([args] if isinstance(args, (str, bytes, os.PathLike)) else args)]
        words = " ".join(argv).split()
        program = os.path.basename(words[0]) if words else ""
        if program in PROBES or (program == "git" and len(words) > 1 and words[1] in GIT_QUERIES):
            return execute_child(self, args, *rest, **kwargs)
        refuse(f"a subprocess ({' '.join(argv)})")

    def system(command):
        refuse(f"a subprocess (os.system: {command})")

    def start(self):
        refuse(f"a process (multiprocessing: {self.name})")

    def ray_init(*args, **kwargs):
        refuse("a Ray (ray.init)")

    execute_child = subprocess.Popen._execute_child
    patches = [(subprocess.Popen, "_execute_child", popen), (os, "system", system),
               (multiprocessing.process.BaseProcess, "start", start)]
    ray = sys.modules.get("ray")
    if ray is not None and "init" in ray.__dict__:     # a Ray imported later still starts through Popen
        patches.append((ray, "init", ray_init))
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
