"""A store is tied to its CLAP weights, not to the name they were reached by, and readers take any windowing.

The tiny model set is indexed at folder A, then moved to B (A is gone), and reached as a hub id
through an offline hub cache: the store answers `recommend` each way with the same songs. Other
weights (a tiny CLAP written with another seed) are refused. A record from before fingerprints
(name only) is accepted when its name finds the same weights here, and a writer adds the
fingerprint to it. A `--windows all` store answers `recommend` and the web service with default settings.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from conftest import cli_environment, run_cli
from image2mood.config import Settings
from image2mood.errors import StoreMismatchError
from image2mood.library import store_info
from image2mood.models.clap_facts import read_clap_facts
from image2mood.models.factory import clap_encoder
from image2mood.models.fingerprint import model_fingerprint
from image2mood.models.resolve import resolve_model
from image2mood.models.tiny import CLAP_DIM, write_tiny_clap
from image2mood.store import Access, SongStore, StoreInfo, open_store
from image2mood.store.base import VECTOR_NAME
from image2mood.store.migrate import open_target
from image2mood.store.server import METADATA_KEY, ServerStore
from image2mood_cli.main import cli
from indexer.pipeline import Indexer
from media import write_tone
from media_images import write_photo

HUB_ID = "image2mood/tiny-clap"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SONGS = 3
DIM = CLAP_DIM


def hub_cache(folder: Path, clap: Path) -> Path:
    """An offline Hugging Face cache holding ``clap`` as HUB_ID (``models--ORG--NAME/snapshots/REV``,
    ``refs/main``)."""
    repo = folder / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(clap, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return folder


@pytest.fixture(scope="module")
def moved(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store indexed by `image2mood index` with the model set at A, which then moved to B."""
    work = tmp_path_factory.mktemp("identity")
    music = work / "music"
    music.mkdir()
    for n in range(SONGS):
        write_tone(music / f"song{n}.flac", 3.0 + n, 220.0 * (n + 1), tags={"title": f"Song {n}"})
    models_a, models_b, store = work / "A", work / "B", work / "store"
    shutil.copytree(tiny_models, models_a)
    done = run_cli(["index", str(music), "--store", str(store)],
                   {**cli_environment(tiny_models), "IMAGE2MOOD_MODELS": str(models_a)}, work)
    assert done.returncode == 0, done.stderr
    shutil.move(models_a, models_b)
    return {"work": work, "store": store, "A": models_a, "B": models_b, "photo": write_photo(work / "photo.jpg"),
            "hub": hub_cache(work / "hub", models_b / "clap")}


def recommend(photo: Path, store: Path, env: dict[str, str]) -> dict:
    """`image2mood recommend --json`, run in this process (its models stay loaded for the next test)."""
    result = CliRunner().invoke(cli, ["recommend", str(photo), "--json", "--store", str(store)], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def answer_from_b(moved: dict[str, Path]) -> dict:
    """The installed `image2mood recommend --json` of the moved store, with the model set at B."""
    done = run_cli(["recommend", str(moved["photo"]), "--json", "--store", str(moved["store"])],
                   cli_environment(moved["B"]), moved["work"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_store_records_the_weights_and_answers_from_the_moved_folder(
        moved: dict[str, Path], answer_from_b: dict) -> None:
    recorded = json.loads((moved["store"] / "store.json").read_text())
    assert recorded["clap_model"] == str(moved["A"] / "clap")  # kept for display only
    assert recorded["clap_fingerprint"] == model_fingerprint(resolve_model("clap", str(moved["B"] / "clap")))
    assert not moved["A"].exists()
    assert len(answer_from_b["songs"]) == SONGS


@pytest.fixture
def through_hub(moved: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """This process finds HUB_ID in the moved set's offline hub cache (as HF_HUB_CACHE would)."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(moved["hub"]))


@pytest.mark.usefixtures("through_hub")
def test_the_store_answers_through_a_hub_id_whose_cache_holds_the_same_files(
        moved: dict[str, Path], answer_from_b: dict) -> None:
    answer = recommend(moved["photo"], moved["store"], {"IMAGE2MOOD_MODELS": str(moved["B"]),
                                                        "IMAGE2MOOD_CLAP_MODEL": HUB_ID})
    assert [s["id"] for s in answer["songs"]] == [s["id"] for s in answer_from_b["songs"]]
    assert [s["score"] for s in answer["songs"]] == pytest.approx([s["score"] for s in answer_from_b["songs"]],
                                                                  abs=1e-4)  # the same weights: the same answer


def wanted(spec: str, windows_per_song: int = 6) -> StoreInfo:
    """What a store built by the CLAP at ``spec`` with ``windows_per_song`` records (from its files, no torch)."""
    settings = Settings(_env_file=None, clap_model=spec, windows_per_song=windows_per_song)
    return store_info(read_clap_facts(resolve_model("clap", spec)), settings)


@pytest.fixture
def other_clap(tmp_path: Path) -> Path:
    """A tiny CLAP of the same shape and config as the set's, with other random weights."""
    write_tiny_clap(tmp_path / "other-clap", seed=1)
    return tmp_path / "other-clap"


@pytest.mark.parametrize("access", ["read", "write"])
def test_a_store_built_by_other_weights_is_refused(moved: dict[str, Path], other_clap: Path, access: Access) -> None:
    other = wanted(str(other_clap))
    with pytest.raises(StoreMismatchError) as err:
        open_store(str(moved["store"]), info=other, access=access)
    message = str(err.value)
    recorded = json.loads((moved["store"] / "store.json").read_text())
    assert "cannot be mixed" in message and f"weights {recorded['clap_fingerprint']}" in message
    assert f"weights {other.clap_fingerprint}" in message and str(other_clap) in message
    assert "--store NEW" in message and "IMAGE2MOOD_CLAP_MODEL" in message


def make_old(store: Path, name: str, client: QdrantClient | None = None) -> None:
    """Give a store a record as image2mood wrote it before fingerprints: its CLAP model by ``name`` only."""
    old = {"clap_model": name, "dim": DIM, "windowing": "6x10.0s", "preprocessing": "laion-int16/1"}
    if client is None:
        (store / "store.json").write_text(json.dumps(old))
    else:
        client.create_collection("songs", vectors_config={VECTOR_NAME: models.VectorParams(
            size=DIM, distance=models.Distance.COSINE)}, metadata={METADATA_KEY: old})


@pytest.mark.usefixtures("through_hub")
@pytest.mark.parametrize("adapter", ["embedded", "server"])
def test_an_old_record_is_accepted_when_its_name_finds_the_same_weights(
        moved: dict[str, Path], tmp_path: Path, adapter: str) -> None:
    """Recorded by hub id (the default once), configured now as the folder it was downloaded to."""
    folder = wanted(str(moved["B"] / "clap"))
    client = QdrantClient(location=":memory:") if adapter == "server" else None

    def reopen(access: Access) -> SongStore:
        if client is None:
            return open_store(str(tmp_path / "store"), info=folder, access=access)
        return ServerStore(":memory:", info=folder, client=client, access=access)

    def record() -> dict:
        if client is None:
            return json.loads((tmp_path / "store" / "store.json").read_text())
        return client.get_collection("songs").config.metadata[METADATA_KEY]

    if client is None:
        open_store(str(tmp_path / "store"), info=folder).close()
    make_old(tmp_path / "store", HUB_ID, client)
    with reopen("read") as reader:
        assert reader.info.clap_model == HUB_ID and reader.info.clap_fingerprint is None
    assert "clap_fingerprint" not in record()  # a reader writes nothing
    with reopen("write") as writer:
        assert writer.info == StoreInfo.from_dict(record()) == StoreInfo(
            clap_model=HUB_ID, clap_fingerprint=folder.clap_fingerprint, dim=DIM, windowing="6x10.0s",
            preprocessing="laion-int16/1")  # the writer recorded the fingerprint; the old name stays


@pytest.mark.usefixtures("through_hub")
def test_an_old_record_is_refused_when_its_name_finds_nothing_or_other_weights(
        moved: dict[str, Path], other_clap: Path, tmp_path: Path) -> None:
    folder, store = wanted(str(moved["B"] / "clap")), tmp_path / "store"
    open_store(str(store), info=folder).close()
    make_old(store, str(moved["A"] / "clap"))  # where the set was when it was indexed
    with pytest.raises(StoreMismatchError) as err:
        open_store(str(store), info=folder, access="read")
    message = str(err.value)
    assert f"by name only ({str(moved['A'] / 'clap')!r}" in message and "does not exist" in message
    assert f"IMAGE2MOOD_CLAP_MODEL={moved['A'] / 'clap'}" in message and "--store NEW" in message

    make_old(store, str(other_clap))
    with pytest.raises(StoreMismatchError, match="cannot be mixed"):
        open_store(str(store), info=folder, access="write")
    assert "clap_fingerprint" not in json.loads((store / "store.json").read_text())


@pytest.mark.usefixtures("through_hub")
def test_a_migration_of_an_old_store_records_the_fingerprint(moved: dict[str, Path], tmp_path: Path) -> None:
    folder = wanted(str(moved["B"] / "clap"))
    open_store(str(tmp_path / "old"), info=folder).close()
    make_old(tmp_path / "old", HUB_ID)
    with open_store(str(tmp_path / "old"), info=None) as source, open_target(str(tmp_path / "new"), source) as target:
        assert target.info == StoreInfo.from_dict({**source.info.to_dict(),
                                                   "clap_fingerprint": folder.clap_fingerprint})
    with open_store(str(tmp_path / "new"), info=folder, access="read") as copy:
        assert copy.info.clap_model == HUB_ID


@pytest.fixture(scope="module")
def every_window(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of songs indexed with every window (`--windows all`)."""
    work = tmp_path_factory.mktemp("all-windows")
    for n in range(SONGS):
        write_tone(work / f"song{n}.flac", 12.0 + n, 300.0 * (n + 1))
    settings = Settings(_env_file=None, models=tiny_models, store=str(work / "store"), windows_per_song=0)
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([work]).indexed == SONGS
        assert store.info.windowing == "allx10.0s"
    return work / "store"


def test_a_store_of_every_window_answers_recommend_with_default_settings(
        every_window: Path, tiny_models: Path, tmp_path: Path) -> None:
    env = {"IMAGE2MOOD_MODELS": str(tiny_models)}
    answer = recommend(write_photo(tmp_path / "photo.jpg"), every_window, env)
    assert len(answer["songs"]) == SONGS
    listed = CliRunner().invoke(cli, ["songs", "--store", str(every_window)], env=env, catch_exceptions=False)
    assert listed.exit_code == 0 and "windowing allx10.0s" in listed.stderr, listed.output  # shown, not refused


def test_a_store_of_every_window_answers_the_service_with_default_settings(
        every_window: Path, tiny_models: Path, tmp_path: Path) -> None:
    from service.app import create_app

    app = create_app(Settings(_env_file=None, models=tiny_models, store=str(every_window)))
    try:
        photo = write_photo(tmp_path / "photo.jpg").read_bytes()
        response = app.test_client().post("/api/recommend", data={"image": (io.BytesIO(photo), "p.jpg")},
                                          content_type="multipart/form-data")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert len(response.get_json()["songs"]) == SONGS
    finally:
        app.extensions["image2mood"].store.close()


def test_a_writer_with_other_windowing_is_still_refused(every_window: Path, tiny_models: Path) -> None:
    with pytest.raises(StoreMismatchError, match=r"windowing allx10\.0s.*windowing 6x10\.0s.*cannot be mixed"):
        open_store(str(every_window), info=wanted(str(tiny_models / "clap")), access="write")
