"""Kept answers: the result store (ids, expiry, sweep, no traversal), and against the real server
(`image2mood serve`, tiny models, a subprocess): result_id and mood-map places in the JSON answer,
playlists from the API, the shared page /r/<id> in headless Chromium (screenshots in test-artifacts/
share.png and share-page.png), 404s for unknown and expired ids, and no trace of the photo on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import m3u8
import numpy as np
import pytest
from PIL import Image

from conftest import cli_environment, post_multipart, run_cli, serving
from image2mood.config import Settings
from image2mood.images import load_configured_photo
from image2mood.photo_memo import photo_key
from image2mood.results import ResultStore, SavedResult, new_id, thumbnail_jpeg, valid_id
from media import write_tone
from test_playlists import parse_xspf
from test_web import ARTIFACTS, browser, by_css, screenshot, wait  # noqa: F401  (browser is a fixture)

SONGS = [("Rain Song", "Ana", 220), ("Party <Night>", "Ben & Co", 330), ("비 오는 거리", "민지", 440)]


def saved(created: float | None = None, thumbnail: bytes | None = None) -> SavedResult:
    return SavedResult(id=new_id(), created=time.time() if created is None else created, route="text",
                       moods=[{"key": "calm", "en": "calm", "ko": "차분한", "score": 0.3}], vector=[0.6, 0.8],
                       songs=[{"id": "6f1c1f4e-0000-4000-8000-000000000001", "score": 0.5, "moods": [],
                               "valence": 0.2, "arousal": -0.4}], query="rain", valence=0.1, arousal=0.2,
                       thumbnail=thumbnail)


# ---------------------------------------------------------------- the result store


def test_ids_are_random_128_bit_and_strictly_checked() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_id(i) and len(i) == 22 for i in ids)
    for bad in ("", "..", "../../etc/passwd", "a" * 21, "a" * 23, "a" * 21 + "/", "a" * 21 + ".", "ａ" * 22,
                "a" * 21 + "\n", "%2e%2e%2fsecret" + "a" * 7):
        assert not valid_id(bad), bad


def test_round_trip_expiry_and_sweep(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results", ttl_hours=1)
    fresh = store.save(saved(thumbnail=b"\xff\xd8jpeg"))
    assert store.get(fresh.id) == fresh and store.get(fresh.id).thumbnail == b"\xff\xd8jpeg"
    old = store.save(saved(created=time.time() - 3601))
    assert store.get(old.id) is None  # expired: never served, even before a sweep
    os.utime(store.folder / f"{old.id}.json", (time.time() - 3601,) * 2)
    assert store.sweep() == 1
    assert sorted(p.name for p in store.folder.iterdir()) == [f"{fresh.id}.json"]  # no temporary files left
    assert store.get(new_id()) is None


def test_a_malformed_id_never_reaches_the_disk(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results", ttl_hours=1)
    outside = saved()
    (tmp_path / "secret.json").write_text(json.dumps(outside.to_json()))
    store.save(saved())
    assert store.get("../secret") is None and store.get(str(tmp_path / "secret")) is None


def test_thumbnail_is_small_and_carries_no_metadata() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 1600, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    with Image.open(io.BytesIO(thumbnail_jpeg(Image.open(buffer)))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 320 and thumb.size == (320, 180)
        assert not thumb.getexif()


# ---------------------------------------------------------------- against the server


def fetch(url: str, timeout: float = 30) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture(scope="module")
def server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A small library, indexed and served; yields (base URL, the server's folders: data, results, tmp)."""
    work = tmp_path_factory.mktemp("share")
    music = work / "music"
    music.mkdir()
    for n, (title, artist, freq) in enumerate(SONGS):
        write_tone(music / f"{n}.flac", 3.0 + n, freq, tags={"title": title, "artist": artist, "album": "Weather"})
    env = cli_environment(tiny_models)
    store = work / "data" / "store"
    assert run_cli(["index", str(music), "--store", str(store)], env, work).returncode == 0
    (work / "tmp").mkdir()
    env.update(XDG_DATA_HOME=str(work / "data"), TMPDIR=str(work / "tmp"))  # results land in data/image2mood/results
    with serving(store, env, work) as base:
        yield base, work


@pytest.fixture(scope="module")
def noise_photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A photo whose bytes appear nowhere else (random pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=92)
    return buffer.getvalue()


def ask(base: str, photo: bytes, **fields: str) -> dict:
    status, body = post_multipart(f"{base}/api/recommend", {"image": ("holiday.jpg", photo)}, fields)
    assert status == 200, body
    return body


def results_folder(work: Path) -> Path:
    return work / "data" / "image2mood" / "results"


def files_holding(chunk: bytes, *roots: Path, since: float = 0.0) -> list[Path]:
    """Regular files under ``roots`` (changed after ``since``) whose bytes contain ``chunk``."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                try:
                    stat = path.lstat()
                    if path.is_symlink() or stat.st_mtime < since or stat.st_size > 64 * 1024 * 1024:
                        continue
                    if chunk in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def test_answer_carries_result_id_and_mood_map_places(server, noise_photo: bytes) -> None:
    base, work = server
    started = time.time()
    answer = ask(base, noise_photo)
    assert valid_id(answer["result_id"])
    for place in (answer, *answer["songs"]):
        assert -1 <= place["valence"] <= 1 and -1 <= place["arousal"] <= 1, place
    assert fetch(f"{base}/r/{answer['result_id']}")[0] == 200  # opening its page keeps it
    kept = json.loads((results_folder(work) / f"{answer['result_id']}.json").read_text())
    assert kept["caption"] == answer["caption"] and kept["thumbnail"] is None
    assert [s["id"] for s in kept["songs"]] == [s["id"] for s in answer["songs"]]
    assert abs(np.linalg.norm(kept["vector"]) - 1) < 1e-4  # the query vector itself
    assert fetch(f"{base}/r/{answer['result_id']}/photo.jpg")[0] == 404  # not shared: no thumbnail at all
    # The photo is nowhere on disk: not in the data folder, the server's temporary folder, or /tmp.
    chunk = noise_photo[len(noise_photo) // 2: len(noise_photo) // 2 + 64]
    assert files_holding(chunk, work) == []
    assert files_holding(chunk, Path("/tmp"), since=started - 1) == []


def test_no_trace_of_the_photo_on_disk_not_its_bytes_pixels_or_hashes(server) -> None:
    """A photo over werkzeug's 500 KB in-memory limit (so the upload is spooled through the server's TMPDIR):
    afterwards no file in the server's folders (data, results, TMPDIR) or in /tmp holds a run of its bytes,
    a run of its decoded pixels, or the hash of its bytes or of its pixels (the memo's key included)."""
    base, work = server
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(8).integers(0, 255, (900, 1200, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=95)
    photo = buffer.getvalue()
    assert len(photo) > 500 * 1024  # werkzeug spools bodies over 500 KB to a temporary file
    started = time.time()
    ask(base, photo)
    pixels = load_configured_photo(photo, "holiday.jpg", Settings(_env_file=None))
    raw = pixels.tobytes()
    traces = [photo[len(photo) // 2: len(photo) // 2 + 64], raw[len(raw) // 2: len(raw) // 2 + 64],
              hashlib.sha256(photo).hexdigest().encode(), hashlib.sha256(raw).hexdigest().encode(),
              *(photo_key(pixels, client).encode() for client in ("", "127.0.0.1"))]
    for trace in traces:
        assert files_holding(trace, work) == [], trace
        assert files_holding(trace, Path("/tmp"), since=started - 1) == [], trace
    names = [name for root in (work, Path("/tmp")) for _, _, files in os.walk(root) for name in files]
    assert not any(trace.decode() in name for trace in traces[2:] for name in names)


def test_a_shared_photo_is_kept_only_as_a_thumbnail(server, noise_photo: bytes) -> None:
    base, work = server
    answer = ask(base, noise_photo, share_photo="true")
    status, kind, body = fetch(f"{base}/r/{answer['result_id']}/photo.jpg")
    assert status == 200 and kind == "image/jpeg"
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size == (320, 240)
    chunk = noise_photo[len(noise_photo) // 2: len(noise_photo) // 2 + 64]
    assert files_holding(chunk, work) == []
    assert post_multipart(f"{base}/api/recommend", {"image": ("x.jpg", noise_photo)}, {"share_photo": "maybe"})[0] == 400


def test_playlists_from_the_api_list_the_answers_songs_in_order(server, noise_photo: bytes) -> None:
    base, _ = server
    for answer in (ask(base, noise_photo, top="3"),
                   json.loads(fetch(f"{base}/api/search?q=rain%20at%20night&top=2")[2])):
        wanted = [f"{base}{song['audio_url']}" for song in answer["songs"]]
        status, kind, body = fetch(f"{base}/api/results/{answer['result_id']}/playlist.m3u8")
        assert status == 200 and kind.startswith("audio/x-mpegurl"), kind
        parsed = m3u8.loads(body.decode("utf-8"))
        assert [s.uri for s in parsed.segments] == wanted
        assert [s.title for s in parsed.segments] == [f"{s['artist']} - {s['title']}" for s in answer["songs"]]
        status, kind, body = fetch(f"{base}/api/results/{answer['result_id']}/playlist.xspf")
        assert status == 200 and kind.startswith("application/xspf+xml"), kind
        tracks = parse_xspf(body.decode("utf-8"))
        assert [t["location"] for t in tracks] == wanted
        assert [t["title"] for t in tracks] == [s["title"] for s in answer["songs"]]
        assert fetch(wanted[0])[0] == 200  # the locations play
    assert fetch(f"{base}/api/results/{answer['result_id']}/playlist.txt")[0] == 404


def test_unknown_malformed_and_expired_ids_get_404(server, noise_photo: bytes) -> None:
    base, work = server
    for bad in (new_id(), "..%2F..%2Fetc%2Fpasswd", "short"):
        status, kind, body = fetch(f"{base}/r/{bad}")
        assert status == 404 and kind.startswith("text/html") and b"This answer is not here" in body
        status, kind, body = fetch(f"{base}/api/results/{bad}/playlist.m3u8")
        assert status == 404 and json.loads(body)["error"]["status"] == 404
    answer = ask(base, noise_photo)
    path = results_folder(work) / f"{answer['result_id']}.json"
    assert fetch(f"{base}/r/{answer['result_id']}")[0] == 200
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "created": time.time() - 169 * 3600}))  # past the default week
    assert fetch(f"{base}/r/{answer['result_id']}")[0] == 404
    assert fetch(f"{base}/api/results/{answer['result_id']}/playlist.xspf")[0] == 404


def test_openapi_documents_results_and_share_photo(server) -> None:
    base, _ = server
    doc = json.loads(fetch(f"{base}/api/openapi.json")[2])
    form = doc["paths"]["/api/recommend"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["share_photo"]["type"] == "boolean"
    for kind in ("m3u8", "xspf"):
        assert f"/api/results/{{result_id}}/playlist.{kind}" in doc["paths"]
    answer = doc["components"]["schemas"]["Results"]
    assert {"result_id", "valence", "arousal"} <= set(answer["properties"])


def test_shared_page_and_main_page_in_chromium(server, browser, noise_photo: bytes, tmp_path: Path) -> None:  # noqa: F811
    base, _ = server
    answer = ask(base, noise_photo, share_photo="true")
    browser.get(f"{base}/r/{answer['result_id']}")
    wait(browser).until(lambda d: by_css(d, "#mood-map .map-song"))
    assert len(by_css(browser, "#mood-map .map-song")) == len(answer["songs"])
    assert len(by_css(browser, "#mood-map .map-query")) == 1
    assert browser.find_element("id", "caption").text == answer["caption"]
    audios = by_css(browser, "#songs audio")
    assert [a.get_attribute("src") for a in audios] == [f"{base}{s['audio_url']}#t={s['highlight']['start']}"
                                                        for s in answer["songs"]]  # each starts at its highlight
    og = {m.get_attribute("property"): m.get_attribute("content") for m in by_css(browser, "meta[property^='og:']")}
    assert og["og:title"] == answer["caption"]
    assert og["og:description"].startswith(", ".join(m["en"] for m in answer["moods"]))
    assert og["og:image"] == f"{base}/r/{answer['result_id']}/photo.jpg"
    assert browser.execute_script("return document.querySelector('#shared-photo img').naturalWidth") == 320
    screenshot(browser, ARTIFACTS / "share.png")
    browser.find_element("css selector", ".lang-btn[data-lang='ko']").click()  # the shared page speaks Korean too
    wait(browser).until(lambda d: d.find_element("css selector", ".kicker").text == "사진 설명")
    assert [chip.text for chip in by_css(browser, "#moods .mood")] == [m["ko"] for m in answer["moods"]]
    browser.find_element("css selector", ".lang-btn[data-lang='en']").click()

    # The main page: a photo in, the map drawn, and the ways out (playlist, share link).
    browser.get(base + "/")
    wait(browser).until(lambda d: d.find_element("id", "size-limit").text.strip())
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(noise_photo)
    browser.find_element("id", "share-photo").click()
    browser.find_element("id", "photo-input").send_keys(str(photo))
    wait(browser).until(lambda d: by_css(d, "#songs .song") and by_css(d, "#mood-map .map-song"))
    result_id = browser.find_element("id", "share-link").get_attribute("href").rsplit("/", 1)[1]
    assert valid_id(result_id)
    assert browser.find_element("id", "save-playlist").get_attribute("href") == \
        f"{base}/api/results/{result_id}/playlist.m3u8"
    assert len(by_css(browser, "#mood-map .map-song")) == len(by_css(browser, "#songs .song"))
    screenshot(browser, ARTIFACTS / "share-page.png")
    browser.find_element("id", "share-link").click()
    wait(browser).until(lambda d: by_css(d, "#shared-photo img"))  # the person chose to share the photo
