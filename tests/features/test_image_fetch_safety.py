"""image_uri is data, not trusted: allowed folders and schemes, counted bytes, one deadline, public hosts only.

No network: every server is an http.server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import http.server
import os
import threading
import time

import numpy as np
import pytest

from features_fixtures import synthetic_image
from llm_emf.config import ConfigError, load_config
from llm_emf.features.images import (FetchPolicy, ImageLoader, ImageRefused, _non_public, read_image_bytes,
                                     read_limited)

pytestmark = pytest.mark.unit
PRIVATE_OK = FetchPolicy(allow_private=True, timeout_s=5)


def _serve(handler_cls):
    handler_cls.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def image_server(tmp_path):
    png = synthetic_image(tmp_path / "ok.png", 1).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            routes = {"/to-file": "file:///etc/passwd", "/loop": "/loop", "/hop": "/ok.png"}
            if self.path in routes:
                self.send_response(302)
                self.send_header("Location", routes[self.path])
                self.end_headers()
            elif self.path == "/endless":        # no Content-Length, never ends: only counting stops it
                self.send_response(200)
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"\0" * 65536)
                except OSError:
                    pass
            elif self.path == "/liar":           # announces more than the limit
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 40))
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

    server, base = _serve(Handler)
    yield base
    server.shutdown()


def _load(uris, policy=None):
    loader = ImageLoader(16, timeout_s=5, policy=policy)
    return loader({"item_id": np.array([f"item{i}" for i in range(len(uris))], dtype=object),
                   "image_uri": np.array(uris, dtype=object)})


# -- addresses -------------------------------------------------------------------------------------
def test_loopback_is_refused_by_default_and_allowed_when_configured(image_server):
    uris = [f"{image_server}/ok.png", image_server.replace("127.0.0.1", "localhost") + "/ok.png"]
    refused = _load(uris)
    assert list(refused["image_status"]) == ["unreadable", "unreadable"]   # counted by the embed job
    assert refused["image_error"][0].startswith("ImageRefused: item item0: host 127.0.0.1 resolves to 127.0.0.1, "
                                                "a loopback address (features.embed.image_allow_private=true")
    assert "item item1: host localhost" in refused["image_error"][1]
    assert not refused["pixels"].any()
    allowed = _load(uris, PRIVATE_OK)
    assert list(allowed["image_status"]) == ["ok", "ok"] and allowed["pixels"].any()


@pytest.mark.parametrize("ip, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.0.7", "private"), ("169.254.169.254", "link-local"),   # cloud metadata
    ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "non-global"), ("224.0.0.1", "multicast"),
    ("8.8.8.8", None), ("2606:4700::1111", None),
])
def test_every_non_public_address_kind_is_named(ip, kind):
    assert _non_public(ip) == kind


def test_redirects_are_checked_hop_by_hop(image_server):
    assert read_image_bytes(f"{image_server}/hop", policy=PRIVATE_OK).startswith(b"\x89PNG")
    with pytest.raises(ImageRefused, match=r"file:///etc/passwd: scheme 'file' not in"):
        read_image_bytes(f"{image_server}/to-file", policy=PRIVATE_OK)
    with pytest.raises(ImageRefused, match="more than 5 redirects"):
        read_image_bytes(f"{image_server}/loop", policy=PRIVATE_OK)


# -- bytes -----------------------------------------------------------------------------------------
class EndlessZeros:
    """/dev/zero as a stream: st_size would say 0, reading never ends."""

    def __init__(self):
        self.served = 0

    def read(self, n):
        self.served += n
        return b"\0" * n


def test_bytes_are_counted_while_reading():
    stream = EndlessZeros()
    with pytest.raises(ImageRefused, match=r"zeros: more than 1000000 bytes \(features.embed.image_max_mb\)"):
        read_limited(stream.read, 1_000_000, time.monotonic() + 5, "zeros")
    assert stream.served < 1_000_000 + 2 * 65536


def test_dev_zero_and_other_non_files_are_refused(tmp_path):
    with pytest.raises(ImageRefused, match="/dev/zero is not a regular file"):
        read_image_bytes("/dev/zero", policy=FetchPolicy(roots=(tmp_path, os.path.realpath("/dev"))))
    os.mkfifo(tmp_path / "fifo")   # opening it must not wait for a writer
    with pytest.raises(ImageRefused, match="fifo is not a regular file"):
        read_image_bytes(str(tmp_path / "fifo"), policy=FetchPolicy(roots=(tmp_path,)))


def test_http_body_past_the_limit_is_refused(image_server):
    small = FetchPolicy(allow_private=True, max_bytes=1 << 20, timeout_s=5)
    with pytest.raises(ImageRefused, match=r"/endless: more than 1048576 bytes"):
        read_image_bytes(f"{image_server}/endless", policy=small)
    with pytest.raises(ImageRefused, match=r"Content-Length 1099511627776 is more than 1048576 bytes"):
        read_image_bytes(f"{image_server}/liar", policy=small)


# -- one deadline per image -------------------------------------------------------------------------
@pytest.fixture()
def slow_server():
    """Answers a little every 0.2 s: never idle long enough for a per-operation socket timeout."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            try:
                if self.path == "/slow-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for i in range(100):
                        self.wfile.write(f"X-Pad-{i}: x\r\n".encode())
                        self.wfile.flush()
                        time.sleep(0.2)
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(500):
                    self.wfile.write(b"\0" * 200)
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

    server, base = _serve(Handler)
    yield base
    server.shutdown()


@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_one_deadline_covers_the_whole_fetch(slow_server, path):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no complete image within 1 s \(features.embed.image_timeout_s\)"):
        read_image_bytes(slow_server + path, policy=FetchPolicy(allow_private=True, timeout_s=1))
    assert time.monotonic() - start < 2.5


# -- folders and schemes ----------------------------------------------------------------------------
def test_local_images_only_under_the_dataset_folder_and_listed_roots(tmp_path):
    dataset, extra, outside = tmp_path / "dataset", tmp_path / "extra", tmp_path / "outside"
    for folder in (dataset, extra, outside):
        folder.mkdir()
    inside = synthetic_image(dataset / "in.png", 1)
    listed = synthetic_image(extra / "listed.png", 2)
    secret = synthetic_image(outside / "secret.png", 3)
    (dataset / "link.png").symlink_to(secret)   # a link inside that points out

    policy = FetchPolicy.from_config(load_config().features.embed, dataset)
    uris = [str(inside), inside.as_uri(), str(listed), str(secret), secret.as_uri(), str(dataset / "link.png"),
            str(dataset / ".." / "outside" / "secret.png"), "ftp://example.com/a.png", "s3://bucket/a.png"]
    out = _load(uris, policy)
    assert list(out["image_status"][:2]) == ["ok", "ok"]
    assert list(out["image_status"][2:]) == ["unreadable"] * 7
    assert all(e.startswith(f"ImageRefused: item item{i + 2}: ") for i, e in enumerate(out["image_error"][2:]))
    assert f"is outside the allowed folders ['{dataset}'] (the dataset folder and features.embed.image_roots)" \
        in out["image_error"][2]
    assert "scheme 'ftp' is not one of ['http', 'https', 'file', 's3', 'gs']" in out["image_error"][7]

    cfg = load_config(overrides=[f"features.embed.image_roots=['{extra}']"])
    out = _load([str(listed), str(secret)], FetchPolicy.from_config(cfg.features.embed, dataset))
    assert list(out["image_status"]) == ["ok", "unreadable"]


def test_schemes_can_be_narrowed_and_unknown_names_are_config_errors(tmp_path):
    cfg = load_config(overrides=["features.embed.image_schemes=[https]"])
    policy = FetchPolicy.from_config(cfg.features.embed, tmp_path)
    with pytest.raises(ImageRefused, match=r"scheme 'file' not in features.embed.image_schemes \['https'\]"):
        read_image_bytes(str(synthetic_image(tmp_path / "a.png", 1)), policy=policy)
    with pytest.raises(ImageRefused, match="scheme 'http' not in"):
        read_image_bytes("http://example.com/a.png", policy=policy)   # refused before any lookup
    cfg = load_config(overrides=["features.embed.image_schemes=[http, gopher]"])
    with pytest.raises(ConfigError, match=r"image_schemes: expected names from \['http', 'https', 'file', 's3', 'gs'\], "
                                          r"found \['gopher'\]"):
        FetchPolicy.from_config(cfg.features.embed, tmp_path)
