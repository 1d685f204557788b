"""The tier markers hold: a test marked neither integration nor cluster is a unit test, and a unit test that
starts a process or a Ray fails with a message that says how to mark it (helpers/markers.py)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

from helpers.markers import NotInProcess

ADVICE = r"mark it @pytest.mark.integration"


def test_a_test_without_a_tier_is_a_unit_test(request):
    assert request.node.get_closest_marker("unit") is not None


def test_a_unit_test_cannot_start_a_process_or_a_ray(request):
    name = request.node.nodeid
    with pytest.raises(NotInProcess, match=rf"{name} is a unit test but starts a subprocess \(.*-c pass\): {ADVICE}"):
        subprocess.run([sys.executable, "-c", "pass"])
    with pytest.raises(NotInProcess, match=rf"starts a subprocess \(os.system: true\): {ADVICE}"):
        os.system("true")
    with pytest.raises(NotInProcess, match=rf"starts a process \(multiprocessing: .*\): {ADVICE}"):
        multiprocessing.get_context("spawn").Process(target=print).start()
    import ray

    before = ray.is_initialized()        # an earlier module's Ray fixture may still be up in the full suite
    with pytest.raises(NotInProcess, match=rf"starts a Ray \(ray.init\): {ADVICE}"):
        ray.init(num_cpus=1)
    assert ray.is_initialized() == before


def test_code_that_survives_exceptions_cannot_hide_it():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except Exception:                              # what a tolerant caller (the tracker) catches
        pytest.fail("NotInProcess was caught as an Exception")
    except NotInProcess:
        pass


def test_system_probes_of_imports_still_run():
    # ctypes.util.find_library runs ldconfig; the tracker asks git for the commit
    assert subprocess.run(["uname", "-s"], capture_output=True, text=True).stdout.strip() == os.uname().sysname
    assert subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], capture_output=True).returncode in (0, 128)


@pytest.mark.integration
def test_an_integration_test_may_start_processes():
    assert subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"
