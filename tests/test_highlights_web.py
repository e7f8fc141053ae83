"""Highlights on the page and the share page, in headless Chromium against `image2mood serve` (tiny models).

The library of tests/test_highlights.py (a 60-s noise song with a pulsed tone at 30-40 s, the tone alone, a
plain tone) is indexed with `image2mood index`. Each player must start at its song's highlight: once it has
loaded, its currentTime is the highlight's start (the media fragment ``#t=``), and the words under it say
"Best part m:ss–m:ss" (in Korean too). Screenshots: test-artifacts/highlights-page.png, highlights-share.png.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import cli_environment, run_cli, serving
from test_highlights import write_library
from test_web import ARTIFACTS, browser, by_css, screenshot, wait  # noqa: F401  (browser: a fixture)

QUERY = "rain at night"


def clock(seconds: float) -> str:
    whole = int(seconds + 0.5)
    return f"{whole // 60}:{whole % 60:02d}"


@pytest.fixture(scope="module")
def server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("highlights-web")
    library = write_library(work / "music")
    env = cli_environment(tiny_models)
    indexed = run_cli(["index", str(library), "--store", str(work / "store")], env, work)
    assert indexed.returncode == 0 and "indexed 3," in indexed.stdout, indexed.stdout + indexed.stderr
    with serving(work / "store", env, work) as base:
        yield base


def api(url: str, data: bytes | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET"),
                                timeout=60) as response:
        return json.loads(response.read())


def loaded_start_times(driver) -> list[tuple[str, float]]:
    """Each player's src and, once its metadata has loaded, its currentTime (where it would start playing)."""
    driver.execute_script("document.querySelectorAll('#songs audio').forEach((a) => { a.preload = 'metadata'; a.load(); })")
    wait(driver).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#songs audio')].every((a) => a.readyState >= 1)"))
    return driver.execute_script(
        "return [...document.querySelectorAll('#songs audio')].map((a) => [a.getAttribute('src'), a.currentTime])")


def check_players(driver, songs: list[dict]) -> None:
    """Every player starts at its song's highlight, which the words under it name."""
    cards = by_css(driver, "#songs .song")
    assert [c.get_attribute("data-id") for c in cards] == [s["id"] for s in songs]
    for (src, current), song, card in zip(loaded_start_times(driver), songs, cards, strict=True):
        start, end = song["highlight"]["start"], song["highlight"]["end"]
        assert src.endswith(f"#t={start:g}") or src.endswith(f"#t={start}"), src
        assert current == pytest.approx(start, abs=0.05), (song["title"], current, start)
        words = card.find_element("css selector", ".highlight-text").text
        assert words == f"Best part {clock(start)}–{clock(end)}", words
        mark = card.find_element("css selector", ".highlight-mark")
        assert int(mark.get_attribute("x")) == round(start / song["duration"] * 1000)


def test_the_pages_players_start_at_each_songs_highlight(browser, server: str) -> None:  # noqa: F811
    answer = api(f"{server}/api/search?" + urllib.parse.urlencode({"q": QUERY}))
    assert answer["songs"] and all(s["highlight"] for s in answer["songs"])
    driver = browser
    driver.get(server + "/")
    box = wait(driver).until(lambda d: d.find_element("id", "search-input"))
    box.send_keys(QUERY)
    driver.find_element("css selector", "#search-form button[type='submit']").click()
    wait(driver).until(lambda d: len(by_css(d, "#songs .song .highlight-text")) == len(answer["songs"]))
    check_players(driver, answer["songs"])
    screenshot(driver, ARTIFACTS / "highlights-page.png")

    # "More like this" from the tone alone: the long song's player starts where the tone is in it (30 s ± 10)
    passage = next(card for card in by_css(driver, "#songs .song")
                   if card.find_element("css selector", ".song-title").text == "passage")
    similar = api(f"{server}/api/songs/{passage.get_attribute('data-id')}/similar")
    passage.find_element("css selector", "button.more").click()
    wait(driver).until(lambda d: d.find_element("id", "query-kind").get_attribute("textContent") == "More like this song")
    wait(driver).until(lambda d: len(by_css(d, "#songs .song .highlight-text")) == len(similar["songs"]))
    check_players(driver, similar["songs"])
    long = next(s for s in similar["songs"] if s["title"] == "long")
    assert abs(long["highlight"]["start"] - 30) <= 10

    driver.find_element("css selector", ".lang-btn[data-lang='ko']").click()
    first = by_css(driver, "#songs .song .highlight-text")[0].text
    assert first.startswith("가장 잘 맞는 부분 ") and "–" in first, first
    driver.find_element("css selector", ".lang-btn[data-lang='en']").click()


def test_the_share_page_and_playlists_start_at_the_highlight(browser, server: str) -> None:  # noqa: F811
    answer = api(f"{server}/api/search?" + urllib.parse.urlencode({"q": QUERY}))
    result_id = answer["result_id"]
    driver = browser
    driver.get(f"{server}/r/{result_id}")
    wait(driver).until(lambda d: by_css(d, "#songs .song .highlight-text"))
    check_players(driver, answer["songs"])
    screenshot(driver, ARTIFACTS / "highlights-share.png")

    with urllib.request.urlopen(f"{server}/api/results/{result_id}/playlist.m3u8", timeout=30) as response:
        m3u8 = response.read().decode()
    starts = [line.split("=", 1)[1] for line in m3u8.splitlines() if line.startswith("#EXTVLCOPT:start-time=")]
    assert starts == [f"{s['highlight']['start']:g}" for s in answer["songs"]], m3u8
    with urllib.request.urlopen(f"{server}/api/results/{result_id}/playlist.xspf", timeout=30) as response:
        xspf = response.read().decode()
    assert xspf.count("<vlc:option>start-time=") == len(answer["songs"]), xspf
