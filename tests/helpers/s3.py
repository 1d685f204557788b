"""A real S3 API for tests: moto in server mode on 127.0.0.1, and fresh buckets on it.

The server speaks HTTP like AWS S3 does; pyarrow (and so Ray Data, Train and Tune) reach it through
``AWS_ENDPOINT_URL``, boto3 and MLflow through the same variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port, stop_process, wait_for_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server as if it were S3."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"llm-emf-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, f"creating bucket {name}: HTTP {response.status}"
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix``, through pyarrow (as the project sees them)."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=self.endpoint, access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                               secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region=CREDENTIALS["AWS_REGION"])
        infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), recursive=True,
                                                   allow_not_found=True))
        return sorted(i.path[len(bucket) + 1:] for i in infos if i.type == pafs.FileType.File)

    def stop(self) -> None:
        stop_process(self.process)


def start_s3_server(log_dir: Path) -> S3Server:
    port = free_port()
    log = open(log_dir / "moto_server.log", "wb")
    moto = Path(sys.executable).with_name("moto_server")
    cmd = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **CREDENTIALS})
    wait_for_port(port, 60, proc, "moto_server")
    return S3Server(f"http://127.0.0.1:{port}", proc)
