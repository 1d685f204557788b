"""The CPU stage of ``embed``: fetch, decode and resize item images before the encoder stage.

An image comes from a local path, a ``file://`` URL, an ``http(s)://`` URL or an object-store URI (``s3://``,
``gs://``: read with the storage credentials of the job, so confined like local paths). ``image_uri`` is data, so
it is not trusted (:class:`FetchPolicy`): local paths and objects must lie under allowed folders, local files be regular files
(``/dev/zero`` is not an image), bytes are counted while reading whatever a size header or ``st_size``
says, one image has one deadline for everything (connect, redirects, body), and a host must resolve to
public addresses only. A missing URI or an unreadable or refused image yields ``has_image=false`` and a
status saying why, never an exception: the encoder writes a zero vector for it and the driver counts it.
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import os
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs

from llm_emf import files
from llm_emf.config import ConfigError
from llm_emf.config.features import IMAGE_SCHEMES
from llm_emf.config.redact import redact_uri

MAX_IMAGE_BYTES = 32 << 20  # refuse anything larger than 32 MiB instead of exhausting memory
CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 5
# the embed job counts 'missing' and 'unreadable'; a refusal is counted with the latter, its error says ImageRefused
REFUSED_STATUS = "unreadable"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ImageRefused(ValueError):
    """``image_uri`` names something the fetch policy does not allow; the message says what and which key allows it."""


@dataclass(frozen=True)
class FetchPolicy:
    """What an ``image_uri`` may name and how much fetching one image may take."""

    schemes: tuple[str, ...] = IMAGE_SCHEMES
    roots: tuple[Path, ...] | None = None  # None: any local path (a loader built without a dataset folder)
    allow_private: bool = False
    max_bytes: int = MAX_IMAGE_BYTES
    timeout_s: float = 10.0
    object_roots: tuple[str, ...] = ()     # object-store prefixes images may be read from (s3://b/run/prepare/k)

    @classmethod
    def from_config(cls, ec, dataset_folder: str | Path) -> "FetchPolicy":
        """From ``features.embed``: local images under the dataset folder or ``image_roots`` only."""
        bad = [s for s in ec.image_schemes if s not in IMAGE_SCHEMES]
        if bad:
            raise ConfigError(f"features.embed.image_schemes: expected names from {list(IMAGE_SCHEMES)}, found {bad}")
        folders = (str(dataset_folder), *ec.image_roots)
        roots = tuple(Path(r).expanduser().resolve() for r in folders if not files.is_remote(r))
        object_roots = tuple(r.rstrip("/") + "/" for r in folders if files.is_remote(r))
        return cls(tuple(ec.image_schemes), roots, ec.image_allow_private, ec.image_max_mb << 20, ec.image_timeout_s,
                   object_roots)


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def read_limited(read, max_bytes: int, deadline: float, what: str) -> bytes:
    """Chunks from ``read(n)`` until it returns nothing; past ``max_bytes`` or the deadline, stop and raise."""
    chunks, total = [], 0
    while True:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not read completely before the deadline")
        chunk = read(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ImageRefused(f"{what}: more than {max_bytes} bytes (features.embed.image_max_mb)")
        chunks.append(chunk)


# -- local files -------------------------------------------------------------------------------
def _read_local(uri: str, policy: FetchPolicy, deadline: float) -> bytes:
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)) if _URL.match(uri) else Path(uri)
    resolved = path.resolve()  # '..' and symlinks resolved first: a link out of a root is outside it
    if policy.roots is not None and not any(resolved.is_relative_to(r) for r in policy.roots):
        raise ImageRefused(f"{path} is outside the allowed folders {[str(r) for r in policy.roots]} "
                           "(the dataset folder and features.embed.image_roots)")
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; on regular files it changes nothing
    with os.fdopen(os.open(resolved, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ImageRefused(f"{path} is not a regular file (a device, FIFO or folder is never an image)")
        return read_limited(f.read, policy.max_bytes, deadline, str(path))


# -- objects in a bucket -----------------------------------------------------------------------
def _read_object(uri: str, policy: FetchPolicy, deadline: float) -> bytes:
    if not any(uri.startswith(root) for root in policy.object_roots):
        raise ImageRefused(f"{uri} is outside the allowed object-store folders {list(policy.object_roots)} "
                           "(the dataset folder and features.embed.image_roots)")
    info = files.info(uri)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such object")
    if info.size is not None and info.size > policy.max_bytes:
        raise ImageRefused(f"{uri}: {info.size} bytes is more than {policy.max_bytes} (features.embed.image_max_mb)")
    fs, path = files.filesystem(uri)
    with fs.open_input_stream(path) as f:
        return read_limited(f.read, policy.max_bytes, deadline, uri)


# -- http(s) -----------------------------------------------------------------------------------
def _non_public(ip: str) -> str | None:
    """What kind of non-public address ``ip`` is, or None for a public one."""
    addr = ipaddress.ip_address(ip)
    addr = getattr(addr, "ipv4_mapped", None) or addr  # ::ffff:127.0.0.1 is loopback too
    for kind in ("unspecified", "loopback", "link_local", "private", "multicast", "reserved"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if addr.is_global else "non-global"


def _checked_connection(address, timeout, source_address=None, *, policy: FetchPolicy, deadline: float):
    """``socket.create_connection`` that resolves the host once, checks every address, then connects to a
    checked one (resolving again could answer differently: DNS rebinding)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not policy.allow_private:
        for *_, sockaddr in infos:
            kind = _non_public(sockaddr[0])
            if kind:
                raise ImageRefused(f"host {host} resolves to {sockaddr[0]}, a {kind} address "
                                   "(features.embed.image_allow_private=true allows it)")
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError(f"{host}: no address to connect to")


def _abort(conn: http.client.HTTPConnection) -> None:
    """At the deadline: unblock whatever read or write the fetch is waiting in."""
    try:
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _get_once(url: str, policy: FetchPolicy, deadline: float) -> tuple[str | None, bytes]:
    """One GET: ``(redirect target, b'')`` or ``(None, body)``."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or scheme not in policy.schemes:
        raise ImageRefused(f"{url}: scheme '{scheme}' not in features.embed.image_schemes {list(policy.schemes)}")
    if not parts.hostname:
        raise ImageRefused(f"{url}: no host")
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=_remaining(deadline))
    conn._create_connection = functools.partial(_checked_connection, policy=policy, deadline=deadline)
    watchdog = threading.Timer(_remaining(deadline), _abort, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                     headers={"User-Agent": "llm-emf"})
        response = conn.getresponse()
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            return urllib.parse.urljoin(url, location), b""
        if response.status != 200:
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)
        length = response.getheader("Content-Length", "")
        if length.isdigit() and int(length) > policy.max_bytes:
            raise ImageRefused(f"{url}: Content-Length {length} is more than {policy.max_bytes} bytes "
                               "(features.embed.image_max_mb)")
        data = read_limited(response.read1, policy.max_bytes, deadline, url)
        if time.monotonic() >= deadline:  # the watchdog cut the body short
            raise TimeoutError
        if length.isdigit() and len(data) < int(length):
            raise http.client.IncompleteRead(data, int(length) - len(data))
        return None, data
    except (OSError, http.client.HTTPException):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url}: no complete image within {policy.timeout_s:g} s "
                               "(features.embed.image_timeout_s)") from None
        raise
    finally:
        watchdog.cancel()
        conn.close()


def _fetch_http(url: str, policy: FetchPolicy, deadline: float) -> bytes:
    # redirects are followed here, not by urllib, so that every hop passes the same checks and deadline
    for _ in range(MAX_REDIRECTS + 1):
        target, data = _get_once(url, policy, deadline)
        if target is None:
            return data
        url = target
    raise ImageRefused(f"{url}: more than {MAX_REDIRECTS} redirects")


def read_image_bytes(uri: str, timeout_s: float = 10.0, policy: FetchPolicy | None = None) -> bytes:
    """The bytes ``uri`` names, within ``policy`` (default: any local path, public http(s) hosts only)."""
    policy = policy or FetchPolicy(timeout_s=timeout_s)
    deadline = time.monotonic() + policy.timeout_s
    scheme = uri.split("://", 1)[0].lower() if _URL.match(uri) else "file"
    if scheme not in IMAGE_SCHEMES:
        raise ImageRefused(f"{uri}: scheme '{scheme}' is not one of {list(IMAGE_SCHEMES)}")
    if scheme not in policy.schemes:
        raise ImageRefused(f"{uri}: scheme '{scheme}' not in features.embed.image_schemes {list(policy.schemes)}")
    if scheme == "file":
        return _read_local(uri, policy, deadline)
    if files.is_remote(uri):
        return _read_object(uri, policy, deadline)
    return _fetch_http(uri, policy, deadline)


def decode_resized(data: bytes, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: shorter side to ``size`` (bicubic), then a centre crop, as CLIP preprocesses."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


class ImageLoader:
    """Ray Data batch function: ``image_uri`` -> ``pixels`` (N, S, S, 3) uint8, ``image_status``, ``image_error``.

    Build it with ``policy=FetchPolicy.from_config(cfg.features.embed, dataset_folder)``; without a policy,
    local paths are not confined to any folder (the other checks still apply).
    """

    def __init__(self, size: int, timeout_s: float = 10.0, policy: FetchPolicy | None = None):
        self.size = size
        self.policy = policy or FetchPolicy(timeout_s=timeout_s)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["item_id"])
        pixels = np.zeros((n, self.size, self.size, 3), dtype=np.uint8)
        status, errors = ["ok"] * n, [None] * n
        for i, (item_id, uri) in enumerate(zip(batch["item_id"], batch["image_uri"])):
            if not isinstance(uri, str) or not uri.strip():
                status[i] = "missing"
                continue
            try:
                pixels[i] = decode_resized(read_image_bytes(uri.strip(), policy=self.policy), self.size)
            except FileNotFoundError as e:
                status[i], errors[i] = "missing", f"{type(e).__name__}: {e}"
            except ImageRefused as e:
                status[i], errors[i] = REFUSED_STATUS, f"ImageRefused: item {item_id}: {e}"
            except Exception as e:  # noqa: BLE001 - corrupt file, bad URL, timeout: recorded and counted
                status[i], errors[i] = "unreadable", f"{type(e).__name__}: {e}"
            if errors[i]:
                errors[i] = redact_uri(errors[i])[:300]   # an image URL may carry a password too
        batch["pixels"] = pixels
        batch["image_status"] = np.array(status, dtype=object)
        batch["image_error"] = np.array(errors, dtype=object)
        return batch
