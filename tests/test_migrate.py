"""`store migrate`: embedded store ⇄ Qdrant collection (qdrant-client's local mode on disk), resumable and verified."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from conftest import run_cli
from image2mood.errors import StoreError, StoreMismatchError
from image2mood.store import Song, SongStore, StoreInfo, open_store
from image2mood.store.migrate import migrate, open_target
from image2mood.store.server import ServerStore

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant"),
]

DIM = 8
INFO = StoreInfo.from_dict({"clap_model": "test/clap-tiny", "dim": DIM, "windowing": "6x10.0s",
                            "preprocessing": "laion-int16/1"})
OTHER = StoreInfo.from_dict({**INFO.to_dict(), "clap_model": "test/clap-other"})
SONGS = 23


def make_song(n: int, version: int = 0) -> Song:
    """Song ``n`` with every payload field filled in (or left empty) and a random unit vector."""
    vector = np.random.default_rng(1000 * version + n).standard_normal(DIM).astype(np.float32)
    return Song(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"song-{n}")),
        path=f"/music/{n:03d} ♪.flac",
        content_hash=f"hash{n}-{version}",
        title=f"Song {n}",
        artist=None if n % 5 == 0 else f"Artist {n % 3}",
        album=f"Album {n % 4}",
        genre=None if n % 2 else "ambient",
        duration=30.0 + n * 1.25,
        vector=vector / np.linalg.norm(vector),
    )


def embedded(folder: Path, songs: int = SONGS, info: StoreInfo = INFO) -> SongStore:
    store = open_store(str(folder), info=info)
    store.upsert([make_song(n) for n in range(songs)])
    return store


@pytest.fixture
def local_qdrant(tmp_path: Path) -> Iterator[ServerStore]:
    """A collection in qdrant-client's local mode on disk, through the server adapter."""
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = ServerStore(str(tmp_path / "qdrant"), info=INFO, client=client)
    yield store
    client.close()


def everything(store: SongStore) -> dict[str, Song]:
    return {song.id: song for song in store.scroll(with_vectors=True)}


def assert_same_songs(a: SongStore, b: SongStore) -> None:
    songs_a, songs_b = everything(a), everything(b)
    assert songs_a == songs_b  # ids and payloads
    for key, song in songs_a.items():
        np.testing.assert_allclose(songs_b[key].vector, song.vector, rtol=0, atol=1e-6)


def test_round_trip_embedded_to_local_qdrant_and_back(tmp_path: Path) -> None:
    with embedded(tmp_path / "first") as source:
        client = QdrantClient(path=str(tmp_path / "qdrant"))
        with ServerStore(str(tmp_path / "qdrant"), info=source.info, client=client) as server:
            report = migrate(source, server, batch=5)
            assert (report.copied, report.unchanged, report.removed, report.verified) == (SONGS, 0, 0, SONGS)
            assert_same_songs(source, server)
        client.close()
        # the collection is on disk: reopened as it is, it knows what built it and goes back
        client = QdrantClient(path=str(tmp_path / "qdrant"))
        with ServerStore(str(tmp_path / "qdrant"), info=None, create=False, client=client) as server:
            assert server.info == INFO
            with open_target(str(tmp_path / "back"), server) as back:
                assert migrate(server, back).copied == SONGS
                assert back.info == INFO
                assert_same_songs(source, back)
                query = make_song(99).vector
                assert [h.song.id for h in back.search(query, 5)] == [h.song.id for h in source.search(query, 5)]
        client.close()
    assert (tmp_path / "back" / "store.json").is_file()


def test_an_interrupted_migration_resumes_with_what_is_missing(tmp_path: Path, local_qdrant: ServerStore) -> None:
    class PowerCut(Exception):
        pass

    def cut_after_two_batches(copied: int) -> None:
        if copied >= 10:
            raise PowerCut

    with embedded(tmp_path / "source") as source:
        with pytest.raises(PowerCut):
            migrate(source, local_qdrant, batch=5, on_batch=cut_after_two_batches)
        assert local_qdrant.count() == 10  # two durable batches

        seen: list[int] = []
        report = migrate(source, local_qdrant, batch=5, on_batch=seen.append)
        assert (report.copied, report.unchanged) == (SONGS - 10, 10)
        assert seen == [5, 10, 13]
        assert_same_songs(source, local_qdrant)

        # a song changed in the source since: only it is copied again
        source.upsert([make_song(4, version=1)])
        report = migrate(source, local_qdrant)
        assert (report.copied, report.unchanged) == (1, SONGS - 1)
        assert_same_songs(source, local_qdrant)


def test_songs_only_the_target_holds_are_refused_or_pruned(tmp_path: Path, local_qdrant: ServerStore) -> None:
    with embedded(tmp_path / "source") as source:
        stray = make_song(500)
        local_qdrant.upsert([stray])
        with pytest.raises(StoreError, match=r"holds 1 songs the source .* does not \(e\.g\. /music/500 ♪\.flac\).*--prune"):
            migrate(source, local_qdrant)
        assert local_qdrant.count() == 1  # nothing written before the refusal
        report = migrate(source, local_qdrant, prune=True)
        assert (report.copied, report.removed) == (SONGS, 1)
        assert local_qdrant.get([stray.id]) == []
        assert_same_songs(source, local_qdrant)


def test_verification_catches_a_vector_that_differs(tmp_path: Path, local_qdrant: ServerStore) -> None:
    with embedded(tmp_path / "source") as source:
        migrate(source, local_qdrant)
        original = make_song(7)
        bent = original.vector.copy()
        bent[0] += 1e-3
        local_qdrant.upsert([Song(**{**original.to_payload(), "id": original.id}, vector=bent / np.linalg.norm(bent))])
        with pytest.raises(StoreError, match=r"/music/007 ♪\.flac .* has another vector"):
            migrate(source, local_qdrant, sample=SONGS)  # the payload is the same, so nothing is recopied


def test_a_target_built_by_another_model_is_refused(tmp_path: Path) -> None:
    open_store(str(tmp_path / "other"), info=OTHER).close()
    with embedded(tmp_path / "source") as source:
        with pytest.raises(StoreMismatchError, match=r"cannot migrate .* built with CLAP model 'test/clap-other'.*"
                                                       r"the source with CLAP model 'test/clap-tiny'.*--to NEW_DIR"):
            open_target(str(tmp_path / "other"), source)
    with open_store(str(tmp_path / "other"), info=None, create=False) as other:
        assert other.info == OTHER and other.count() == 0


def test_a_store_is_not_migrated_into_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with embedded(tmp_path / "source") as source:
        with pytest.raises(StoreError, match="the source and the target are the same store"):
            open_target("./nested/../source", source)
    client = QdrantClient(location=":memory:")  # one server, named by its URL, opened twice
    with ServerStore("http://qdrant:6333", info=INFO, client=client) as a, \
            ServerStore("http://qdrant:6333/", info=INFO, client=client) as b:
        with pytest.raises(StoreError, match="the source and the target are the same store"):
            migrate(a, b)
        with ServerStore("http://qdrant:6333", info=INFO, collection="copy", client=client) as c:
            a.upsert([make_song(1)])
            assert migrate(a, c).copied == 1


def test_cli_migrates_an_embedded_store_and_reruns_cleanly(tmp_path: Path, cli_env: dict[str, str]) -> None:
    embedded(tmp_path / "source").close()
    args = ["store", "migrate", "--store", str(tmp_path / "source"), "--to", str(tmp_path / "copy"), "--batch", "7"]
    first = run_cli(args, cli_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"copied {SONGS}, already there 0, removed 0; verified: equal counts, {SONGS} sampled songs" in first.stdout
    again = run_cli(args, cli_env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"copied 0, already there {SONGS}" in again.stdout
    with open_store(str(tmp_path / "source"), info=None, create=False) as source, \
            open_store(str(tmp_path / "copy"), info=None, create=False) as copy:
        assert copy.info == source.info
        assert_same_songs(source, copy)

    memory = run_cli(["store", "migrate", "--store", str(tmp_path / "source"), "--to", ":memory:"], cli_env, tmp_path)
    assert memory.returncode == 0, memory.stderr
    assert f"copied {SONGS}" in memory.stdout


def test_cli_errors_are_one_clear_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    embedded(tmp_path / "source").close()
    open_store(str(tmp_path / "other"), info=OTHER).close()
    cases = {
        str(tmp_path / "source"): "the source and the target are the same store",
        str(tmp_path / "other"): "cannot migrate",
    }
    for target, message in cases.items():
        result = run_cli(["store", "migrate", "--store", str(tmp_path / "source"), "--to", target], cli_env, tmp_path)
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr
    missing = run_cli(["store", "migrate", "--store", str(tmp_path / "nothing"), "--to", str(tmp_path / "x")],
                      cli_env, tmp_path)
    assert missing.returncode == 1 and "no store at" in missing.stderr
    assert not (tmp_path / "x").exists()
