"""The service probe's second round (issue 20, item 7), its medium, low and informational findings, each
against the real part: the Flask app (tiny models, an indexed library), a real `image2mood serve` for
waitress's own answers, and a real Supysonic server (test_subsonic's) for the music-server findings.

- answers are held in memory and written only when kept (page, playlist, push, POST .../keep); the
  results folder is capped in count and bytes, oldest out first;
- a music server's errors reach the browser as one generic line, and its address (with any login in
  it) shows redacted on the command line; its redirects are refused, so /audio relays no other host;
- the photo memo answers only the client that sent the photo;
- no C1 control or Unicode line separator makes a new M3U8 line;
- waitress's own 413 and 400 carry the security headers, /tune names no path of this machine, and
  IMAGE2MOOD_PUBLIC_URL, when set, makes the playlist URLs and og:url (not the Host header).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from PIL import Image
from pydantic import SecretStr

from conftest import cli_environment, serving
from image2mood import playlists
from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.results import ResultStore, SavedResult, new_id
from image2mood.store import open_store
from image2mood.subsonic import SubsonicClient, SubsonicError, redact_url
from image2mood_cli.main import cli
from indexer.pipeline import Indexer
from indexer.subsonic import index_server
from media import write_tone
from media_images import write_photo
from service.app import MUSIC_SERVER_ERROR, SECURITY_HEADERS, create_app
from test_subsonic import PASSWORD, USER, Supysonic, server  # noqa: F401  (server is a fixture)

PUBLIC = "https://mood.example.org"
EVIL_TITLE = "Rain\x85#EXTINF:1,Evil\x85http://evil.example/x.mp3"
KEPT_MAX = 3
LEAKED = "hunter2-S3CRET"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Settings:
    """Four indexed songs (one titled to break an M3U8 line), at most three kept answers, a public URL."""
    root = tmp_path_factory.mktemp("probe2")
    titles = ["Calm Sea", "Late Bus", "Party Night", EVIL_TITLE]
    (root / "music").mkdir()
    for i, title in enumerate(titles):
        write_tone(root / "music" / f"song{i}.flac", seconds=3 + 0.5 * i, freq=200 + 110 * i,
                   tags={"title": title, "artist": ("Ana", "Ben\u2028#EXTM3U")[i % 2]})
    (root / "reports").mkdir()
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1,
                        results=root / "results", results_max_count=KEPT_MAX, public_url=PUBLIC + "/",
                        tune_reports=root / "reports")
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root / "music"]).indexed == 4
    shutil.copytree(root / "store", root / "serve-store", ignore=shutil.ignore_patterns("store.lock"))
    return settings


@pytest.fixture(scope="module")
def app(library: Settings) -> Iterator[Flask]:
    app = create_app(library)
    yield app
    app.extensions["image2mood"].store.close()


def kept_ids(library: Settings) -> set[str]:
    return {path.stem for path in library.results.glob("*")}


def photo_bytes(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(out, "JPEG")
    return out.getvalue()


# ---------------------------------------------------------------- medium: kept answers fill the disk


def test_answers_are_written_only_when_kept_and_the_folder_keeps_the_newest(app: Flask, library: Settings) -> None:
    web = app.test_client()
    ids = [web.get(f"/api/search?q=rain%20number%20{i}&top=2").get_json()["result_id"] for i in range(12)]
    song = web.get("/api/search?q=sea").get_json()["songs"][0]["id"]
    ids.append(web.get(f"/api/songs/{song}/similar").get_json()["result_id"])
    ids.append(web.post("/api/recommend", data={"image": (io.BytesIO(photo_bytes((9, 99, 199))), "p.jpg")},
                        content_type="multipart/form-data").get_json()["result_id"])
    assert kept_ids(library) == set()  # fourteen answers, nothing on disk

    assert web.get(f"/r/{ids[0]}").status_code == 200  # its share page: kept
    assert web.get(f"/api/results/{ids[1]}/playlist.m3u8").status_code == 200  # its playlist: kept
    kept = web.post(f"/api/results/{ids[-1]}/keep")
    assert kept.status_code == 200 and kept.get_json()["page"] == f"{PUBLIC}/r/{ids[-1]}"
    assert kept_ids(library) == {ids[0], ids[1], ids[-1]}
    assert web.post(f"/api/results/{new_id()}/keep").status_code == 404
    assert web.get(f"/r/{ids[0]}").status_code == 200  # a kept answer stays kept

    # The folder is full (IMAGE2MOOD_RESULTS_MAX_COUNT=3): the next one kept pushes the oldest out.
    now = time.time()
    for age, result_id in enumerate((ids[-1], ids[1], ids[0])):
        os.utime(library.results / f"{result_id}.json", (now - 10 * (age + 1),) * 2)  # ids[0] the oldest
    assert web.post(f"/api/results/{ids[2]}/keep").status_code == 200
    assert kept_ids(library) == {ids[1], ids[2], ids[-1]}
    assert web.get(f"/r/{ids[0]}").status_code == 404


def saved(size: int = 0) -> SavedResult:
    return SavedResult(id=new_id(), created=time.time(), route="text", moods=[], vector=[0.0] * size, songs=[])


def test_the_results_folder_is_capped_in_bytes_oldest_out_first(tmp_path: Path) -> None:
    probe = ResultStore(tmp_path / "probe", ttl_hours=1)
    one = probe.save(saved(size=2000))
    file_size = (probe.folder / f"{one.id}.json").stat().st_size
    store = ResultStore(tmp_path / "results", ttl_hours=1, max_bytes=int(2.5 * file_size))
    first, second = store.save(saved(size=2000)), store.save(saved(size=2000))
    os.utime(store.folder / f"{first.id}.json", (time.time() - 60,) * 2)
    third = store.save(saved(size=2000))
    assert {p.stem for p in store.folder.iterdir()} == {second.id, third.id}
    assert store.get(first.id) is None and store.get(third.id) == third
    # One answer larger than the cap is still kept: the one just written never goes.
    small = ResultStore(tmp_path / "small", ttl_hours=1, max_bytes=10)
    assert small.save(saved(size=2000)) and len(list(small.folder.iterdir())) == 1


def test_held_answers_are_few_and_a_forgotten_one_is_not_kept(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results", ttl_hours=1, held=2)
    first, second, third = (store.hold(saved()) for _ in range(3))
    assert store.keep(first.id) is None  # forgotten: held ones are the last two
    assert store.keep(third.id) == third and store.keep(second.id) == second
    assert {p.stem for p in store.folder.iterdir()} == {second.id, third.id}
    assert store.keep("../../etc/passwd") is None


def test_settings_cap_the_kept_answers() -> None:
    settings = Settings(_env_file=None, results_max_count=7, results_max_mb=1.5)
    store = ResultStore.configured(settings)
    assert store.max_count == 7 and store.max_bytes == int(1.5 * (1 << 20))


# ---------------------------------------------------------------- medium: the push error showed the server


def index_through(client: SubsonicClient, settings: Settings) -> None:
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        index_server(Indexer(store, encoder, settings, warn=lambda line: None), client)


def test_music_server_errors_never_show_its_address_or_login(
        server: Supysonic, tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"), windows_per_song=1,
                        results=tmp_path / "results")
    with server.client() as client:
        index_through(client, settings)
    host = server.url.removeprefix("http://")
    with_login = f"http://{USER}:{LEAKED}@{host}"
    # A login in the address goes into no stored song path: songs indexed without it still match.
    assert SubsonicClient(with_login, USER, PASSWORD).song_uri("7") == server.client().song_uri("7")
    assert redact_url(with_login) == f"http://***@{host}"

    not_subsonic = f"{with_login}/not-here"  # the same host (its songs match), no Subsonic API under it
    for url, password in ((with_login, "wrong"), (not_subsonic, PASSWORD)):
        app = create_app(settings.model_copy(update={"subsonic_url": url, "subsonic_user": USER,
                                                     "subsonic_password": SecretStr(password)}))
        try:
            web = app.test_client()
            answer = web.get("/api/search?q=rain&top=3").get_json()
            caplog.clear()
            with caplog.at_level(logging.ERROR):
                pushed = web.post(f"/api/results/{answer['result_id']}/push", data={"name": "rain"})
            relayed = web.get(f"/audio/{answer['songs'][0]['id']}")
            assert pushed.status_code == 502 and pushed.get_json()["error"]["message"] == MUSIC_SERVER_ERROR
            assert relayed.status_code == 502
            for seen in (pushed, relayed):
                text = str(seen.headers) + seen.get_data(as_text=True)
                assert LEAKED not in text and "127.0.0.1" not in text and host not in text
            logged = caplog.text  # the log says why, the login redacted
            assert "***@127.0.0.1" in logged and LEAKED not in logged
        finally:
            app.extensions["image2mood"].store.close()

    # The command line shows the address, its login redacted.
    env = {"IMAGE2MOOD_MODELS": str(tiny_models), "IMAGE2MOOD_STORE": settings.store,
           "IMAGE2MOOD_WINDOWS_PER_SONG": "1", "IMAGE2MOOD_SUBSONIC_URL": with_login,
           "IMAGE2MOOD_SUBSONIC_USER": USER, "IMAGE2MOOD_SUBSONIC_PASSWORD": "wrong"}
    result = CliRunner().invoke(cli, ["recommend", str(write_photo(tmp_path / "photo.jpg")), "--push", "x"], env=env)
    assert isinstance(result.exception, SubsonicError), result.output
    assert f"***@{host}" in str(result.exception) and LEAKED not in str(result.exception) + result.output


# ---------------------------------------------------------------- low: redirects were followed


class _Evil(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"EVIL-BODY")

    def log_message(self, *args: object) -> None:
        pass


def _front(upstream: str, evil: str) -> type[BaseHTTPRequestHandler]:
    """A front for the music server: the API passed through (downloads too, for indexing), but streams
    redirected to ``evil``, and every call under /moved redirected to the server itself."""

    class Front(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith(("/rest/stream", "/moved/")):
                target = evil + "/song.mp3" if self.path.startswith("/rest/") else upstream + self.path[6:]
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = httpx.get(upstream + self.path)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: object) -> None:
            pass

    return Front


@pytest.fixture
def front(server: Supysonic) -> Iterator[str]:  # noqa: F811
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Evil)]
    evil = f"http://127.0.0.1:{servers[0].server_port}"
    servers.append(ThreadingHTTPServer(("127.0.0.1", 0), _front(server.url, evil)))
    for each in servers:
        threading.Thread(target=each.serve_forever, daemon=True).start()
    _Evil.hits = 0
    yield f"http://127.0.0.1:{servers[1].server_port}"
    for each in servers:
        each.shutdown()
        each.server_close()


def test_music_server_redirects_are_refused_and_audio_relays_no_other_host(
        front: str, tiny_models: Path, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"), windows_per_song=1,
                        results=tmp_path / "results", subsonic_url=front, subsonic_user=USER,
                        subsonic_password=SecretStr(PASSWORD))
    with SubsonicClient(front, USER, PASSWORD) as client:
        index_through(client, settings)  # the API through the front works
    app = create_app(settings)
    try:
        web = app.test_client()
        song = web.get("/api/search?q=rain&top=1").get_json()["songs"][0]
        relayed = web.get(f"/audio/{song['id']}")
        assert relayed.status_code == 502 and b"EVIL" not in relayed.data
    finally:
        app.extensions["image2mood"].store.close()
    assert _Evil.hits == 0  # the song's redirect was not followed
    with SubsonicClient(front + "/moved", USER, PASSWORD) as moved, pytest.raises(SubsonicError) as refused:
        moved.ping()
    message = str(refused.value)
    assert "redirects ping to http://127.0.0.1" in message and "IMAGE2MOOD_SUBSONIC_URL" in message


# ---------------------------------------------------------------- low: the photo memo told of others' photos


def test_the_photo_memo_answers_only_the_client_that_sent_the_photo(app: Flask) -> None:
    photo = photo_bytes((201, 57, 13))

    def timings(client: str) -> dict[str, float]:
        web = app.test_client()
        web.environ_base["REMOTE_ADDR"] = client
        answer = web.post("/api/recommend", data={"image": (io.BytesIO(photo), "p.jpg")},
                          content_type="multipart/form-data")
        return answer.get_json()["timings_ms"]

    first = timings("10.0.0.1")
    other = timings("10.0.0.2")
    again = timings("10.0.0.1")
    assert first["caption"] > 0 and first["clip"] > 0
    assert other["caption"] > 0 and other["clip"] > 0  # another client's photo: the models ran
    assert again["caption"] == 0 and again["clip"] == 0  # the same client: remembered


# ---------------------------------------------------------------- low: C1 controls in M3U8


def test_no_control_character_makes_a_new_m3u8_line(app: Flask) -> None:
    tracks = [playlists.Entry("/music/a\x85b.flac", EVIL_TITLE, "Ana\u2028#EXTM3U\u2029x", 3.0),
              playlists.Entry("http://host/audio/1\x85http://evil/x", "T\x1b[31m\u202eX\r\nY\x0b\x0c\x1c", None, 0),
              playlists.Entry("/music/c.flac", "Fine", "Ben\x9b2J", 5.0)]
    text = playlists.m3u8(tracks, title="Title\x85#EXTINF:0,evil")
    lines = text.splitlines()  # Python's line breaks: every C0/C1 separator, NEL, U+2028/2029
    assert len(lines) == 2 + 2 * len(tracks), lines
    assert lines[1].startswith("#PLAYLIST:Title") and all(line.startswith("#EXTINF:") for line in lines[2::2])
    assert lines[3] == Path("/music/a\x85b.flac").as_uri() and lines[5] == "http://host/audio/1%C2%85http://evil/x"
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", text)

    web = app.test_client()
    answer = web.get("/api/search?q=rain&top=4").get_json()
    served = web.get(f"/api/results/{answer['result_id']}/playlist.m3u8").get_data(as_text=True)
    served_lines = served.splitlines()  # a served song is three lines: #EXTINF, its highlight's start, its URL
    assert len(served_lines) == 2 + 3 * 4 and "\x85" not in served and "\u2028" not in served, served_lines
    assert [line.split(":", 1)[0] for line in served_lines[2:5]] == ["#EXTINF", "#EXTVLCOPT", "https"]


# ---------------------------------------------------------------- informational


def test_the_public_url_makes_playlist_urls_and_og_url_not_the_host_header(app: Flask, library: Settings) -> None:
    web = app.test_client()
    answer = web.get("/api/search?q=sea&top=2").get_json()
    evil = {"Host": "evil.example"}
    m3u = web.get(f"/api/results/{answer['result_id']}/playlist.m3u8", headers=evil).get_data(as_text=True)
    locations = [line for line in m3u.splitlines() if not line.startswith("#")]
    assert locations == [f"{PUBLIC}/audio/{song['id']}" for song in answer["songs"]]
    page = web.get(f"/r/{answer['result_id']}", headers=evil).get_data(as_text=True)
    assert f'<meta property="og:url" content="{PUBLIC}/r/{answer["result_id"]}">' in page
    assert "evil.example" not in page + m3u
    recommender = app.extensions["image2mood"]
    recommender.settings = library.model_copy(update={"public_url": None})  # unset: the Host, as before
    try:
        m3u = web.get(f"/api/results/{answer['result_id']}/playlist.m3u8", headers=evil).get_data(as_text=True)
        assert f"http://evil.example/audio/{answer['songs'][0]['id']}" in m3u
    finally:
        recommender.settings = library
    with pytest.raises(ValueError, match="public_url"):
        Settings(_env_file=None, public_url="mood.example.org")


def test_tune_names_no_path_of_this_machine(app: Flask, library: Settings) -> None:
    page = app.test_client().get("/tune")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and str(library.tune_reports) not in text
    assert str(library.tune_reports.parent) not in text and "reports" in text


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.settimeout(5)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def test_waitress_own_errors_carry_the_security_headers(library: Settings, tiny_models: Path, tmp_path: Path) -> None:
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_WINDOWS_PER_SONG": "1", "IMAGE2MOOD_MAX_UPLOAD_MB": "1"}
    with serving(Path(library.store).with_name("serve-store"), env, tmp_path) as url:
        too_big = _raw(url, b"POST /api/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                            b"boundary=b\r\nContent-Length: 62914560\r\n\r\n" + b"x" * 4096)
        malformed = _raw(url, b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
    assert too_big.startswith(b"HTTP/1.1 413 ") and re.match(rb"HTTP/1\.[01] 400 ", malformed), (too_big, malformed)
    for answer in (too_big, malformed):
        head = answer.split(b"\r\n\r\n")[0].decode("latin-1")
        for name, value in SECURITY_HEADERS.items():
            assert f"\r\n{name}: {value}" in head, (name, head)
