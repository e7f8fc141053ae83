"""Music servers through the Subsonic API, against a real Supysonic server that these tests start.

The server gets a generated library (FLAC, Ogg, MP3, tagged) and a user; the tests index it through
the API, rerun, remove a song on the server, push playlists and read them back, and sign in wrongly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from click.testing import CliRunner

from conftest import CLI, free_port
from image2mood.audio import decode_stream, decode_windows
from image2mood.config import Settings
from image2mood.errors import AudioDecodeError
from image2mood.library import embed, file_facts, prepare, store_info
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from image2mood_cli.main import cli
from image2mood.subsonic import SubsonicClient, SubsonicError, server_song_id
from indexer.pipeline import Indexer
from indexer.subsonic import index_server, server_facts
from media import write_tone
from media_images import write_photo

USER, PASSWORD = "ana", "s3cret pass"
OTHER, OTHER_PASSWORD = "ben", "other pass"  # a second user, whose playlists are not ana's
SONGS = {
    "Weather/rain.flac": {"title": "Rain Song", "artist": "Ana", "album": "Weather", "genre": "Ambient"},
    "Weather/sunset.mp3": {"title": "Sunset Drive", "artist": "Ana", "album": "Weather", "genre": "Pop"},
    "Lights/party.ogg": {"title": "Party Night", "artist": "Ben", "album": "Lights", "genre": "Dance"},
    "Lights/late.flac": {"title": "Late Bus", "artist": "Ben", "album": "Lights", "genre": "Jazz"},
}
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Supysonic:
    url: str
    music: Path
    home: Path
    env: dict[str, str]

    def cli(self, *args: str) -> None:
        subprocess.run([str(BIN / "supysonic-cli"), *args], cwd=self.home, env=self.env, check=True,
                       capture_output=True, timeout=60)

    def rescan(self) -> None:
        self.cli("folder", "scan", "music", "--foreground")

    def client(self, password: str = PASSWORD) -> SubsonicClient:
        return SubsonicClient(self.url, USER, password)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supysonic]:
    """Supysonic on a free loopback port, its config, database and library in a temporary folder."""
    home = tmp_path_factory.mktemp("supysonic")
    music = home / "music"
    for i, (name, tags) in enumerate(SONGS.items()):
        (music / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(music / name, seconds=5 + 4 * i, freq=220 * (i + 1), tags=tags)
    (home / "supysonic.conf").write_text(
        f"[base]\ndatabase_uri = sqlite:///{home}/supysonic.db\n"
        f"[webapp]\ncache_dir = {home}/cache\nmount_webui = no\n"
        f"[daemon]\nsocket = {home}/daemon.sock\nrun_watcher = no\n")
    env = {**os.environ, "HOME": str(home)}  # the config is read from the working folder (and ~)
    port = free_port()
    found = Supysonic(f"http://127.0.0.1:{port}", music, home, env)
    found.cli("user", "add", USER, "-p", PASSWORD)
    found.cli("user", "add", OTHER, "-p", OTHER_PASSWORD)
    found.cli("folder", "add", "music", str(music))
    found.rescan()
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "supysonic-server"), "-S", "waitress", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()
            try:
                httpx.get(found.url + "/rest/ping.view", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (home / "server.log").read_text()
                time.sleep(0.2)
        yield found
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def settings(tiny_models: Path, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"), windows_per_song=2)


def index(server: Supysonic, settings: Settings, warn: list[str] | None = None):
    encoder = clap_encoder(settings)
    with server.client() as client, open_store(settings.store, info=store_info(encoder, settings)) as store:
        report = index_server(Indexer(store, encoder, settings, warn=(warn if warn is not None else []).append),
                              client)
        return report, {song.path: song for song in store.scroll(with_vectors=True)}


def test_indexing_through_the_api_stores_every_song_once_then_nothing(server: Supysonic, settings: Settings) -> None:
    with server.client() as client:
        listed = client.songs()
    assert sorted(song.title for song in listed) == sorted(tags["title"] for tags in SONGS.values())

    report, stored = index(server, settings)
    assert (report.indexed, report.unchanged, report.removed, report.failed) == (len(SONGS), 0, 0, 0)
    assert len(stored) == len(SONGS)
    host = server.url.removeprefix("http://")
    by_title = {song.title: song for song in stored.values()}
    for name, tags in SONGS.items():
        song = by_title[tags["title"]]
        assert (song.artist, song.album, song.genre) == (tags["artist"], tags["album"], tags["genre"])
        server_id = server_song_id(song.path)
        assert song.path == f"subsonic://{host}/{server_id}" and server_id in {s.id for s in listed}
        assert song.content_hash.startswith(f"subsonic:{server_id}:")
        # the stream decoded in memory gives the very vector the file on disk gives
        encoder = clap_encoder(settings)
        from_file = embed(prepare(file_facts(server.music / name), settings, encoder.sample_rate), encoder)
        assert np.array_equal(song.vector, from_file.vector)
        assert song.duration == from_file.duration

    again, _ = index(server, settings)
    assert (again.indexed, again.unchanged, again.removed, again.failed) == (0, len(SONGS), 0, 0)


def test_a_song_removed_on_the_server_is_pruned(server: Supysonic, settings: Settings) -> None:
    doomed = write_tone(server.music / "Lights" / "doomed.flac", seconds=6, freq=880,
                        tags={"title": "Doomed", "artist": "Ben", "album": "Lights"})
    server.rescan()
    try:
        report, stored = index(server, settings)
        assert report.indexed == len(SONGS) + 1 and "Doomed" in {s.title for s in stored.values()}
    finally:
        doomed.unlink()
        server.rescan()
    lines: list[str] = []
    report, stored = index(server, settings, lines)
    assert (report.indexed, report.unchanged, report.removed) == (0, len(SONGS), 1)
    assert "Doomed" not in {s.title for s in stored.values()} and len(stored) == len(SONGS)
    assert any(line.startswith("removing: subsonic://") and "Doomed" in line for line in lines)


def test_a_pushed_playlist_reads_back_in_order_and_is_replaced_by_name(server: Supysonic) -> None:
    with server.client() as client:
        ids = [song.id for song in sorted(client.songs(), key=lambda s: s.title, reverse=True)]
        first = client.push_playlist("image2mood: rainy day", ids)
        assert first.song_ids == tuple(ids) and first.name == "image2mood: rainy day"
        second = client.push_playlist("image2mood: rainy day", ids[2:] + ids[:1])
        assert second.id == first.id and second.song_ids == tuple(ids[2:] + ids[:1])
        assert client.playlist(first.id).song_ids == tuple(ids[2:] + ids[:1])
        assert [p.name for p in client.playlists()].count("image2mood: rainy day") == 1


def test_a_push_replaces_only_the_users_own_playlist_not_another_users_public_one(server: Supysonic) -> None:
    """Supysonic lists another user's public playlist to ana as "[ben] NAME"; ana's playlist of that very
    name is hers to create and replace, and ben's is never touched (other servers list it as plain NAME)."""
    with SubsonicClient(server.url, OTHER, OTHER_PASSWORD) as ben, server.client() as ana:
        ids = [song.id for song in ana.songs()]
        theirs = ben.push_playlist("image2mood: shared", ids[:2])
        ben._call("updatePlaylist", playlistId=theirs.id, public="true")  # ana can now see it
        name = f"[{OTHER}] image2mood: shared"
        listed = ana._call("getPlaylists")["playlists"]["playlist"]
        assert [(p["name"], p["owner"]) for p in listed if p["id"] == theirs.id] == [(name, OTHER)]
        assert name not in [p.name for p in ana.playlists()]  # not hers
        mine = ana.push_playlist(name, ids[1:])
        assert mine.id != theirs.id and mine.song_ids == tuple(ids[1:])
        again = ana.push_playlist(name, ids[:1])
        assert again.id == mine.id and again.song_ids == tuple(ids[:1])
        assert ben.playlist(theirs.id).song_ids == tuple(ids[:2])  # untouched


def test_the_cli_indexes_the_server_beside_a_folder_named_subsonic_and_pushes_an_answer(
        server: Supysonic, tiny_models: Path, tmp_path: Path) -> None:
    env = {"IMAGE2MOOD_MODELS": str(tiny_models), "IMAGE2MOOD_STORE": str(tmp_path / "store"),
           "IMAGE2MOOD_WINDOWS_PER_SONG": "2", "IMAGE2MOOD_SUBSONIC_URL": server.url,
           "IMAGE2MOOD_SUBSONIC_USER": USER, "IMAGE2MOOD_SUBSONIC_PASSWORD": PASSWORD}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "indexed 4, unchanged 0, removed 0, failed 0" in run("index", "subsonic", "-v")
    (tmp_path / "subsonic").mkdir()
    write_tone(tmp_path / "subsonic" / "local.flac", seconds=6, tags={"title": "Local"})
    assert "indexed 1, unchanged 0, removed 0, failed 0" in run("index", "./subsonic")
    refused = runner.invoke(cli, ["index", "subsonic", "./subsonic"], env=env)
    assert refused.exit_code == 2 and "./subsonic" in refused.output

    answer = json.loads(run("recommend", str(write_photo(tmp_path / "photo.jpg")), "--json", "--push", "Photo"))
    with open_store(env["IMAGE2MOOD_STORE"], info=None, create=False) as store:
        paths = [song.path for song in store.get([song["id"] for song in answer["songs"]])]
    assert len(paths) == len(SONGS) + 1
    expected = tuple(server_song_id(path) for path in paths if server_song_id(path))
    with server.client() as client:
        pushed = next(p for p in client.playlists() if p.name == "Photo")
        assert client.playlist(pushed.id).song_ids == expected and len(expected) == len(SONGS)


def test_the_login_tries_a_salted_token_first_and_the_password_only_when_tokens_are_refused(
        server: Supysonic) -> None:
    sent: list[httpx.URL] = []
    with server.client() as client:
        client._http.event_hooks["request"].append(lambda request: sent.append(request.url))
        client.ping()
        client.ping()
    first, fallback, later = (dict(url.params) for url in sent)
    assert "p" not in first and first["t"] == hashlib.md5((PASSWORD + first["s"]).encode()).hexdigest()
    assert first["u"] == USER and first["c"] == "image2mood" and first["f"] == "json"
    assert fallback["p"] == later["p"] == "enc:" + PASSWORD.encode().hex() and "t" not in fallback  # Supysonic 0.7.9


def test_a_wrong_password_is_one_clear_line(server: Supysonic) -> None:
    with server.client("wrong") as client, pytest.raises(SubsonicError) as caught:
        client.ping()
    assert str(caught.value) == (f"the Subsonic server at {server.url} refused user {USER}: wrong username or "
                                 "password (error 40); fix IMAGE2MOOD_SUBSONIC_USER/_PASSWORD")

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE2MOOD_")}
    env.update(IMAGE2MOOD_SUBSONIC_URL=server.url, IMAGE2MOOD_SUBSONIC_USER=USER,
               IMAGE2MOOD_SUBSONIC_PASSWORD="wrong", HF_HUB_OFFLINE="1")
    done = subprocess.run([CLI, "index", "subsonic"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {caught.value}"]


def test_a_server_that_is_not_there_or_not_subsonic_is_a_clear_error(server: Supysonic) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with SubsonicClient(closed, USER, PASSWORD) as client, pytest.raises(SubsonicError, match="cannot reach"):
        client.ping()
    with SubsonicClient(server.url + "/nothing", USER, PASSWORD) as client, \
            pytest.raises(SubsonicError, match="did not answer ping as a Subsonic server"):
        client.ping()
    with pytest.raises(SubsonicError, match="needs a login"):
        SubsonicClient(server.url, USER, None)
    with pytest.raises(SubsonicError, match="http"):
        SubsonicClient("music.example.org", USER, PASSWORD)


def test_a_stream_decodes_as_its_file_and_errors_name_the_song(tmp_path: Path) -> None:
    song = write_tone(tmp_path / "song.m4a", seconds=14, freq=330)  # ffmpeg's path, which reads it twice
    chunks = [song.read_bytes()[i:i + 4096] for i in range(0, song.stat().st_size, 4096)]
    streamed, direct = decode_stream(chunks, "subsonic://x/1", max_windows=2), decode_windows(song, max_windows=2)
    assert streamed.duration == direct.duration
    assert all(np.array_equal(a, b) for a, b in zip(streamed.windows, direct.windows, strict=True))
    with pytest.raises(AudioDecodeError, match=r"subsonic://x/2") as caught:
        decode_stream([b"not music at all" * 100], "subsonic://x/2")
    assert "/proc/" not in str(caught.value)


def test_server_facts_are_stable_and_name_the_server(server: Supysonic) -> None:
    with server.client() as client, server.client() as other:
        song = client.songs()[0]
        assert server_facts(client, song) == server_facts(other, song)
        facts = server_facts(client, song)
    assert server_song_id(str(facts.path)) == song.id and server_song_id("/music/a.flac") is None


def test_the_service_relays_a_server_song_with_its_byte_range_and_never_the_login(
        server: Supysonic, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.app import create_app

    _, stored = index(server, settings)
    configured = settings.model_copy(update={"subsonic_url": server.url, "subsonic_user": USER,
                                             "subsonic_password": SecretStr(PASSWORD)})
    app = create_app(configured)
    try:
        client = app.test_client()
        song = next(s for s in stored.values() if s.title == "Rain Song")
        original = (server.music / "Weather" / "rain.flac").read_bytes()

        whole = client.get(f"/audio/{song.id}")
        assert whole.status_code == 200 and whole.data == original
        assert whole.headers["Content-Type"] == "audio/flac"
        part = client.get(f"/audio/{song.id}", headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.data == original[100:1100]
        assert part.headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
        beyond = client.get(f"/audio/{song.id}", headers={"Range": f"bytes={len(original) + 10}-"})
        assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(original)}"
        for answer in (whole, part, beyond):
            seen = str(answer.headers) + (answer.get_data(as_text=True) if answer.status_code >= 400 else "")
            assert PASSWORD not in seen and PASSWORD.encode().hex() not in seen and "/rest/" not in seen

        recommender = app.extensions["image2mood"]
        monkeypatch.setattr(recommender, "settings", settings)  # no server configured any more
        gone = client.get(f"/audio/{song.id}")
        assert gone.status_code == 404 and "IMAGE2MOOD_SUBSONIC_URL" in gone.get_json()["error"]["message"]
    finally:
        app.extensions["image2mood"].store.close()


def test_the_page_api_pushes_a_kept_answer_to_the_server(server: Supysonic, settings: Settings) -> None:
    """POST /api/results/<id>/push (the page's "Send to my server"): the answer's songs, in order, as a
    playlist on the server; bad names, unknown answers and a service without a server are clear 4xx."""
    from service.app import create_app

    index(server, settings)
    configured = settings.model_copy(update={"subsonic_url": server.url, "subsonic_user": USER,
                                             "subsonic_password": SecretStr(PASSWORD)})
    app = create_app(configured)
    try:
        client = app.test_client()
        assert client.get("/api/health").get_json()["music_server"] is True
        answer = client.get("/api/search?q=rain&top=3").get_json()
        stored = app.extensions["image2mood"].find([song["id"] for song in answer["songs"]])
        wanted = [server_song_id(song.path) for song in stored]
        pushed = client.post(f"/api/results/{answer['result_id']}/push", data={"name": "image2mood: rain"})
        assert pushed.status_code == 200, pushed.get_json()
        assert pushed.get_json() == {"name": "image2mood: rain", "songs": len(wanted)}
        with server.client() as subsonic:
            playlist = next(p for p in subsonic.playlists() if p.name == "image2mood: rain")
            assert subsonic.playlist(playlist.id).song_ids == tuple(wanted)

        blank = client.post(f"/api/results/{answer['result_id']}/push", data={"name": "   "})
        assert blank.status_code == 400 and "'name'" in blank.get_json()["error"]["message"]
        unknown = client.post("/api/results/AAAAAAAAAAAAAAAAAAAAAA/push", data={"name": "x"})
        assert unknown.status_code == 404
        app.extensions["image2mood"].settings = settings  # no server configured
        assert client.post(f"/api/results/{answer['result_id']}/push", data={"name": "x"}).status_code == 404
    finally:
        app.extensions["image2mood"].store.close()
