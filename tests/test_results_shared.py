"""Stateless replicas: with the songs in a Qdrant server, kept answers live in ``<collection>-answers`` there,
so an answer given by one replica is served by another (the share page, the playlists, the thumbnail).

Two apps in one process stand for two replicas: qdrant-client's local mode (the stand-in for a server here;
no Qdrant server binary installs on these machines) allows one client per store, so both apps are built on
one shared client, each with its own ServerStore, Recommender and answer store over it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from PIL import Image
from qdrant_client import QdrantClient, models

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.results import ResultStore, ResultStoreError, SavedResult, new_id, open_results
from image2mood.results_qdrant import QdrantResults, point_id
from image2mood.store import open_store
from image2mood.store.server import ServerStore
from service.app import create_app
from service.share import RESULTS
from indexer.pipeline import Indexer
from media import write_tone
from media_images import write_photo

pytestmark = [pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant"),
              pytest.mark.filterwarnings("ignore:Local mode performs exact")]

ANSWERS = "songs-answers"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[tuple[Settings, QdrantClient]]:
    """Three songs indexed into a Qdrant stand-in, and the settings that name it as the store."""
    root = tmp_path_factory.mktemp("shared")
    (root / "music").mkdir()
    for i, title in enumerate(["Calm Sea", "Late Bus", "Party Night"]):
        write_tone(root / "music" / f"song{i}.flac", seconds=3 + i, freq=200 + 110 * i, tags={"title": title})
    settings = Settings(_env_file=None, models=tiny_models, store=":memory:", windows_per_song=1,
                        results=root / "results", public_url="https://music.example")
    client = QdrantClient(location=":memory:")
    encoder = clap_encoder(settings)
    with ServerStore(":memory:", info=store_info(encoder, settings), client=client) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root / "music"]).indexed == 3
    yield settings, client
    client.close()


@pytest.fixture(scope="module")
def replicas(shared: tuple[Settings, QdrantClient]) -> tuple[Flask, Flask]:
    settings, client = shared
    return tuple(create_app(settings, store=ServerStore(":memory:", info=None, create=False, client=client))
                 for _ in range(2))  # type: ignore[return-value]


def stored(client: QdrantClient, result_id: str) -> dict:
    [record] = client.retrieve(ANSWERS, [point_id(result_id)], with_payload=True)
    return record.payload


def test_an_answer_given_by_one_replica_is_served_by_the_other(
        replicas: tuple[Flask, Flask], shared: tuple[Settings, QdrantClient]) -> None:
    settings, client = shared
    first, second = (app.test_client() for app in replicas)
    assert replicas[0].extensions[RESULTS] is not replicas[1].extensions[RESULTS]
    answer = first.get("/api/search", query_string={"q": "calm evening by the sea", "top": 2}).get_json()
    result_id, titles = answer["result_id"], [song["title"] for song in answer["songs"]]
    assert stored(client, result_id)["kept"] is False  # held on the server, not in the first replica's memory

    page = second.get(f"/r/{result_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "calm evening by the sea" in text and all(title in text for title in titles)
    assert stored(client, result_id)["kept"] is True
    m3u8 = second.get(f"/api/results/{result_id}/playlist.m3u8")
    assert m3u8.status_code == 200
    lines = [line for line in m3u8.get_data(as_text=True).splitlines() if line.startswith("https://")]
    assert [line.rsplit("/", 1)[-1] for line in lines] == [song["id"] for song in answer["songs"]]
    assert second.get(f"/api/results/{result_id}/playlist.xspf").status_code == 200
    assert first.get(f"/r/{result_id}").status_code == 200  # and the first still serves it
    assert not settings.results.exists()  # no folder: nothing kept on one replica's disk


def test_a_shared_photo_keeps_only_its_thumbnail_and_only_when_asked(
        replicas: tuple[Flask, Flask], shared: tuple[Settings, QdrantClient], tmp_path: Path) -> None:
    client = shared[1]
    first, second = (app.test_client() for app in replicas)
    data = write_photo(tmp_path / "photo.jpg", size=(1600, 1200)).read_bytes()
    ids = [first.post("/api/recommend", data={"image": (io.BytesIO(data), "photo.jpg"), "share_photo": share},
                      content_type="multipart/form-data").get_json()["result_id"] for share in ("true", "false")]
    thumb = second.get(f"/r/{ids[0]}/photo.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.data)).size) <= 320 and len(thumb.data) < len(data)
    assert second.get(f"/r/{ids[1]}/photo.jpg").status_code == 404
    assert stored(client, ids[1])["thumbnail"] is None


def test_a_malformed_stored_answer_is_a_clean_404(
        replicas: tuple[Flask, Flask], shared: tuple[Settings, QdrantClient]) -> None:
    client = shared[1]
    web = replicas[1].test_client()
    good = SavedResult(id=new_id(), created=time.time(), route="text", moods=[], vector=[], songs=[]).to_json()
    bad = {"junk": {"id": new_id(), "kept": True},  # not an answer
           "time": {"id": new_id(), **{k: v for k, v in good.items() if k != "id"}, "created": "yesterday"},
           "other": {**good, "kept": True},  # another answer's payload under this id's point
           "thumbnail": {**good, "id": new_id(), "thumbnail": "not base64!", "kept": True}}
    for name, payload in bad.items():
        rid = payload["id"] if name != "other" else new_id()
        client.upsert(ANSWERS, [models.PointStruct(id=point_id(rid), vector={}, payload=payload)], wait=True)
        assert web.get(f"/r/{rid}").status_code == 404, name
        response = web.get(f"/api/results/{rid}/playlist.m3u8")
        assert response.status_code == 404 and response.is_json, name
    assert web.post(f"/api/results/{new_id()}/keep").status_code == 404
    assert web.get("/r/..%2F..%2Fetc").status_code == 404


def test_expired_answers_are_swept_and_the_caps_hold(shared: tuple[Settings, QdrantClient]) -> None:
    client = shared[1]

    def answer(age_s: float = 0.0, size: int = 0) -> SavedResult:
        return SavedResult(id=new_id(), created=time.time() - age_s, route="text", moods=[], vector=[0.5] * size,
                           songs=[])

    def ids(collection: str) -> set[str]:
        return {str(r.id) for r in client.scroll(collection, limit=100)[0]}

    store = QdrantResults(client, "ttl-answers", ttl_hours=1)
    fresh = store.save(answer())
    old, older = store.hold(answer(age_s=3601)), store.hold(answer(age_s=7200))  # a hold does not sweep
    assert ids("ttl-answers") == {point_id(r.id) for r in (fresh, old, older)}
    assert store.keep(old.id) is None and store.get(older.id) is None  # expired: never served, even before a sweep
    assert store.sweep() == 2 and ids("ttl-answers") == {point_id(fresh.id)}
    assert store.get(fresh.id) == fresh and store.sweep() == 0

    capped = QdrantResults(client, "count-answers", ttl_hours=1, max_count=2)
    first, second, third = (capped.save(answer(age_s=30 - i)) for i in range(3))
    assert ids("count-answers") == {point_id(second.id), point_id(third.id)}
    assert capped.get(first.id) is None

    one = len(json.dumps(answer(size=500).to_json()).encode())
    small = QdrantResults(client, "bytes-answers", ttl_hours=1, max_bytes=int(2.5 * one))
    first, second, third = (small.save(answer(age_s=30 - i, size=500)) for i in range(3))
    assert ids("bytes-answers") == {point_id(second.id), point_id(third.id)}
    huge = QdrantResults(client, "huge-answers", ttl_hours=1, max_bytes=10)
    assert huge.get(huge.save(answer(size=500)).id) is not None  # the one just kept never goes

    few = QdrantResults(client, "held-answers", ttl_hours=1, held=2)
    first, second, third = (few.hold(answer(age_s=30 - i)) for i in range(3))
    assert few.keep(first.id) is None  # forgotten: the held ones are the last two, across replicas
    assert few.get(third.id) is None  # held, not kept
    assert few.keep(third.id) == third and few.get(third.id) == third and few.keep(second.id) == second
    again = few.hold(SavedResult(**{**third.__dict__, "caption": "with its captions"}))  # held again, same id
    assert few.get(third.id) == again  # still kept, not demoted to held (the held cap would drop it)


def test_a_failing_server_is_a_result_store_error(shared: tuple[Settings, QdrantClient]) -> None:
    client = shared[1]
    store = QdrantResults(client, "gone-answers", ttl_hours=1)
    client.delete_collection("gone-answers")
    with pytest.raises(ResultStoreError, match="'gone-answers'"):
        store.hold(SavedResult(id=new_id(), created=time.time(), route="text", moods=[], vector=[], songs=[]))


def test_the_embedded_default_keeps_its_folder(settings: Settings, tmp_path: Path) -> None:
    folder = settings.model_copy(update={"store": str(tmp_path / "store"), "results": tmp_path / "results"})
    info = store_info(clap_encoder(folder), folder)
    with open_store(folder.store, info=info) as embedded:
        results = open_results(folder, embedded)
        assert isinstance(results, ResultStore) and results.folder == tmp_path / "results"
        kept = results.save(SavedResult(id=new_id(), created=time.time(), route="text", moods=[], vector=[],
                                        songs=[]))
        assert (tmp_path / "results" / f"{kept.id}.json").is_file()
    with open_store(":memory:", info=info) as server:
        assert isinstance(open_results(folder, server), QdrantResults)
