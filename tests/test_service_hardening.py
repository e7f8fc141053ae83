"""The service under bad requests: every bad field a 400 naming it, errors with their headers, security
headers, no paths in /api/health, a real `image2mood serve` that survives NaN floods, slow clients and
oversized bodies, and one song shape shared by the API, `recommend --json` and `songs --json`."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotated_types import Ge, Le, MaxLen
from flask.testing import FlaskClient

from conftest import CLI, cli_environment, run_cli, serving
from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from image2mood.store.base import SongFilter
from indexer.pipeline import Indexer
from media import write_tone
from media_images import write_photo
from service.api import model_name
from service.app import create_app
from service.fields import PhotoForm, QueryOptions, SearchQuery

SONGS = 6
UPLOAD_MB = 2


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Settings:
    """Six indexed songs (3 to 5.5 s, two artists), and two closed copies of the store for subprocesses."""
    root = tmp_path_factory.mktemp("hardening")
    for i in range(SONGS):
        write_tone(root / f"song{i}.flac", seconds=3 + 0.5 * i, freq=180 + 90 * i,
                   tags={"title": f"Song {i}", "artist": ("Ana", "Ben")[i % 2], "genre": "Ambient"})
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1)
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root]).indexed == SONGS
    for copy in ("serve-store", "cli-store"):
        shutil.copytree(root / "store", root / copy, ignore=shutil.ignore_patterns("store.lock"))
    return settings


@pytest.fixture(scope="module")
def client(library: Settings) -> Iterator[FlaskClient]:
    app = create_app(library)
    yield app.test_client()
    app.extensions["image2mood"].store.close()


@pytest.fixture(scope="module")
def server(library: Settings, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `image2mood serve` over a copy of the library, with a 2 MB upload limit, as if behind a proxy."""
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_WINDOWS_PER_SONG": "1",
           "IMAGE2MOOD_MAX_UPLOAD_MB": str(UPLOAD_MB), "IMAGE2MOOD_TRUSTED_PROXY": "127.0.0.1"}
    with serving(Path(library.store).with_name("serve-store"), env, tmp_path_factory.mktemp("serve")) as url:
        yield url


def get(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def error_message(response) -> str:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "Traceback" not in response.get_data(as_text=True)
    return response.get_json()["error"]["message"]


# ------------------------------------------------------------------ request fields

BAD_FIELDS = [  # query string, the field the message must name
    ("min_duration=nan", "min_duration"),
    ("max_duration=-inf", "max_duration"),
    ("max_duration=inf", "max_duration"),
    ("min_duration=-1", "min_duration"),
    ("alpha=nan", "alpha"),
    ("alpha=1.5", "alpha"),
    ("mmr=nan", "mmr"),
    ("mmr=-0.1", "mmr"),
    ("top=0", "top"),
    ("top=101", "top"),
    ("top=2.5", "top"),
    ("top=many", "top"),
    ("max_per_artist=0", "max_per_artist"),
    ("max_per_artist=NaN", "max_per_artist"),
    ("min_duration=ten", "min_duration"),
    ("min_duration=10&max_duration=5", "min_duration"),
    ("artist=" + "a" * 1001, "artist"),
]


@pytest.mark.parametrize(("query", "field"), BAD_FIELDS)
def test_every_bad_field_is_a_400_naming_it_on_every_route(client: FlaskClient, query: str, field: str) -> None:
    assert f"'{field}'" in error_message(client.get(f"/api/search?q=rain&{query}"))
    seed = client.get("/api/search?q=rain&top=1").get_json()["songs"][0]["id"]
    assert f"'{field}'" in error_message(client.get(f"/api/songs/{seed}/similar?{query}"))
    form = dict(pair.split("=", 1) for pair in query.split("&"))
    photo = write_photo(Path("p.jpg"), size=(64, 48), color=(90, 120, 200)).read_bytes()
    posted = client.post("/api/recommend", data={"image": (io.BytesIO(photo), "p.jpg"), **form},
                         content_type="multipart/form-data")
    assert f"'{field}'" in error_message(posted)


def test_search_text_is_required_and_good_fields_still_work(client: FlaskClient) -> None:
    for query in ("", "q=", "q=%20%20"):
        assert "'q' is required" in error_message(client.get(f"/api/search?{query}"))
    assert "'q'" in error_message(client.get("/api/search?q=" + "x" * 1001))
    body = client.get("/api/search?q=rain&top=3&min_duration=3.5&max_duration=5&alpha=&mmr=0.5").get_json()
    assert len(body["songs"]) == 3 and all(3.5 <= s["duration"] <= 5 for s in body["songs"])
    equal = client.get("/api/search?q=rain&min_duration=4&max_duration=4").get_json()
    assert [s["duration"] for s in equal["songs"]] == [4.0]


def test_song_filter_refuses_bounds_the_store_cannot_compare() -> None:
    for bounds in ({"min_duration": math.nan}, {"max_duration": math.inf}, {"max_duration": -math.inf},
                   {"min_duration": -1.0}, {"min_duration": 9.0, "max_duration": 3.0}):
        with pytest.raises(ValueError, match="_duration"):
            SongFilter(**bounds)
    assert SongFilter(min_duration=0.0, max_duration=0.0).has_duration_range()


def _constraints(field_name: str) -> dict[str, object]:
    """What the pydantic field itself says, written as JSON-schema keywords."""
    info = QueryOptions.model_fields.get(field_name) or SearchQuery.model_fields[field_name]
    kinds = {int: "integer", float: "number", str: "string"}
    annotation = next(kinds[t] for t in kinds if t in getattr(info.annotation, "__args__", (info.annotation,)))
    expected: dict[str, object] = {"type": annotation}
    for rule in info.metadata:
        if isinstance(rule, Ge):
            expected["minimum"] = rule.ge
        elif isinstance(rule, Le):
            expected["maximum"] = rule.le
        elif isinstance(rule, MaxLen):
            expected["maxLength"] = rule.max_length
    if field_name == "q":
        expected["minLength"] = 1
    return expected


def test_openapi_document_is_generated_from_the_request_models(client: FlaskClient) -> None:
    doc = client.get("/api/openapi.json").get_json()
    paths = doc["paths"]
    search = {p["name"]: p for p in paths["/api/search"]["get"]["parameters"]}
    similar = {p["name"]: p for p in paths["/api/songs/{song_id}/similar"]["get"]["parameters"]}
    form = paths["/api/recommend"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(search) == set(SearchQuery.model_fields)
    assert set(similar) == {"song_id", *QueryOptions.model_fields}
    assert set(form) == {"image", *PhotoForm.model_fields}
    assert form["share_photo"]["type"] == "boolean"
    for name, info in QueryOptions.model_fields.items():
        expected = _constraints(name)
        assert search[name]["schema"] == similar[name]["schema"] == expected, name
        assert {k: v for k, v in form[name].items() if k != "description"} == expected, name
        assert search[name]["description"] == form[name]["description"] == info.description, name
        assert search[name]["required"] is False
    assert search["q"]["required"] is True and search["q"]["schema"] == _constraints("q")
    # the song schema is the song shape every answer uses
    song_schema = doc["components"]["schemas"]["Song"]
    body = client.get("/api/search?q=rain&top=1").get_json()
    assert list(song_schema["properties"]) == song_schema["required"] == list(body["songs"][0])[:7]


# ------------------------------------------------------------------ headers


def test_errors_keep_their_headers_and_odd_ranges_get_the_whole_file(client: FlaskClient) -> None:
    wrong = client.post("/api/search")
    assert wrong.status_code == 405 and wrong.is_json and "GET" in wrong.headers["Allow"]
    url = client.get("/api/search?q=calm&top=1").get_json()["songs"][0]["audio_url"]
    whole = client.get(url).data
    beyond = client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert beyond.status_code == 416 and beyond.is_json
    assert beyond.headers["Content-Range"] == f"bytes */{len(whole)}"
    for odd in ("bytes=abc", "bytes=0-1,5-9", "items=0-5", "bytes=100-50", "bytes="):
        response = client.get(url, headers={"Range": odd})
        assert response.status_code == 200 and response.data == whole, odd
    part = client.get(url, headers={"Range": "bytes=-10"})
    assert part.status_code == 206 and part.data == whole[-10:]


def test_every_response_carries_the_security_headers(client: FlaskClient) -> None:
    page = client.get("/")
    html = page.get_data(as_text=True)
    url = client.get("/api/search?q=calm&top=1").get_json()["songs"][0]["audio_url"]
    responses = [page, client.get("/api/health"), client.get("/static/app.js"), client.get(url),
                 client.get("/api/nowhere"), client.post("/api/health"), client.get("/api/search")]
    for response in responses:
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        policy = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and "blob:" in policy["img-src"]
    # the page needs nothing the policy forbids: no inline script, style or handler
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html)


def test_health_shows_names_not_paths() -> None:
    assert model_name("laion/clap-htsat-unfused") == "laion/clap-htsat-unfused"
    assert model_name("/srv/models/my-clap") == "my-clap" and model_name("~/models/blip") == "blip"


# ------------------------------------------------------------------ a real server


def _server_pid(url: str) -> int:
    """The `image2mood serve` child of this test process that listens on ``url``'s port."""
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == os.getpid() and b"serve" in args and port.encode() in args:
            return int(entry.name)
    raise AssertionError(f"no server process for {url}")


def _rss_peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def _health_seconds(url: str) -> float:
    started = time.monotonic()
    assert get(url + "/api/health", timeout=30)[0] == 200
    return time.monotonic() - started


def test_a_flood_of_nan_requests_leaves_the_server_answering(server: str) -> None:
    answers: list[int] = []

    def nan_request(i: int) -> None:
        field = ("min_duration", "max_duration", "alpha", "mmr")[i % 4]
        try:
            answers.append(get(f"{server}/api/search?q=rain&{field}=nan", timeout=20)[0])
        except OSError as exc:  # a hung or dropped connection is the bug this test is for
            answers.append(-1)
            print(exc, file=sys.stderr)

    threads = [threading.Thread(target=nan_request, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [400] * 30
    assert _health_seconds(server) < 2
    status, body = get(f"{server}/api/search?q=rain&min_duration=3&max_duration=4")
    assert status == 200 and body["songs"] and all(3 <= s["duration"] <= 4 for s in body["songs"])


def test_slow_clients_do_not_lock_others_out(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    slow = []
    try:
        for _ in range(110):  # more than waitress's default connection limit
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        for _ in range(3):
            for sock in slow:  # a byte each, every 2 s: never idle long enough to be closed
                sock.sendall(b"a")
            assert _health_seconds(server) < 2
            time.sleep(2)
    finally:
        for sock in slow:
            sock.close()


def _answer_to(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096)
    except (TimeoutError, ConnectionResetError):
        return b""


def test_a_body_over_the_upload_limit_is_refused_before_it_is_read(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    pid = _server_pid(server)
    peak_before = _rss_peak_mb(pid)
    head = ("POST /api/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n")
    # declared: refused as soon as the headers are in, without waiting for 60 MB
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"{head}Content-Length: {60 * 1024 * 1024}\r\n\r\n".encode() + b"x" * 65536)
        assert _answer_to(sock, 3).startswith(b"HTTP/1.1 413")
    # chunked: refused once the limit is passed, long before 60 MB are sent
    sent, answer, chunk = 0, b"", b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            while sent < 60 * (1 << 20) and not answer:
                sock.sendall(chunk)
                sent += 1 << 20
                sock.setblocking(False)
                try:
                    answer = sock.recv(4096)
                except BlockingIOError:
                    pass
                sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = answer or _answer_to(sock, 3)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 40 * (1 << 20)
    assert _rss_peak_mb(pid) - peak_before < 30
    assert _health_seconds(server) < 2


# ------------------------------------------------------------------ one song shape


def test_recommend_json_songs_json_and_the_api_share_one_song_shape(
        client: FlaskClient, library: Settings, tiny_models: Path, tmp_path: Path) -> None:
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}
    store = str(Path(library.store).with_name("cli-store"))
    photo = write_photo(tmp_path / "photo.jpg", size=(320, 240), color=(200, 90, 40))
    # the real CLI under `python -X importtime`, to see what `recommend` imports
    done = subprocess.run([sys.executable, "-X", "importtime", CLI, "recommend", str(photo), "--json", "--top", "3",
                           "--store", store], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "image2mood.answers" in imported and not {"flask", "werkzeug", "service.api"} & imported
    cli_body = json.loads(done.stdout)
    api_body = client.post("/api/recommend", data={"image": (io.BytesIO(photo.read_bytes()), "photo.jpg"), "top": "3"},
                           content_type="multipart/form-data").get_json()
    assert list(cli_body) == [key for key in api_body if key != "result_id"]  # only the service keeps answers
    assert [list(s) for s in cli_body["songs"]] == [list(s) for s in api_body["songs"]]

    refused = run_cli(["recommend", str(photo), "--alpha", "nan", "--store", store], env, tmp_path)  # the API's checks
    assert refused.returncode == 1 and "'alpha'" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr

    listing = run_cli(["songs", "--json", "--store", store], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    listed = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(listed) == SONGS
    for entry in listed:
        similar = client.get(f"/api/songs/{entry['id']}/similar?top=1").get_json()
        assert similar["song"] == {k: v for k, v in entry.items() if k != "path"}
        assert list(entry) == [*similar["song"], "path"] and Path(entry["path"]).is_file()
        assert list(api_body["songs"][0])[: len(similar["song"])] == list(similar["song"])
