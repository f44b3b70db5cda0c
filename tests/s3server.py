"""A real S3-compatible server for tests: moto's standalone server as its own process.

Started on 127.0.0.1 and a free port in its own process group, stopped (the whole group) when
the fixture ends. The environment variables it sets are the standard ones every S3 client reads
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...), so the code under test gets no special path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import background, free_port, wait_http

BUCKET = "pf-test"


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",  # delta-rs and Polars (object_store) refuse http:// otherwise
    }


@contextmanager
def moto_server(log_dir: Path, port: int | None = None) -> Iterator[str]:
    """Run ``moto_server`` and yield its endpoint URL once it answers; skip when moto is not
    installed. ``port``: a port chosen beforehand, so other servers can be started with the
    endpoint while this one comes up."""
    exe = shutil.which("moto_server") or str(Path(os.sys.executable).parent / "moto_server")
    if not Path(exe).exists():
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = log_dir / "moto.log"
    with background([exe, "-H", "127.0.0.1", "-p", str(port)], dict(os.environ), log) as proc:
        wait_http(f"{endpoint}/moto-api/", 60, proc, log)
        yield endpoint


def make_bucket(name: str = BUCKET) -> None:
    from pfcore import storage

    loc = storage.resolve(f"s3://{name}")
    if not loc.fs.exists(name):
        loc.fs.mkdir(name)
