"""The real service for load benchmarks: `image2mood serve` (waitress) in a child process over a filled store,
and photos posted to it over HTTP, as clients send them."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLI = Path(sys.executable).parent / "image2mood"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(store: Path, env: dict[str, str], log: Path, timeout: float = 300) -> Iterator[int]:
    """`image2mood serve` on a free loopback port, up once /api/health answers; yields the port."""
    port = _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(store)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while health_s(port) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def health_s(port: int) -> float | None:
    """Seconds /api/health took to answer 200, or None when it did not."""
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/health")
        ok = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return None
    return time.perf_counter() - started if ok else None


def recommend_s(port: int, photo: bytes) -> float:
    """Seconds one ``POST /api/recommend`` of ``photo`` took to its full answer (a non-200 stops the bench)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("POST", "/api/recommend", body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"POST /api/recommend answered {response.status}: {answer[:500]!r}")
    return time.perf_counter() - started
