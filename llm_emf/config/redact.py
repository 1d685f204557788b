"""Keep secrets carried in URIs (``http://user:password@host``) out of everything a run prints or saves.

One helper, :func:`redact_uri`, is used for the saved ``config.yaml``, the config recorded in ``results.json``,
MLflow params and tags, and every warning that names a tracking store. Only copies are redacted: the
config object itself keeps the real URI, so connecting still works.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
# scheme://netloc: the netloc ends at the first '/', '?', '#' or blank; its userinfo ends at its last '@'
_URI = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<netloc>[^/?#\s'\"]*)")


def _redact_netloc(match: re.Match) -> str:
    netloc = match["netloc"]
    if "@" not in netloc:
        return match[0]
    userinfo, host = netloc.rsplit("@", 1)
    user, has_password, _ = userinfo.partition(":")
    # a lone userinfo (https://TOKEN@host) is how tokens travel: it is the secret itself
    shown = f"{user}:{REDACTED}" if has_password else REDACTED
    return f"{match['scheme']}{shown}@{host}"


def redact_uri(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` in it replaced by ``***``.

    Works on a bare URI and on any message that quotes one (an MLflow error names the URL it called).
    """
    return _URI.sub(_redact_netloc, text) if isinstance(text, str) and "@" in text else text


def redact_values(value: Any) -> Any:
    """A copy of ``value`` (nested dicts, lists and strings) with :func:`redact_uri` applied to every string."""
    if isinstance(value, str):
        return redact_uri(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(v) for v in value)
    return value


def has_redacted_password(uri: str) -> bool:
    """True for a URI whose password was redacted (e.g. read back from a saved config.yaml)."""
    match = _URI.match(uri.strip())
    return bool(match) and "@" in match["netloc"] and match["netloc"].rsplit("@", 1)[0].endswith(REDACTED)


def strip_userinfo(uri: str) -> str:
    """``uri`` without its ``user:password@`` part."""
    match = _URI.match(uri.strip())
    if not match or "@" not in match["netloc"]:
        return uri
    return match["scheme"] + match["netloc"].rsplit("@", 1)[1] + uri.strip()[match.end():]
