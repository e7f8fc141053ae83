"""scripts/install-torch.sh, the torch step of scripts/setup.sh: the CPU build from PyTorch's CPU index without an
NVIDIA GPU, pip's own index when that index cannot be reached, the CUDA build with a GPU."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-torch.sh"
PYTHON = sys.executable
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH holding only what the script needs besides bash builtins, so no real nvidia-smi is found."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "dirname").symlink_to(shutil.which("dirname"))
    return folder


def _stub_nvidia_smi(folder: Path, status: int) -> None:
    stub = folder / "nvidia-smi"
    stub.write_text(f"#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\nexit {status}\n")
    stub.chmod(0o755)


@pytest.fixture
def index() -> Iterator[str]:
    """A local package index with a torch/ page, standing in for PyTorch's CPU index."""
    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            found = self.path.rstrip("/") == "/whl/cpu/torch"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(b"<a href='torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl'>torch</a>" if found else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/whl/cpu"
    server.shutdown()


def _install(bin_dir: Path, *args: str, cpu_index: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")}
    if cpu_index:
        env["TORCH_CPU_INDEX"] = cpu_index
    return subprocess.run(["/bin/bash", str(SCRIPT), *args, PYTHON], env=env, capture_output=True, text=True,
                          timeout=300, cwd="/")


def test_without_a_gpu_the_cpu_index_is_named(bin_dir: Path, index: str) -> None:
    result = _install(bin_dir, "--dry-run", cpu_index=index)
    assert result.returncode == 0, result.stderr
    assert f"no NVIDIA GPU: installing the CPU build of torch and torchvision from {index}" in result.stdout
    command = result.stdout.splitlines()[-1].split()
    assert command[:3] == [PYTHON, "-m", "pip"] and {"torch", "torchvision"} <= set(command)
    assert command[command.index("--index-url") + 1] == index
    assert command[command.index("-c") + 1] == "constraints.txt"  # the pinned versions


def test_a_failing_nvidia_smi_is_no_gpu(bin_dir: Path, index: str) -> None:
    _stub_nvidia_smi(bin_dir, status=9)  # installed tools, but no driver or no device
    result = _install(bin_dir, "--dry-run", cpu_index=index)
    assert result.returncode == 0 and f"--index-url {index}" in result.stdout, result.stdout + result.stderr


def test_with_a_gpu_the_cuda_build_comes_from_pips_index(bin_dir: Path, index: str) -> None:
    _stub_nvidia_smi(bin_dir, status=0)
    result = _install(bin_dir, "--dry-run", cpu_index=index)
    assert result.returncode == 0, result.stderr
    assert "NVIDIA GPU found: installing the CUDA build" in result.stdout
    assert "--index-url" not in result.stdout


def test_an_unreachable_cpu_index_falls_back_to_pips_index_at_once(bin_dir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/whl/cpu"
    started = time.monotonic()
    result = _install(bin_dir, "--dry-run", cpu_index=closed)
    assert result.returncode == 0, result.stderr
    assert f"no NVIDIA GPU, but {closed} cannot be reached: installing torch and torchvision from pip's configured " \
           "index" in result.stdout
    assert "--index-url" not in result.stdout.splitlines()[-1]
    assert time.monotonic() - started < 10


def test_the_fallback_install_succeeds(bin_dir: Path) -> None:
    """Not a dry run: here PyTorch's CPU index is out of reach (only PyPI is), and pip's index serves the pin."""
    result = _install(bin_dir, cpu_index=f"http://127.0.0.1:{free_port()}/whl/cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    versions = [version(name) for name in ("torch", "torchvision")]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert [v.split("+")[0] for v in versions] == [pins["torch"], pins["torchvision"]]


def test_setup_installs_torch_through_the_script() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "bash scripts/install-torch.sh .venv/bin/python" in setup
    assert "torch==" not in setup  # no second, unconditional torch install
    assert CPU_INDEX in SCRIPT.read_text()  # the default CPU index is PyTorch's
