"""docker/: what can be checked without a container engine — the Dockerfile and compose file as parsed,
their health checks run for real, and the entrypoint run with a models folder that is empty."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import CLI, free_port, run_cli, serving
from image2mood.config import FACES_DIR, PROJECTION_FILE, TINY_MARKER, Settings
from image2mood.faces.fetch import faces_ready
from image2mood.store import StoreInfo, open_store
from service.cli import serve

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def dockerfile(path: Path = DOCKER / "Dockerfile") -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, f"{path} ends inside a continuation line"
    return instructions


def arguments(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile() if kw == keyword]


def the_one(keyword: str) -> str:
    found = arguments(keyword)
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    """Every ENV of the image, KEY=VALUE pairs."""
    return dict(pair.split("=", 1) for args in arguments("ENV") for pair in shlex.split(args))


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:?message}`` / ``${VAR:-default}`` / ``${VAR}``, as far as this file uses them."""
    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return rest
        raise AssertionError(f"compose would stop: {name} is not set ({rest})")
    return re.sub(r"\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, value)


def test_base_image_and_a_single_stage() -> None:
    assert arguments("FROM") == ["python:3.11-slim"]


def test_the_service_runs_as_a_user_of_its_own_who_owns_the_volumes() -> None:
    uid, _, gid = the_one("USER").partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid == uid, "a numeric uid lets runtimes check it is not root"
    made = next(run for run in arguments("RUN") if "useradd" in run)
    name = re.search(rf"useradd --create-home --uid {uid} --gid {gid} (\w+)", made).group(1)  # type: ignore[union-attr]
    assert f"groupadd --gid {gid} {name}" in made
    assert f"chown {name}:{name} /models /data" in made
    keywords = [kw for kw, _ in dockerfile()]
    assert "RUN" not in keywords[keywords.index("USER"):], "nothing should run as root after USER"


def test_torch_and_torchvision_are_the_cpu_builds_pinned_by_constraints() -> None:
    pins = dict(re.findall(r"^(torch|torchvision)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert set(pins) == {"torch", "torchvision"}, "constraints.txt must pin both exactly"
    project = (ROOT / "pyproject.toml").read_text()
    assert f'"torch=={pins["torch"]}"' in project and f'"torchvision=={pins["torchvision"]}"' in project

    steps = dockerfile()
    copy_at = steps.index(("COPY", "constraints.txt /tmp/constraints.txt"))
    torch_at, torch_run = next((i, a) for i, (kw, a) in enumerate(steps) if kw == "RUN" and "torchvision" in a)
    assert copy_at < torch_at
    install = shlex.split(torch_run.split("&&")[-1])
    assert install[:2] == ["/opt/venv/bin/pip", "install"]
    assert install[install.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert install[install.index("-c") + 1] == "/tmp/constraints.txt"  # the exact versions, from one place
    assert {"torch", "torchvision"} <= set(install)
    project_run = next(a for kw, a in steps[torch_at + 1:] if kw == "RUN" and "/tmp/src" in a)
    assert project_run.startswith('pip install -c /tmp/constraints.txt "/tmp/src${EXTRAS}"')  # the constraints keep torch
    assert image_env()["PATH"].startswith("/opt/venv/bin:")


def image_settings() -> Settings:
    """The settings the image's ENV gives image2mood."""
    return Settings(_env_file=None, **{k.removeprefix("IMAGE2MOOD_").lower(): v
                                       for k, v in image_env().items() if k.startswith("IMAGE2MOOD_")})


def test_models_the_embedded_store_and_kept_answers_live_in_volumes_the_settings_read() -> None:
    volumes = json.loads(the_one("VOLUME"))
    assert {"/models", "/data"} <= set(volumes)
    settings = image_settings()
    assert settings.models == Path("/models")
    assert Path(settings.store).parent == Path("/data")
    assert settings.results == Path("/data/results")  # not the container layer's ~/.local/share
    made = next(run for run in arguments("RUN") if "useradd" in run)
    assert "mkdir -p /models /data/results" in made and "/data/results" in made.split("chown", 1)[1]


def test_the_face_models_are_fetched_into_the_image_where_the_settings_look(tmp_path: Path,
                                                                            cli_env: dict[str, str]) -> None:
    steps = dockerfile()
    faces_at, faces_run = next((i, a) for i, (kw, a) in enumerate(steps) if kw == "RUN" and "models faces" in a)
    project_at = next(i for i, (kw, a) in enumerate(steps) if kw == "RUN" and "/tmp/src" in a)
    assert project_at < faces_at < steps.index(("USER", the_one("USER")))  # installed, and before the user drops root
    command = shlex.split(faces_run)
    assert command[:3] == ["image2mood", "models", "faces"] and len(command) == 4
    assert image_settings().faces_folder() == Path(command[3]) / FACES_DIR
    # The build step itself, into a folder here: PyPI's wheels, sha256-checked.
    built = run_cli([*command[1:3], str(tmp_path / "opt")], cli_env, tmp_path)
    assert built.returncode == 0, built.stderr
    assert faces_ready(tmp_path / "opt" / FACES_DIR)


def test_exposes_the_port_serve_listens_on_for_every_interface() -> None:
    port = next(p for p in serve.params if p.name == "port").default
    assert arguments("EXPOSE") == [str(port)]
    assert json.loads(the_one("CMD")) == ["serve", "--host", "0.0.0.0"]
    entry = json.loads(the_one("ENTRYPOINT"))
    assert [f"docker/entrypoint.sh {entry[0]}"] == [a for a in arguments("COPY") if "entrypoint" in a]
    assert os.access(ENTRYPOINT, os.X_OK)


def healthcheck_argv(port: int) -> list[str]:
    """The image's HEALTHCHECK command, aimed at ``port``, with this interpreter for ``python``."""
    options, _, command = the_one("HEALTHCHECK").partition(" CMD ")
    assert "--start-period=" in options
    argv = json.loads(command)
    assert argv[0] == "python", "python:3.11-slim has no curl or wget"
    exposed = arguments("EXPOSE")[0]
    assert f"http://127.0.0.1:{exposed}/api/health" in argv[-1]
    return [sys.executable, *argv[1:-1], argv[-1].replace(f":{exposed}/", f":{port}/")]


def test_healthcheck_passes_on_a_serving_image2mood_and_fails_when_it_is_down(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    with serving(tmp_path / "store", cli_env, tmp_path) as url:
        port = urlsplit(url).port
        assert port is not None
        up = subprocess.run(healthcheck_argv(port), capture_output=True, text=True, timeout=30)
        assert up.returncode == 0, up.stderr
    down = subprocess.run(healthcheck_argv(free_port()), capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def test_build_context_leaves_out_secrets_and_the_local_environment() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"**/.env", ".venv", ".git", "models", "tests"} <= ignored  # docker/.env holds the API key
    needed = {"pyproject.toml", "README.md", "constraints.txt", "docker", "image2mood", "image2mood_cli"}
    assert not needed & ignored


def test_compose_service_reaches_the_qdrant_service_by_url_with_one_api_key() -> None:
    services = compose()["services"]
    app, qdrant = services["image2mood"], services["qdrant"]
    store = urlsplit(app["environment"]["IMAGE2MOOD_STORE"])
    assert store.scheme == "http" and services[store.hostname] is qdrant and store.port == 6333
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", qdrant["image"]), "pin the Qdrant version"

    key_refs = [app["environment"]["IMAGE2MOOD_QDRANT_API_KEY"], qdrant["environment"]["QDRANT__SERVICE__API_KEY"]]
    assert len({re.match(r"\$\{(\w+):\?", ref).group(1) for ref in key_refs}) == 1  # type: ignore[union-attr]
    secrets = {"QDRANT_API_KEY": "s3cret", "MUSIC_DIR": "/srv/music"}
    settings = Settings(_env_file=None, **{k.removeprefix("IMAGE2MOOD_").lower(): interpolate(v, secrets)
                                           for k, v in app["environment"].items()})
    assert (settings.store, settings.qdrant_api_key) == ("http://qdrant:6333", "s3cret")
    assert interpolate(key_refs[1], secrets) == "s3cret"
    with pytest.raises(AssertionError, match="QDRANT_API_KEY is not set"):
        interpolate(key_refs[0], {})

    build = app["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert app["depends_on"]["qdrant"]["condition"] == "service_healthy"


def test_compose_ports_and_volumes() -> None:
    spec = compose()
    app, qdrant = spec["services"]["image2mood"], spec["services"]["qdrant"]
    assert [interpolate(p, {}) for p in app["ports"]] == [f"127.0.0.1:{arguments('EXPOSE')[0]}:8000"]  # this host only
    assert [interpolate(p, {"BIND_ADDRESS": "0.0.0.0"}) for p in app["ports"]] == ["0.0.0.0:8000:8000"]  # opened
    assert qdrant["ports"] == ["127.0.0.1:6333:6333"]  # reachable for migrations from this host only
    mounts = {m.split(":")[1]: m for m in (interpolate(v, {"MUSIC_DIR": "/srv/music"}) for v in app["volumes"])}
    assert mounts["/models"] == "models:/models"
    assert mounts[str(image_settings().results)] == "results:/data/results"  # kept answers outlive `up --build`
    assert mounts["/srv/music"] == "/srv/music:/srv/music:ro"  # song ids come from absolute paths
    assert qdrant["volumes"] == ["qdrant-storage:/qdrant/storage"]
    assert {"models", "results", "qdrant-storage"} <= set(spec["volumes"])


def test_one_init_service_downloads_the_models_before_anything_else_starts() -> None:
    services = compose()["services"]
    init, app = services["models-init"], services["image2mood"]
    assert init["command"] == ["init"] and init["restart"] == "no"
    assert (init["image"], init["build"]) == (app["image"], app["build"])
    assert init["volumes"] == ["models:/models"]
    assert app["depends_on"]["models-init"] == {"condition": "service_completed_successfully"}
    # `run --rm image2mood index` starts the same service's dependencies, so it waits for the init too;
    # a container started any other way takes the entrypoint's lock (the lock test below).
    assert [name for name, service in services.items() if "models-init" in service.get("depends_on", {})] == \
        ["image2mood"]


class _Qdrant(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"all shards are ready")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_readyz() -> Iterator[http.server.HTTPServer]:
    """Something answering /readyz on a loopback port (no Qdrant binary installs here)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Qdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_qdrant_healthcheck_asks_readyz_and_fails_unless_it_answers_200(
        fake_readyz: http.server.HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    test = compose()["services"]["qdrant"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"] and "/127.0.0.1/6333" in test[3]
    port = fake_readyz.server_address[1]
    script = test[3].replace("/127.0.0.1/6333", f"/127.0.0.1/{port}")
    assert subprocess.run(["bash", "-c", script], timeout=10).returncode == 0
    monkeypatch.setattr(_Qdrant, "status", 503)
    assert subprocess.run(["bash", "-c", script], timeout=10).returncode != 0
    closed = test[3].replace("/127.0.0.1/6333", f"/127.0.0.1/{free_port()}")
    assert subprocess.run(["bash", "-c", closed], capture_output=True, timeout=10).returncode != 0


def test_entrypoint_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)


def run_entrypoint(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**env, "PATH": f"{Path(CLI).parent}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(ENTRYPOINT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def empty_store(folder: Path) -> Path:
    open_store(str(folder), info=StoreInfo.from_dict({"clap_model": "m", "dim": 4, "windowing": "6x10.0s"})).close()
    return folder


def test_entrypoint_without_models_or_network_says_how_to_get_them(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_entrypoint(["serve", "--host", "0.0.0.0"], {**cli_env, "IMAGE2MOOD_MODELS": str(tmp_path / "m")},
                            tmp_path)
    assert result.returncode == 78
    assert f"the models are not in {tmp_path / 'm'} and could not be downloaded" in result.stderr
    assert "image2mood models download DIR" in result.stderr and "IMAGE2MOOD_TINY_MODELS=1" in result.stderr
    assert "could not download CLIP model 'laion/" in result.stderr  # the hub ids, never the missing folder
    assert "serving" not in result.stderr


def test_entrypoint_falls_back_to_tiny_models_only_when_asked(
        tmp_path: Path, cli_env: dict[str, str], tiny_models: Path) -> None:
    models = tmp_path / "m"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_models)  # as a first start with the flag would have written it
    env = {**cli_env, "IMAGE2MOOD_MODELS": str(models), "IMAGE2MOOD_TINY_MODELS": "1"}
    result = run_entrypoint(["songs", "--store", str(empty_store(tmp_path / "store"))], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "running on TINY RANDOM models" in result.stderr
    assert f"note: using tiny random models from {models / 'tiny'}" in result.stderr
    assert "0 songs in" in result.stderr


def test_entrypoint_with_models_in_place_runs_the_command(
        tmp_path: Path, cli_env: dict[str, str], tiny_models: Path) -> None:
    result = run_entrypoint(["songs", "--store", str(empty_store(tmp_path / "store"))],
                            {**cli_env, "IMAGE2MOOD_MODELS": str(tiny_models)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "downloading" not in result.stderr + result.stdout
    assert "0 songs in" in result.stderr


def test_entrypoint_runs_store_commands_without_models(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_entrypoint(["store", "migrate", "--help"], {**cli_env, "IMAGE2MOOD_MODELS": str(tmp_path / "m")},
                            tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--to DIR_OR_URL" in result.stdout and "downloading" not in result.stderr + result.stdout


def test_entrypoint_init_finds_the_models_in_place_and_runs_nothing_else(
        tmp_path: Path, cli_env: dict[str, str], tiny_models: Path) -> None:
    result = run_entrypoint(["init"], {**cli_env, "IMAGE2MOOD_MODELS": str(tiny_models)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "downloading" not in result.stderr + result.stdout and result.stdout == ""


def _blocked_in_flock(pid: int, seconds: float = 60) -> bool:
    """True once the entrypoint ``pid`` has a child ``flock`` still waiting a second later."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        waiting = [child for child in children.read_text().split()
                   if Path(f"/proc/{child}/comm").read_text().strip() == "flock"] if children.exists() else []
        if waiting:
            time.sleep(1)
            return all(Path(f"/proc/{child}").exists() for child in waiting)
        time.sleep(0.1)
    return False


def test_entrypoint_waits_for_the_download_in_progress_then_uses_its_models(
        tmp_path: Path, cli_env: dict[str, str], tiny_models: Path) -> None:
    models = tmp_path / "m"
    models.mkdir()
    env = {**cli_env, "IMAGE2MOOD_MODELS": str(models), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(models / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another container's download is under way
        waiting = subprocess.Popen([str(ENTRYPOINT), "songs", "--store", str(empty_store(tmp_path / "store"))],
                                   env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert waiting.stderr is not None
        assert "another container is fetching the models" in waiting.stderr.readline()
        assert _blocked_in_flock(waiting.pid), "the entrypoint went on without the lock"
        for name in ("clip", "blip", "clap", PROJECTION_FILE, TINY_MARKER):  # ... and it finishes
            (models / name).symlink_to(tiny_models / name)
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert "downloading" not in out + err and "0 songs in" in err
