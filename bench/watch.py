"""Run a measurement in a child process and watch it from /proc: peak RSS, CPU time, a memory cap and a time
limit. A child that crosses either is killed and the reason recorded, so a benchmark row that runs out of
memory or time is a result, not a crash (and other work on a shared machine is not pushed into the OOM killer).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def status_kib(key: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` field in KiB (``VmRSS``, ``VmHWM``: the peak RSS); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def total_gib() -> float:
    return int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / (1 << 20)
    return float("inf")


@dataclass
class Watched:
    out: str
    err: str
    returncode: int | None
    peak_kib: int                 # the child's VmHWM as last seen
    cpu_s: float                  # its CPU seconds as last seen
    stopped: str | None           # why it was killed ("out of memory (...)", "over time (...)"), None if not
    wall_s: float


def run_watched(cmd: list[str], cap_gib: float, time_limit_s: float, poll_s: float, cwd=None) -> Watched:
    """Run ``cmd``, polling every ``poll_s`` seconds; kill it once its RSS exceeds ``cap_gib`` or it has run
    ``time_limit_s`` seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    peak, used, stopped = 0, 0.0, None
    while proc.poll() is None:
        peak = max(peak, status_kib("VmHWM", proc.pid))
        used = cpu_s(proc.pid) or used
        if status_kib("VmRSS", proc.pid) > cap_gib * (1 << 20):
            stopped = f"out of memory (RSS > {cap_gib:.1f} GiB cap)"
        elif time.perf_counter() - started > time_limit_s:
            stopped = f"over time (> {time_limit_s:g} s)"
        if stopped:
            proc.kill()
            break
        time.sleep(poll_s)
    out, err = proc.communicate()
    return Watched(out, err, proc.returncode, peak, used, stopped, time.perf_counter() - started)
