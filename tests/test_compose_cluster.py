"""docker/compose.cluster.yaml, checked as parsed (no container engine here): three Qdrant nodes in
distributed mode, Ray head and worker from the project's image, replicas reaching Qdrant by URL with the
API key, behind nginx."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from image2mood.config import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load((DOCKER / "compose.cluster.yaml").read_text(encoding="utf-8"))["services"]


def _qdrant(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("qdrant/qdrant:")}


def test_three_qdrant_nodes_form_one_cluster_with_one_api_key(services: dict[str, dict]) -> None:
    nodes = _qdrant(services)
    assert len(nodes) == 3
    keys = {node["environment"]["QDRANT__SERVICE__API_KEY"] for node in nodes.values()}
    assert len(keys) == 1 and "QDRANT_API_KEY" in keys.pop()
    assert all(node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for node in nodes.values())
    first = [name for name, node in nodes.items() if "--bootstrap" not in node["command"]]
    assert len(first) == 1  # one node starts the cluster, the others join it through its p2p port
    for name, node in nodes.items():
        command = node["command"]
        assert command[command.index("--uri") + 1] == f"http://{name}:6335"
        if name not in first:
            assert command[command.index("--bootstrap") + 1] == f"http://{first[0]}:6335"
        assert not any("6335" in str(port) for port in node.get("ports", []))  # p2p never published
        assert all(str(port).startswith("127.0.0.1:") for port in node.get("ports", []))


def test_ray_head_and_worker_run_the_projects_image_with_ray(services: dict[str, dict]) -> None:
    for name in ("ray-head", "ray-worker", "indexer", "image2mood-1", "image2mood-2"):
        build = services[name]["build"]
        assert build["dockerfile"] == "docker/Dockerfile" and "ray" in build["args"]["EXTRAS"]
    assert services["ray-head"]["entrypoint"][:3] == ["ray", "start", "--head"]
    assert "--address=ray-head:6379" in services["ray-worker"]["entrypoint"]
    assert services["indexer"]["environment"]["RAY_ADDRESS"] == "ray-head:6379"
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG EXTRAS=", dockerfile, re.M) and '/tmp/src${EXTRAS}' in dockerfile


def test_app_services_reach_qdrant_by_url_with_the_key_and_settings_that_exist(services: dict[str, dict]) -> None:
    nodes = _qdrant(services)
    node_key = next(iter(nodes.values()))["environment"]["QDRANT__SERVICE__API_KEY"]
    for name in ("image2mood-1", "image2mood-2", "indexer", "ray-head", "ray-worker"):
        env = services[name]["environment"]
        host = re.fullmatch(r"http://([a-z0-9-]+):6333", env["IMAGE2MOOD_STORE"])
        assert host and host.group(1) in nodes, env["IMAGE2MOOD_STORE"]
        assert env["IMAGE2MOOD_QDRANT_API_KEY"] == node_key
        fields = {f"IMAGE2MOOD_{field.upper()}" for field in Settings.model_fields} | {"IMAGE2MOOD_TINY_MODELS"}
        assert {k for k in env if k.startswith("IMAGE2MOOD_")} <= fields  # a misspelt setting would be ignored
        settings = Settings(_env_file=None, **{k.removeprefix("IMAGE2MOOD_").lower(): v for k, v in env.items()
                                               if k.startswith("IMAGE2MOOD_") and k != "IMAGE2MOOD_TINY_MODELS"})
        assert settings.qdrant_replication == 2 and settings.qdrant_shards == 3


def test_two_replicas_behind_the_proxy(services: dict[str, dict]) -> None:
    conf = (DOCKER / "nginx.cluster.conf").read_text(encoding="utf-8")
    upstream = set(re.findall(r"server (image2mood-\d+):8000;", conf))
    replicas = {name for name, s in services.items() if name.startswith("image2mood-")}
    assert len(replicas) >= 2 and upstream == replicas
    assert services["proxy"]["ports"] == ["${BIND_ADDRESS:-127.0.0.1}:8000:80"]
