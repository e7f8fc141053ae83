"""Shared fixtures: a tiny model set (written once per session), hermetic settings, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import image2mood.models._torchvision  # noqa: F401  (torchvision guard before anything imports it)
from image2mood.config import Settings
from image2mood.models.tiny import write_tiny_set

CLI = str(Path(sys.executable).with_name("image2mood"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_set(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session", autouse=True)
def private_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing a test runs (module-scoped servers included) reads or writes the user's config or data
    folders: kept answers, the default store and faces live in a session folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
        yield


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's IMAGE2MOOD_* variables, .env or user config file, or touches the hub."""
    for name in list(os.environ):
        if name.startswith("IMAGE2MOOD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tiny_models: Path, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"))


def cli_environment(tiny_models: Path) -> dict[str, str]:
    """The environment for running `image2mood` on the tiny models, without the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE2MOOD_")}
    env.update(IMAGE2MOOD_MODELS=str(tiny_models), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def cli_env(tiny_models: Path) -> dict[str, str]:
    return cli_environment(tiny_models)


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `image2mood` command."""
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(store: Path, env: dict[str, str], cwd: Path, timeout: float = 180,
            args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `image2mood serve [ARGS]` on a free loopback port; yields its base URL, stops it afterwards."""
    port = free_port()
    log = (cwd / f"serve-{port}.log").open("w")
    proc = subprocess.Popen([CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(store), *args],
                            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(cwd / log.name).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not come up: {(cwd / log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def post_multipart(url: str, files: dict[str, tuple[str, bytes]], fields: dict[str, str] | None = None,
                   timeout: float = 120) -> tuple[int, dict]:
    """POST multipart/form-data with urllib; returns (status, parsed JSON body)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
