"""Model sets as data (image2mood/models/sets/*.json): each hub model pinned to a commit, the settings and the
tiny models read from them, and downloads and cache look-ups ask for the pinned revision (offline)."""

from __future__ import annotations

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import constants
from pydantic import ValidationError

from conftest import run_cli
from image2mood.config import Settings
from image2mood.errors import ModelNotFoundError
from image2mood.models.clap_facts import read_clap_facts
from image2mood.models.resolve import download_plan, hub_request, resolve_model
from image2mood.models.sets import KINDS, ModelEntry, model_set, set_names

COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_SETS = ("default", "music")


def test_the_shipped_sets_pin_every_hub_model_to_a_commit() -> None:
    assert set(set_names()) == {"default", "music", "tiny"}
    pins: dict[str, str] = {}
    for name in HUB_SETS:
        chosen = model_set(name)
        assert chosen.from_hub and set(chosen.models) == set(KINDS)
        for entry in chosen.models.values():
            assert entry.revision and COMMIT.fullmatch(entry.revision) and entry.weights
            assert pins.setdefault(entry.hub_id, entry.revision) == entry.revision  # one pin per hub id
    assert model_set("music").models["clap"].hub_id == "laion/larger_clap_music"
    assert model_set("music").models["clap"].architecture["audio_model"] == "HTSAT-base"
    assert not model_set("tiny").from_hub


def test_a_hub_model_without_a_commit_is_refused() -> None:
    with pytest.raises(ValidationError, match="revision"):
        ModelEntry(hub_id="laion/clap-htsat-unfused", weights=("model.safetensors",))
    with pytest.raises(ValidationError, match="revision"):
        ModelEntry(hub_id="laion/clap-htsat-unfused", revision="main", weights=("model.safetensors",))
    with pytest.raises(ValueError, match="no model set 'nope': choose one of default, music, tiny"):
        model_set("nope")


@pytest.mark.parametrize("name", HUB_SETS)
def test_download_plan_fetches_each_model_at_its_sets_revision(name: str, tmp_path: Path) -> None:
    chosen = model_set(name)
    # a model-set folder that does not exist yet (what `models download DIR` is pointed at): the set's hub ids
    plan = download_plan(Settings(_env_file=None, model_set=name, models=tmp_path / "new"), KINDS)
    assert [request.kind for request in plan] == list(KINDS)
    for request in plan:
        entry = chosen.models[request.kind]
        assert (request.repo_id, request.revision) == (entry.hub_id, entry.revision)
        assert COMMIT.fullmatch(request.revision or "")
        assert set(entry.weights) <= set(request.allow_patterns)
        assert str(request) == f"{entry.hub_id!r} at revision {entry.revision}"


def test_a_revision_in_the_spec_wins_and_other_ids_follow_main() -> None:
    pinned = model_set("default").models["clap"]
    assert hub_request("clap", "laion/clap-htsat-unfused").revision == pinned.revision
    assert hub_request("clap", f"laion/clap-htsat-unfused@{'a' * 40}").revision == "a" * 40
    assert hub_request("clap", "laion/clap-htsat-unfused@main").revision == "main"
    other = hub_request("clap", "someone/other-clap")
    assert other.revision is None and "*.safetensors" in other.allow_patterns
    with pytest.raises(ModelNotFoundError, match="names no revision after '@'"):
        hub_request("clap", "laion/clap-htsat-unfused@")


def test_settings_read_the_chosen_set(tmp_path: Path) -> None:
    default = Settings(_env_file=None)
    assert default.model_spec("clap") == "laion/clap-htsat-unfused"
    assert (default.caption_tokens, default.precision) == (model_set("default").caption_tokens, "auto")
    music = Settings(_env_file=None, model_set="music")
    assert music.model_spec("clap") == "laion/larger_clap_music"
    assert music.model_spec("clip") == model_set("music").models["clip"].hub_id
    # an explicit model and a model-set folder still win over the set's hub id
    assert Settings(_env_file=None, model_set="music", clap_model="me/clap").model_spec("clap") == "me/clap"
    folder = Settings(_env_file=None, model_set="music", models=tmp_path).model_spec("clap")
    assert folder == str(tmp_path.resolve() / "clap")
    assert Settings(_env_file=None, model_set="music", caption_tokens=7).caption_tokens == 7
    with pytest.raises(ValidationError, match=r"`image2mood models tiny DIR`, then IMAGE2MOOD_MODELS=DIR"):
        Settings(_env_file=None, model_set="tiny")


def _cached(cache: Path, repo: str, folder: Path, revision: str, main: bool) -> None:
    """Lay ``folder`` out in the hub cache as ``repo`` at ``revision`` (and as its main branch when ``main``)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / revision)
    if main:
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(revision)


def test_the_cache_is_asked_for_the_pinned_revision(tmp_path: Path, tiny_models: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pin = model_set("default").models["clap"].revision
    assert pin is not None
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    # the pinned commit alone (no branch): found offline
    _cached(cache, "laion/clap-htsat-unfused", tiny_models / "clap", pin, main=False)
    assert resolve_model("clap", "laion/clap-htsat-unfused").folder == cache / "models--laion--clap-htsat-unfused" / \
        "snapshots" / pin
    # another commit as main: the pinned id is not served by it, and the error names the pin and the way out
    other = "0" * 40
    _cached(cache, "laion/larger_clap_music", tiny_models / "clap", other, main=True)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("clap", "laion/larger_clap_music")
    message = str(caught.value)
    assert model_set("music").models["clap"].revision in message and "HF_HUB_OFFLINE=1" in message
    assert "IMAGE2MOOD_CLAP_MODEL=laion/larger_clap_music@main" in message
    assert resolve_model("clap", "laion/larger_clap_music@main").folder.name == other


def test_models_download_offline_names_the_revision_it_fetches(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "IMAGE2MOOD_MODELS"}
    env.update(HF_HUB_CACHE=str(tmp_path / "empty"), IMAGE2MOOD_MODEL_SET="music")
    result = run_cli(["models", "download", str(tmp_path / "set")], env, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    clip = model_set("music").models["clip"]
    assert f"downloading {clip.hub_id!r} at revision {clip.revision}" in result.stdout
    assert f"could not download CLIP model {clip.hub_id!r} at revision {clip.revision}" in result.stderr


def test_tiny_models_are_built_from_the_tiny_set(tiny_models: Path) -> None:
    tiny = model_set("tiny").models
    clip = json.loads((tiny_models / "clip" / "open_clip_config.json").read_text())["model_cfg"]
    assert (clip["embed_dim"], clip["vision_cfg"]["image_size"]) == (tiny["clip"].dim, tiny["clip"].image_size)
    assert clip["text_cfg"] == tiny["clip"].architecture["text_cfg"]
    blip = json.loads((tiny_models / "blip" / "config.json").read_text())
    assert blip["vision_config"]["image_size"] == tiny["blip"].image_size
    assert blip["text_config"]["hidden_size"] == tiny["blip"].architecture["text_config"]["hidden_size"]
    facts = read_clap_facts(resolve_model("clap", str(tiny_models / "clap")))
    assert (facts.dim, facts.sample_rate) == (tiny["clap"].dim, tiny["clap"].sample_rate)


class _NoSuchRevision(BaseHTTPRequestHandler):
    """A hub that has every repo but no revision: its API answers 404 with the hub's RevisionNotFound code."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.send_header("X-Error-Code", "RevisionNotFound")
        self.send_header("X-Error-Message", "Invalid rev id")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_a_revision_the_hub_lacks_is_named_with_the_fix(tmp_path: Path, cli_env: dict[str, str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoSuchRevision)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in cli_env.items() if k != "IMAGE2MOOD_MODELS"}
        env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   HF_HUB_CACHE=str(tmp_path / "empty"), IMAGE2MOOD_CLIP_MODEL="laion/clip-x@" + "d" * 40)
        result = run_cli(["models", "download", str(tmp_path / "set")], env, tmp_path, timeout=120)
    finally:
        server.shutdown()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"CLIP model 'laion/clip-x' has no revision {'d' * 40} on the hub" in result.stderr
    assert "IMAGE2MOOD_CLIP_MODEL=laion/clip-x@COMMIT" in result.stderr and "image2mood/models/sets/" in result.stderr
