"""Example counts of the hypothesis tests: each test's own count under the default profile (``make test``, CI)
and at most :data:`FAST_EXAMPLES` under the ``fast`` profile (``make test-fast`` passes
``--hypothesis-profile=fast``), so that the inner loop still runs every property on a few inputs.

Use ``@settings(max_examples=examples(150), deadline=None)``. The profile is registered when this module is
imported (tests/conftest.py imports it before the hypothesis plugin loads a profile).
"""

from __future__ import annotations

from hypothesis import settings

FAST_PROFILE = "fast"
FAST_EXAMPLES = 15

settings.register_profile(FAST_PROFILE, max_examples=FAST_EXAMPLES)


def examples(full: int) -> int:
    """``full``, or at most FAST_EXAMPLES while the fast profile is loaded."""
    if settings.get_current_profile_name() == FAST_PROFILE:
        return min(full, FAST_EXAMPLES)
    return full
