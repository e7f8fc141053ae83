"""The song store: one behaviour, two adapters (embedded Qdrant Edge folder, qdrant-client in memory)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from image2mood.errors import StoreError, StoreLockedError, StoreMismatchError
from image2mood.store import Song, SongFilter, SongStore, StoreInfo, open_store, windowing_label
from image2mood.store.embedded import EmbeddedStore
from image2mood.store.base import LEGACY_PREPROCESSING, VECTOR_NAME
from image2mood.store.server import METADATA_KEY, ServerStore

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant"),
    pytest.mark.filterwarnings("ignore:Failed to obtain server version"),  # the unreachable-server test
]

DIM = 8
INFO = StoreInfo(clap_model="test/clap-tiny", clap_fingerprint="0123456789abcdef", dim=DIM,
                 windowing=windowing_label(6, 10), preprocessing="laion-int16/1")
Opener = Callable[..., SongStore]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def song(n: int, vector: np.ndarray | None = None, **fields: object) -> Song:
    """Song number ``n``: a stable id, a random unit vector unless one is given."""
    if vector is None:
        vector = unit(np.random.default_rng(n).standard_normal(DIM))
    base: dict[str, object] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"song-{n}")),
        "path": f"/music/{n:03d}.flac",
        "content_hash": f"hash{n}",
        "title": f"Song {n}",
    }
    return Song(**(base | fields), vector=vector)  # type: ignore[arg-type]


def on_plane(n: int, degrees: float) -> Song:
    """A song whose cosine to the query e0 is cos(degrees)."""
    rad = math.radians(degrees)
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[1] = math.cos(rad), math.sin(rad)
    return song(n, v)


E0 = np.eye(DIM, dtype=np.float32)[0]


@pytest.fixture(params=["embedded", "server"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same store again and again (the server one through one shared in-memory client)."""
    opened: list[SongStore] = []
    client = QdrantClient(location=":memory:") if request.param == "server" else None

    def make(info: StoreInfo | None = INFO, create: bool = True) -> SongStore:
        if client is None:
            store: SongStore = open_store(str(tmp_path / "store"), info=info, create=create)
        else:
            store = ServerStore(":memory:", info=info, create=create, client=client)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if client is not None:
        client.close()


@pytest.fixture
def store(opener: Opener) -> SongStore:
    return opener()


def ids(songs: list[Song]) -> set[str]:
    return {s.id for s in songs}


def test_open_store_picks_the_adapter(tmp_path: Path) -> None:
    with open_store(":memory:", info=INFO) as server, open_store(str(tmp_path / "s"), info=INFO) as embedded:
        assert (server.kind, type(server)) == ("server", ServerStore)
        assert (embedded.kind, type(embedded)) == ("embedded", EmbeddedStore)
        assert embedded.location == str(tmp_path / "s")
        assert server.info == embedded.info == INFO


def test_upsert_and_count(store: SongStore) -> None:
    assert store.count() == 0
    store.upsert([song(n) for n in range(5)])
    assert store.count() == 5
    store.upsert([])
    assert store.count() == 5


def test_get_with_and_without_vectors(store: SongStore) -> None:
    songs = [song(n, artist="Nina", album="Blue", genre="jazz", duration=181.5) for n in range(3)]
    store.upsert(songs)
    missing = str(uuid.uuid4())

    got = store.get([songs[2].id, missing, songs[0].id])
    assert [s.id for s in got] == [songs[2].id, songs[0].id]  # order asked, missing absent
    assert got[0] == songs[2]  # every payload field round-trips (vectors are not compared by ==)
    for g, s in zip(got, [songs[2], songs[0]], strict=True):
        assert g.vector is not None and g.vector.dtype == np.float32
        np.testing.assert_allclose(g.vector, s.vector, atol=1e-6)

    bare = store.get([songs[1].id], with_vectors=False)
    assert bare == [songs[1]] and bare[0].vector is None
    assert store.get([]) == []


def test_upsert_same_id_replaces_the_point(store: SongStore) -> None:
    store.upsert([song(1, title="Old", vector=unit(E0))])
    new_vector = unit(np.arange(DIM, dtype=np.float32) + 1)
    store.upsert([song(1, title="New", vector=new_vector)])
    assert store.count() == 1
    [got] = store.get([song(1).id])
    assert got.title == "New"
    np.testing.assert_allclose(got.vector, new_vector, atol=1e-6)


def test_delete(store: SongStore) -> None:
    songs = [song(n) for n in range(4)]
    store.upsert(songs)
    store.delete([songs[1].id, str(uuid.uuid4())])  # an unknown id is ignored
    assert store.count() == 3
    assert store.get([songs[1].id]) == []
    assert songs[1].id not in {h.song.id for h in store.search(songs[1].vector, limit=4)}


def test_scroll_returns_every_song(store: SongStore) -> None:
    songs = [song(n, genre="rock") for n in range(7)]
    store.upsert(songs)
    listed = list(store.scroll(batch=3))
    assert len(listed) == 7 and ids(listed) == ids(songs)
    assert all(s.vector is None and s.genre == "rock" for s in listed)
    with_vectors = {s.id: s.vector for s in store.scroll(with_vectors=True, batch=2)}
    for s in songs:
        np.testing.assert_allclose(with_vectors[s.id], s.vector, atol=1e-6)


def test_search_ranks_by_cosine(store: SongStore) -> None:
    angles = [120, 0, 60, 90, 30]
    store.upsert([on_plane(n, a) for n, a in enumerate(angles)])
    hits = store.search(E0, limit=4)
    assert [h.song.title for h in hits] == ["Song 1", "Song 4", "Song 2", "Song 3"]
    for h, degrees in zip(hits, [0, 30, 60, 90], strict=True):
        assert h.score == pytest.approx(math.cos(math.radians(degrees)), abs=1e-5)
    assert len(store.search(E0, limit=10)) == 5
    assert store.search(E0, limit=1)[0].song.vector is None
    best = store.search(E0, limit=1, with_vectors=True)[0].song
    assert best.vector.dtype == np.float32 and np.allclose(best.vector, E0, atol=1e-6)


def test_optimize_keeps_songs_and_ranking(store: SongStore) -> None:
    store.upsert([on_plane(n, a) for n, a in enumerate([50, 10, 30])])
    store.optimize()
    assert store.count() == 3
    assert [h.song.title for h in store.search(E0, limit=3)] == ["Song 1", "Song 2", "Song 0"]
    store.upsert([on_plane(3, 0)])  # still writable after optimizing
    assert store.search(E0, limit=1)[0].song.title == "Song 3"


def test_filters(store: SongStore) -> None:
    # song n sits at 10*n degrees from the query, so unfiltered rank follows n
    spec = [
        ("Ana", "jazz", 100.0),
        ("Bo", "jazz", 200.0),
        ("Ana", "rock", 300.0),
        ("Bo", "rock", 400.0),
        ("Ana", "jazz", 500.0),
        (None, None, 250.0),
    ]
    songs = [
        song(n, vector=on_plane(n, 10 * n).vector, artist=a, genre=g, duration=d) for n, (a, g, d) in enumerate(spec)
    ]
    store.upsert(songs)

    number = {s.id: n for n, s in enumerate(songs)}

    def found(**kw: object) -> list[int]:
        return [number[h.song.id] for h in store.search(E0, 10, SongFilter(**kw))]  # type: ignore[arg-type]

    assert found(artist="Ana") == [0, 2, 4]
    assert found(genre="rock") == [2, 3]
    assert found(artist="Bo", genre="jazz") == [1]
    assert found(min_duration=200.0) == [1, 2, 3, 4, 5]
    assert found(max_duration=250.0) == [0, 1, 5]
    assert found(min_duration=200.0, max_duration=400.0) == [1, 2, 3, 5]
    assert found(exclude_ids=(songs[0].id, songs[3].id)) == [1, 2, 4, 5]
    assert found(artist="Ana", min_duration=150.0, exclude_ids=(songs[4].id,)) == [2]
    assert found(artist="Nobody") == []
    assert found() == [0, 1, 2, 3, 4, 5]


def test_info_mismatch_names_store_and_fix(opener: Opener) -> None:
    opener().close()
    for changed in (
        replace(INFO, clap_model="other/clap", clap_fingerprint="fedcba9876543210"),
        replace(INFO, dim=DIM * 2),
        replace(INFO, windowing=windowing_label(3, 5)),
    ):
        with pytest.raises(StoreMismatchError) as err:
            opener(info=changed)
        message = str(err.value)
        assert "test/clap-tiny" in message and "--store" in message and "IMAGE2MOOD_CLAP_MODEL" in message
        assert changed.clap_model in message and changed.windowing in message
    as_is = opener(info=None)  # opening without info (e.g. to list songs) shows what built it
    assert as_is.info == INFO


def test_changed_preprocessing_is_refused_with_the_reindex_fix(opener: Opener) -> None:
    opener().close()
    with pytest.raises(StoreMismatchError) as err:
        opener(info=replace(INFO, preprocessing="other/2"))
    message = str(err.value)
    assert "audio preprocessing laion-int16/1" in message and "audio preprocessing other/2" in message
    assert "Re-index" in message and "image2mood index MUSIC_DIR --store NEW" in message
    assert "IMAGE2MOOD_CLAP_MODEL" not in message  # no setting brings the old preprocessing back


@pytest.mark.parametrize("adapter", ["embedded", "server"])
def test_store_from_before_preprocessing_was_recorded_is_refused(adapter: str, tmp_path: Path) -> None:
    """An old store.json / collection metadata has no ``preprocessing``: it reads as the legacy one."""
    old = {key: value for key, value in INFO.to_dict().items() if key != "preprocessing"}
    client = QdrantClient(location=":memory:") if adapter == "server" else None

    def reopen(info: StoreInfo | None) -> SongStore:
        if client is None:
            return open_store(str(tmp_path / "store"), info=info)
        return ServerStore(":memory:", info=info, client=client)

    if client is None:
        reopen(INFO).close()
        (tmp_path / "store" / "store.json").write_text(json.dumps(old))
    else:
        client.create_collection("songs", vectors_config={VECTOR_NAME: models.VectorParams(
            size=DIM, distance=models.Distance.COSINE)}, metadata={METADATA_KEY: old})
    try:
        with reopen(None) as as_is:  # listing songs still works
            assert as_is.info == replace(INFO, preprocessing=LEGACY_PREPROCESSING)
        with pytest.raises(StoreMismatchError) as err:
            reopen(INFO)
        message = str(err.value)
        assert f"audio preprocessing {LEGACY_PREPROCESSING}" in message and "laion-int16/1" in message
        assert "Re-index the library into a new store: `image2mood index MUSIC_DIR --store NEW`" in message
    finally:
        if client is not None:
            client.close()


def test_bad_vectors_and_ids_are_store_errors(store: SongStore) -> None:
    with pytest.raises(StoreError, match="8-d"):
        store.upsert([song(1, vector=unit(np.ones(DIM + 1)))])
    with pytest.raises(StoreError, match="8-d"):
        store.search(np.ones(DIM - 1, dtype=np.float32))
    with pytest.raises(StoreError, match="NaN"):
        store.upsert([song(1, vector=np.full(DIM, np.nan, dtype=np.float32))])
    with pytest.raises(StoreError, match="no vector"):
        store.upsert([Song(id=song(1).id, path="/x.mp3", content_hash="h", title="x")])
    with pytest.raises(StoreError, match="not a UUID"):
        store.upsert([song(1, id="song-1")])
    assert store.count() == 0  # a bad song fails its whole batch


def test_missing_store_is_not_created(opener: Opener, tmp_path: Path) -> None:
    for kwargs in ({"info": None}, {"info": INFO, "create": False}):
        with pytest.raises(StoreError, match="no store at .*image2mood index"):
            opener(**kwargs)
    assert not (tmp_path / "store").exists()


def test_reopen_keeps_songs_and_info(opener: Opener) -> None:
    with opener() as first:
        first.upsert([song(n) for n in range(3)])
    with opener(info=None) as again:
        assert again.info == INFO
        assert again.count() == 3
        assert again.search(song(2).vector, limit=1)[0].song.id == song(2).id


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="http://127.0.0.1:9/collections/songs"):
        open_store("http://127.0.0.1:9", info=INFO)


# --- embedded only -----------------------------------------------------------------------------


def test_embedded_layout_and_unreadable_info(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    open_store(str(folder), info=INFO).close()
    assert json.loads((folder / "store.json").read_text()) == {
        "clap_model": "test/clap-tiny", "clap_fingerprint": "0123456789abcdef", "dim": 8, "windowing": "6x10.0s",
        "preprocessing": "laion-int16/1"}
    (folder / "store.json").write_text("{not json")
    with pytest.raises(StoreError, match="store.json"):
        open_store(str(folder), info=INFO)


def test_second_open_is_locked_and_leaves_the_first_working(tmp_path: Path) -> None:
    folder = str(tmp_path / "store")
    with open_store(folder, info=INFO) as first:
        first.upsert([song(1)])
        for info in (INFO, None):
            with pytest.raises(StoreLockedError, match=f"{folder}.*another image2mood process"):
                open_store(folder, info=info)
        first.upsert([song(2)])  # a Qdrant Edge load of a folder in use would break this flush; the lock stops it
        assert first.count() == 2
    with open_store(folder, info=INFO) as reopened:
        assert reopened.count() == 2


CHILD = textwrap.dedent(
    """
    import sys, uuid, numpy as np
    from image2mood.store import Song, StoreInfo, open_store
    info = StoreInfo(**{info!r})
    store = open_store({folder!r}, info=info)
    rng = np.random.default_rng(0)
    for batch in range(2):
        songs = []
        for n in range(batch * 50, batch * 50 + 50):
            v = rng.standard_normal({dim}).astype(np.float32)
            songs.append(Song(id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(n))), path=f"/m/{{n}}", content_hash="h",
                              title=f"t{{n}}", artist="a", duration=float(n), vector=v / np.linalg.norm(v)))
        store.upsert(songs)
    print("upserted", flush=True)
    sys.stdin.read()  # hold the store open until killed
    """
)


def test_killed_writer_keeps_its_upserts_and_held_the_lock(tmp_path: Path) -> None:
    folder = str(tmp_path / "store")
    code = CHILD.format(info=INFO.to_dict(), folder=folder, dim=DIM)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "upserted\n"
        with pytest.raises(StoreLockedError, match=folder):
            open_store(folder, info=INFO)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
    with open_store(folder, info=INFO) as store:
        assert store.count() == 100
        stored = {s.id: s for s in store.scroll(with_vectors=True)}
        assert {s.title for s in stored.values()} == {f"t{n}" for n in range(100)}
        assert all(abs(float(np.linalg.norm(s.vector)) - 1) < 1e-5 for s in stored.values())
        assert store.search(next(iter(stored.values())).vector, 1, SongFilter(min_duration=99.0))[0].song.title == "t99"
