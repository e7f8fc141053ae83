"""A video to post from the CLI (`recommend --video`), the API (POST /api/results/<id>/video) and the page's
"Make a video", against real `image2mood index`/`serve` processes, ffmpeg and headless Chromium.

The service runs with its own TMPDIR and data folder, which are searched afterwards for the photo's bytes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import cli_environment, run_cli, serving
from test_video import (BOXES, CLIP_S, LONG_S, MARKER, PHOTO, PHOTO_BYTES, SHORT_S, SIZES, Clip, assert_audio_is,
                        assert_frame_shows, assert_video, write_song)
from test_web import browser  # noqa: F401  (the headless Chromium fixture)
from image2mood import video


def test_the_cli_offers_the_renderers_formats() -> None:
    from service.cli import recommend

    choice = next(p for p in recommend.params if p.name == "video_format").type
    assert list(choice.choices) == list(video.FORMATS) and video.FORMATS == SIZES


# ---------------------------------------------------------------- the CLI and the API


@pytest.fixture(scope="module")
def library(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Chirps of 40, 6 and 30 s, indexed with `image2mood index`; the photo on disk."""
    work = tmp_path_factory.mktemp("video")
    songs = {title: write_song(work / "music" / f"{title}.flac", seconds, title)
             for title, seconds in (("Long Chirp", LONG_S), ("Short Chirp", SHORT_S), ("Shrinking Chirp", 30.0))}
    env = cli_environment(tiny_models)
    store = work / "store"
    indexed = run_cli(["index", str(work / "music"), "--store", str(store)], env, work)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    (work / "photo.jpg").write_bytes(PHOTO_BYTES)
    return {"work": work, "store": store, "env": env, "songs": songs}


def expected_clip(song: dict) -> Clip:
    """The clip the answer gives a song: its highlight, or (a store without highlights) 15 s from its middle."""
    if song.get("highlight"):
        return Clip(song["highlight"]["start"], song["highlight"]["end"] - song["highlight"]["start"])
    return Clip((song["duration"] - CLIP_S) / 2, CLIP_S)


def test_recommend_video_writes_the_songs_clip_with_the_photo(library: dict) -> None:
    work, env = library["work"], library["env"]
    out = work / "out.mp4"
    done = run_cli(["recommend", "photo.jpg", "--json", "--video", str(out), "--song", "2", "--format", "wide",
                    "--store", str(library["store"])], env, work)
    assert done.returncode == 0, done.stderr
    song = json.loads(done.stdout)["songs"][1]
    clip = expected_clip(song)
    assert f"video of song 2 ({clip.start:.1f}–{clip.start + clip.duration:.1f} s) written to {out}" in done.stderr
    assert_video(out, "wide", clip.duration)
    assert_audio_is(out, library["songs"][song["title"]], clip)
    assert_frame_shows(out, "wide", PHOTO, BOXES["wide"], at=clip.duration / 2)


def test_recommend_video_of_a_song_past_the_answer_is_refused(library: dict) -> None:
    work, env, store = library["work"], library["env"], ["--store", str(library["store"])]
    beyond = run_cli(["recommend", "photo.jpg", "--video", "x.mp4", "--song", "4", *store], env, work)
    assert beyond.returncode == 2 and "--song 4: the answer has 3 songs; choose 1 to 3" in beyond.stderr
    assert not (work / "x.mp4").exists()
    past_top = run_cli(["recommend", "photo.jpg", "--video", "x.mp4", "--song", "3", "--top", "2", *store], env, work)
    assert past_top.returncode == 2 and "3 is past the last of the --top 2 songs" in past_top.stderr


def test_a_store_without_highlights_gets_the_middle_of_the_song_or_a_clear_refusal(
        library: dict, tiny_models: Path, tmp_path: Path) -> None:
    """A store from before window vectors: no highlights, so the clip is the middle 15 s, and a 6-s song
    (shorter than that) is refused by name."""
    from image2mood.config import Settings
    from test_highlights import old_layout_store

    store = tmp_path / "old"
    old_layout_store(Settings(_env_file=None, models=tiny_models, windows_per_song=0, store=str(store)))
    env = {**library["env"], "IMAGE2MOOD_WINDOWS_PER_SONG": "0"}
    music = library["work"] / "music"
    indexed = run_cli(["index", str(music / "Long Chirp.flac"), str(music / "Short Chirp.flac"), "--store", str(store)],
                      env, tmp_path)
    assert indexed.returncode == 0 and "indexed 2," in indexed.stdout, indexed.stdout + indexed.stderr
    outcomes = {}
    for rank in (1, 2):
        out = tmp_path / f"{rank}.mp4"
        done = run_cli(["recommend", str(library["work"] / "photo.jpg"), "--json", "--video", str(out),
                        "--song", str(rank), "--format", "square", "--store", str(store)], env, tmp_path)
        song = json.loads(done.stdout)["songs"][rank - 1]
        assert song["highlight"] is None
        outcomes[song["title"]] = (done, out)
    done, out = outcomes["Long Chirp"]
    assert done.returncode == 0, done.stderr
    assert_video(out, "square", CLIP_S)
    assert_audio_is(out, library["songs"]["Long Chirp"], Clip((LONG_S - CLIP_S) / 2, CLIP_S))
    done, out = outcomes["Short Chirp"]
    assert done.returncode == 1 and "“Short Chirp” is 6.0 s long, too short for a 15-s clip" in done.stderr
    assert not out.exists()


def test_video_options_without_video_are_refused(library: dict) -> None:
    done = run_cli(["recommend", "photo.jpg", "--zoom", "--format", "wide"], library["env"], library["work"])
    assert done.returncode == 2 and "--format, --zoom go with --video OUT.mp4" in done.stderr


@pytest.fixture(scope="module")
def service(library: dict) -> Iterator[dict]:
    """`image2mood serve` with its own temporary folder and data folder (kept answers), to be searched."""
    work = library["work"]
    tmp, data = work / "server-tmp", work / "server-data"
    tmp.mkdir()
    env = {**library["env"], "TMPDIR": str(tmp), "XDG_DATA_HOME": str(data)}
    with serving(library["store"], env, work) as base:
        yield {"base": base, "tmp": tmp, "data": data, "store": library["store"]}


def post(url: str, fields: dict[str, str], photo: bytes | None = PHOTO_BYTES,
         timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
    """POST multipart/form-data (the photo as 'image'); returns status, headers and body."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if photo is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
                     "Content-Type: image/jpeg\r\n\r\n".encode() + photo + b"\r\n")
    request = urllib.request.Request(url, data=b"".join(parts) + f"--{boundary}--\r\n".encode(), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def answer(service: dict) -> tuple[str, dict[str, dict]]:
    """A photo's answer from the service: its result_id and its songs by title."""
    status, _, body = post(service["base"] + "/api/recommend", {})
    assert status == 200, body
    data = json.loads(body)
    return data["result_id"], {song["title"]: song for song in data["songs"]}


def files_holding(folder: Path, needles: list[bytes]) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and any(n in path.read_bytes() for n in needles)]


def test_the_api_returns_the_video_and_keeps_nothing_of_the_photo(service: dict, library: dict,
                                                                   tmp_path: Path) -> None:
    result_id, songs = answer(service)
    song = songs["Long Chirp"]
    status, headers, body = post(f"{service['base']}/api/results/{result_id}/video", {"song": song["id"]})
    assert status == 200, body[:500]
    assert headers["Content-Type"] == "video/mp4" and headers["Cache-Control"] == "no-store"
    assert headers["Content-Disposition"] == f'attachment; filename="image2mood-{result_id}-{song["id"]}.mp4"'
    out = tmp_path / "api.mp4"
    out.write_bytes(body)
    clip = expected_clip(song)
    assert_video(out, "story", clip.duration)
    assert_audio_is(out, library["songs"]["Long Chirp"], clip)
    assert_frame_shows(out, "story", PHOTO, BOXES["story"], at=clip.duration / 2)

    needles = [MARKER, PHOTO_BYTES[len(PHOTO_BYTES) // 2: len(PHOTO_BYTES) // 2 + 64]]
    assert all(n in PHOTO_BYTES for n in needles) and files_holding(tmp_path, needles) == []
    assert list(service["tmp"].iterdir()) == [], "the render left files in the service's TMPDIR"
    assert (service["data"] / "image2mood" / "results" / f"{result_id}.json").is_file()  # the answer was kept
    for folder in (service["tmp"], service["data"], service["store"]):
        assert files_holding(folder, needles) == [], f"the photo's bytes stayed under {folder}"


def test_the_api_refuses_what_it_cannot_render(service: dict) -> None:
    result_id, songs = answer(service)
    url = f"{service['base']}/api/results/{result_id}/video"
    long_id = songs["Long Chirp"]["id"]

    def error(status: int, fields: dict[str, str], target: str = url, **kwargs) -> str:
        got, _, body = post(target, fields, **kwargs)
        assert got == status, (got, body[:300])
        return json.loads(body)["error"]["message"]

    shrinking = songs["Shrinking Chirp"]
    clip = expected_clip(shrinking)
    write_song(service["store"].parent / "music" / "Shrinking Chirp.flac", clip.start + clip.duration - 1, "x")
    assert "“Shrinking Chirp”" in error(422, {"song": shrinking["id"]})  # its file, shorter since it was indexed
    assert "'format': input should be 'story', 'square' or 'wide', got 'tall'" in error(
        400, {"song": long_id, "format": "tall"})
    assert "'song' is required" in error(400, {})
    assert f"song '{'0' * 32}' is not in answer {result_id}" in error(404, {"song": "0" * 32})
    assert "field 'image'" in error(400, {"song": long_id}, photo=None)
    assert "photo.jpg" in error(400, {"song": long_id}, photo=b"not a photo at all")
    assert "no answer" in error(404, {"song": long_id}, target=f"{service['base']}/api/results/{'A' * 22}/video")
    assert "no answer" in error(404, {"song": long_id}, target=f"{service['base']}/api/results/not-an-id/video")


def test_a_second_render_while_one_runs_is_told_to_retry(service: dict) -> None:
    result_id, songs = answer(service)
    url = f"{service['base']}/api/results/{result_id}/video"
    first: list[int] = []
    worker = threading.Thread(target=lambda: first.append(post(url, {"song": songs["Long Chirp"]["id"],
                                                                     "zoom": "true"})[0]))
    worker.start()
    deadline = time.monotonic() + 60
    while not list(service["tmp"].glob("image2mood-video-*")):  # the first one's render has begun
        assert time.monotonic() < deadline and worker.is_alive(), "the first render never started"
        time.sleep(0.02)
    status, headers, body = post(url, {"song": songs["Long Chirp"]["id"], "format": "square"})
    worker.join(120)
    assert first == [200]
    assert status == 503 and headers["Retry-After"] == "5", (status, body[:300])
    assert "another video is being made" in json.loads(body)["error"]["message"]


def test_the_openapi_document_describes_the_video(service: dict) -> None:
    with urllib.request.urlopen(service["base"] + "/api/openapi.json", timeout=10) as response:
        doc = json.loads(response.read())
    operation = doc["paths"]["/api/results/{result_id}/video"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["image", "song"]
    assert form["properties"]["format"]["enum"] == ["story", "square", "wide"]
    assert set(operation["responses"]) >= {"200", "400", "404", "413", "422", "503"}
    assert "video/mp4" in operation["responses"]["200"]["content"]


# ---------------------------------------------------------------- the page


def test_the_page_makes_a_video_and_shows_why_it_cannot(service: dict, library: dict, browser,  # noqa: F811
                                                        tmp_path: Path) -> None:
    """In headless Chromium: "Make a video" beside a song downloads its MP4; a song whose file is now shorter
    than its clip says why in its card; the button speaks Korean too."""
    from test_web import ARTIFACTS, by_css, screenshot, upload, wait, wait_for_results

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get(service["base"] + "/")
    wait(browser).until(lambda d: d.find_element("id", "size-limit").text.strip())
    upload(browser, library["work"] / "photo.jpg")
    wait_for_results(browser)
    cards = {card.find_element("css selector", ".song-title").text: card for card in by_css(browser, "#songs .song")}
    button = cards["Short Chirp"].find_element("css selector", "button.make-video")
    assert button.text == "Make a video" and button.get_attribute("aria-label") == (
        "Make a video of your photo with Short Chirp")
    button.click()
    wait(browser).until(lambda d: [p for p in downloads.glob("*.mp4")])
    status = cards["Short Chirp"].find_element("css selector", ".video-status")
    wait(browser).until(lambda d: "The video is downloaded" in status.text)
    assert status.get_attribute("aria-live") == "polite" and button.get_attribute("aria-busy") is None
    (made,) = downloads.glob("*.mp4")
    assert made.name.startswith("image2mood-") and made.name.endswith(f"-{cards['Short Chirp'].get_attribute('data-id')}.mp4")
    wait(browser).until(lambda d: not list(downloads.glob("*.crdownload")))
    assert_video(made, "story", SHORT_S)  # a song shorter than the highlight length: all of it
    assert_audio_is(made, library["songs"]["Short Chirp"], Clip(0.0, SHORT_S))
    assert not cards["Short Chirp"].find_elements("css selector", "button.share-video")  # no share sheet here

    # A phone's share sheet (Linux Chromium has none: the page sees one that records what it is given).
    browser.execute_script("navigator.canShare = (data) => Boolean(data.files);"
                           "navigator.share = (data) => { window.shared = data.files.map("
                           "(f) => [f.name, f.type, f.size]); return Promise.resolve(); };")
    button.click()
    share = wait(browser).until(lambda d: cards["Short Chirp"].find_elements("css selector", "button.share-video"))[0]
    assert share.text == "Share the video"
    share.click()
    shared = wait(browser).until(lambda d: d.execute_script("return window.shared"))
    assert shared == [[made.name, "video/mp4", made.stat().st_size]]

    shrinking = cards["Shrinking Chirp"]
    write_song(library["work"] / "music" / "Shrinking Chirp.flac", 1.5, "x")  # shorter than any clip of it now
    shrinking.find_element("css selector", "button.make-video").click()
    error = shrinking.find_element("css selector", ".video-status")
    wait(browser).until(lambda d: "No video:" in error.text)
    assert "“Shrinking Chirp”" in error.text and "video-error" in error.get_attribute("class")
    screenshot(browser, ARTIFACTS / "video-page.png")

    browser.find_element("css selector", ".lang-btn[data-lang='ko']").click()
    assert button.text == "영상 만들기"
