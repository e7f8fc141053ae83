"""The web page at / in a real browser (Debian's Chromium, headless) against the real server.

A small generated library is indexed with `image2mood index` and served by `image2mood serve` (tiny
models, a subprocess); Selenium then drops photos on the page the way a person would. Nothing is
mocked. Screenshots go to test-artifacts/ at the repository root (web-results.png, web-phone.png,
web-results-ko.png).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import cli_environment, post_multipart, run_cli, serving
from media import write_tone

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SETUP_HINT = "run `bash scripts/setup.sh --test` (it installs Debian's chromium and chromium-driver)"
MAX_UPLOAD_MB = 2  # small, so that the client-side size check can be tested with a 3 MB file
WAIT_S = 60

SONGS = [  # file, seconds, Hz, tags (the WAV has none: its title is its file name, its artist unknown)
    ("ambient/rain.flac", 4.0, 220, {"title": "Rain Song", "artist": "Ana", "album": "Weather", "genre": "Ambient"}),
    ("dance/party.flac", 5.0, 330, {"title": "Party Night", "artist": "Ben", "album": "Lights", "genre": "Dance"}),
    ("pop/sunset.flac", 6.0, 440, {"title": "Sunset Drive", "artist": "Ana", "album": "Weather", "genre": "Pop"}),
    ("kpop/street.flac", 3.5, 523, {"title": "비 오는 거리", "artist": "민지", "album": "서울의 밤", "genre": "K-Pop"}),
    ("Quiet Morning.wav", 3.0, 660, None),
]
TITLES = {tags["title"] if tags else Path(name).stem for name, _, _, tags in SONGS}


# ---------------------------------------------------------------- the server


def get_json(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Index a small library with `image2mood index`, then run `image2mood serve` on a free port."""
    work = tmp_path_factory.mktemp("web")
    library = work / "music"
    for name, seconds, freq, tags in SONGS:
        (library / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(library / name, seconds, freq, tags=tags)
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB)}
    store = work / "store"
    indexed = run_cli(["index", str(library), "--store", str(store)], env, work)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    assert f"indexed {len(SONGS)}," in indexed.stdout + indexed.stderr, indexed.stdout + indexed.stderr

    with serving(store, env, work) as base:
        status, health = get_json(f"{base}/api/health")
        assert status == 200 and health["tiny_models"] is True and health["store"]["songs"] == len(SONGS), health
        yield base


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Debian's Chromium through Debian's chromedriver (never Selenium Manager: there is no network)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: {SETUP_HINT}", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed ({e}): {SETUP_HINT}", pytrace=False)

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--lang=en-US", "--autoplay-policy=no-user-gesture-required",
                # a fake camera (a test pattern) that needs no permission prompt: the Camera button works
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=options)
    try:
        driver.set_window_size(1280, 900)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server):
    """The page, freshly loaded in English with nothing remembered, once its script has run."""
    browser.get(server + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(server + "/")
    wait(browser).until(lambda d: d.find_element("id", "size-limit").text.strip())
    return browser


def wait(driver, seconds: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2)


def by_css(driver, selector: str):
    return driver.find_elements("css selector", selector)


def upload(driver, path: Path) -> None:
    driver.find_element("id", "photo-input").send_keys(str(path))


def wait_for_results(driver) -> str:
    """Wait until the caption and the song cards are shown; returns the caption."""
    wait(driver).until(lambda d: d.find_element("id", "caption").text.strip() and by_css(d, "#songs .song"))
    assert not driver.find_element("id", "error").is_displayed(), driver.find_element("id", "error").text
    return driver.find_element("id", "caption").text.strip()


def screenshot(driver, path: Path) -> None:
    """A full-page PNG (not just the viewport), via the DevTools protocol."""
    import base64

    driver.execute_script("window.scrollTo(0, 0)")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sunset: a warm gradient sky, a sun, dark water (a JPEG, as a phone would send)."""
    w, h = 800, 600
    t = np.linspace(0, 1, h)[:, None, None]
    top, bottom = np.array([70, 40, 120]), np.array([255, 150, 60])
    sky = np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(sky))
    draw = ImageDraw.Draw(image)
    draw.ellipse((330, 300, 470, 440), fill=(255, 215, 120))
    draw.rectangle((0, 400, w, h), fill=(30, 30, 60))
    for y in range(410, h, 18):
        draw.line((200 + (y % 50), y, 600 - (y % 70), y), fill=(255, 190, 110), width=2)
    path = tmp_path_factory.mktemp("photos") / "sunset.jpg"
    image.save(path, "JPEG", quality=88)
    return path


# ---------------------------------------------------------------- the tests


def test_photo_gives_songs_with_playable_audio(page, server: str, photo: Path) -> None:
    driver = page
    notices = driver.find_element("id", "notices").text
    assert "random weights" in notices, notices  # the tiny models are said to be meaningless
    assert driver.find_element("id", "camera-btn").is_displayed()  # getUserMedia exists on localhost

    upload(driver, photo)
    caption = wait_for_results(driver)
    assert caption
    assert driver.find_element("id", "photo").get_attribute("alt") == f"Your photo: {caption}"
    chips = by_css(driver, "#moods .mood")
    assert chips and all(chip.text.strip() for chip in chips)
    cards = by_css(driver, ".song")
    assert 1 <= len(cards) <= len(SONGS)
    titles = {card.find_element("css selector", ".song-title").text for card in cards}
    assert titles <= TITLES, titles
    assert all(card.find_elements("css selector", ".song-duration") for card in cards)
    audios = by_css(driver, ".song audio")
    assert len(audios) == len(cards)
    assert all(a.get_attribute("controls") is not None and a.get_attribute("preload") == "none" for a in audios)
    src = audios[0].get_attribute("src")
    assert "/audio/" in src and src.startswith(server), src
    assert driver.find_element("id", "status").get_attribute("textContent").startswith(f"Found {len(cards)} song")
    assert driver.find_element("id", "song-count").text == str(len(cards))

    request = urllib.request.Request(src, headers={"Range": "bytes=0-99"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.headers["Content-Range"].startswith("bytes 0-99/")
        assert len(response.read()) == 100

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot(driver, ARTIFACTS / "web-results.png")


def test_phone_layout(page, photo: Path) -> None:
    """390×844 with touch: no sideways scrolling (at 360 px either), big targets, the phone's camera input."""
    driver = page
    driver.set_window_size(390, 844)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        driver.refresh()
        wait(driver).until(lambda d: d.find_element("id", "size-limit").text.strip())
        assert driver.execute_script("return matchMedia('(pointer: coarse)').matches")
        assert driver.find_element("id", "capture-label").is_displayed()
        assert not driver.find_element("id", "camera-btn").is_displayed()
        assert driver.find_element("id", "capture-input").get_attribute("capture") == "environment"

        upload(driver, photo)
        wait_for_results(driver)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        for selector in ("#pick-label", "#capture-label", ".lang-btn", ".song .more", "#search-form button"):
            for element in by_css(driver, selector):
                assert element.size["height"] >= 44, f"{selector} is {element.size['height']}px high"
        screenshot(driver, ARTIFACTS / "web-phone.png")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True})
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 360 px"
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.set_window_size(1280, 900)


def test_language_toggle_changes_labels_and_mood_words(page, photo: Path) -> None:
    driver = page
    label = driver.find_element("css selector", "#pick-label [data-i18n]")
    assert label.text.strip() == "Choose a photo"
    upload(driver, photo)
    wait_for_results(driver)

    driver.find_element("css selector", ".lang-btn[data-lang='ko']").click()
    assert label.text.strip() == "사진 고르기"
    assert driver.find_element("tag name", "html").get_attribute("lang") == "ko"
    assert driver.find_element("css selector", ".lang-btn[data-lang='ko']").get_attribute("aria-pressed") == "true"
    assert driver.find_element("id", "search-input").get_attribute("placeholder") == "분위기를 적어 보세요…"
    chips = by_css(driver, ".mood")
    assert chips and all(c.text == c.get_attribute("data-ko") and c.get_attribute("data-ko") for c in chips)
    assert driver.find_element("id", "status").get_attribute("textContent").startswith("노래")

    driver.find_element("css selector", "details.options summary").click()
    assert driver.find_element("id", "opt-top").is_displayed()
    screenshot(driver, ARTIFACTS / "web-results-ko.png")

    driver.refresh()  # the choice is remembered
    label = driver.find_element("css selector", "#pick-label [data-i18n]")
    wait(driver).until(lambda d: label.text.strip() == "사진 고르기")
    driver.find_element("css selector", ".lang-btn[data-lang='en']").click()
    assert label.text.strip() == "Choose a photo"


def test_korean_browser_gets_korean_page(page, server: str) -> None:
    driver = page
    driver.execute_cdp_cmd("Network.setUserAgentOverride", {
        "userAgent": driver.execute_script("return navigator.userAgent"), "acceptLanguage": "ko-KR,ko"})
    try:
        driver.get(server + "/")
        assert driver.execute_script("return navigator.language").startswith("ko")
        wait(driver).until(lambda d: d.find_element("css selector", "#pick-label [data-i18n]").text.strip() == "사진 고르기")
    finally:
        driver.execute_cdp_cmd("Network.setUserAgentOverride", {
            "userAgent": driver.execute_script("return navigator.userAgent"), "acceptLanguage": "en-US,en"})


def test_bad_file_shows_the_server_message_then_a_good_upload_works(page, server: str, photo: Path,
                                                                   tmp_path: Path) -> None:
    driver = page
    fake = tmp_path / "not-a-photo.jpg"
    fake.write_text("this is a shopping list, not a photo\n")
    status, body = post_multipart(f"{server}/api/recommend", {"image": (fake.name, fake.read_bytes())})
    assert status == 400, body
    message = body["error"]["message"]
    assert fake.name in message

    upload(driver, fake)
    error = driver.find_element("id", "error")
    wait(driver).until(lambda d: error.is_displayed() and message in error.text)
    assert error.get_attribute("role") == "alert"
    assert not driver.find_element("id", "results").is_displayed()
    assert not driver.find_element("id", "busy").is_displayed()

    upload(driver, photo)
    wait_for_results(driver)
    assert not error.is_displayed()


def test_too_big_photo_is_refused_before_upload(page, tmp_path: Path) -> None:
    driver = page
    big = tmp_path / "huge.jpg"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    upload(driver, big)
    error = driver.find_element("id", "error")
    wait(driver, 10).until(lambda d: error.is_displayed())
    assert "huge.jpg" in error.text and f"{MAX_UPLOAD_MB} MB" in error.text, error.text
    assert not driver.find_element("id", "busy").is_displayed()
    assert not driver.find_element("id", "results").is_displayed()
    assert f"{MAX_UPLOAD_MB} MB" in driver.find_element("id", "size-limit").text


def test_more_like_this_back_and_text_search(page, photo: Path) -> None:
    driver = page
    upload(driver, photo)
    caption = wait_for_results(driver)
    first = by_css(driver, ".song")[0]
    first_title = first.find_element("css selector", ".song-title").text
    first.find_element("css selector", "button.more").click()
    wait(driver).until(lambda d: d.find_element("id", "query-kind").get_attribute("textContent") == "More like this song")
    wait(driver).until(lambda d: by_css(d, "#songs .song"))
    assert driver.find_element("id", "caption").text.startswith(first_title)
    assert not driver.find_element("id", "photo-figure").is_displayed()
    assert by_css(driver, "#moods .mood")

    driver.find_element("id", "back-btn").click()
    wait(driver).until(lambda d: d.find_element("id", "caption").text == caption)
    assert driver.find_element("id", "photo-figure").is_displayed()

    box = driver.find_element("id", "search-input")
    box.send_keys("rainy night in the city")
    driver.find_element("css selector", "#search-form button[type='submit']").click()
    wait(driver).until(lambda d: "rainy night in the city" in d.find_element("id", "caption").text)
    wait(driver).until(lambda d: by_css(d, "#songs .song audio"))
    assert by_css(driver, "#moods .mood")


def test_camera_button_takes_and_sends_a_photo(page) -> None:
    """Chromium's fake camera (a test pattern) stands in for a laptop's webcam."""
    driver = page
    driver.find_element("id", "camera-btn").click()
    wait(driver, 20).until(lambda d: d.execute_script("return document.getElementById('camera-video').videoWidth") > 0)
    assert driver.find_element("id", "camera-panel").is_displayed()
    driver.find_element("id", "shoot-btn").click()
    wait_for_results(driver)
    assert not driver.find_element("id", "camera-panel").is_displayed()
    assert driver.execute_script("return document.getElementById('photo').src").startswith("blob:")


def test_songs_show_before_the_caption_then_the_caption_and_refined_order(page, photo: Path) -> None:
    driver = page
    # Record, at each change of the song list, whether the caption was written yet and which songs were shown.
    # The streamed answer reaches the page one line at a time, 100 ms apart: on a busy machine the caption can be
    # ready before the first read, and the page would draw both events in one task (one observer call).
    driver.execute_script("""
        const realFetch = window.fetch;
        window.fetch = async (url, init) => {
            const response = await realFetch(url, init);
            if (!String(url).includes('stream=1') || !response.ok) return response;
            const lines = (await response.text()).split(/(?<=\\n)/), bytes = new TextEncoder();
            return new Response(new ReadableStream({async pull(out) {
                await new Promise((done) => setTimeout(done, 100));
                if (lines.length) out.enqueue(bytes.encode(lines.shift()));
                else { out.close(); window.streamClosed = true; }
            }}), {status: response.status, headers: response.headers});
        };
        window.seen = [];
        new MutationObserver(() => window.seen.push({
            caption: document.getElementById('caption').textContent,
            songs: [...document.querySelectorAll('#songs .song')].map((li) => li.dataset.id)}))
          .observe(document.getElementById('songs'), {childList: true});
    """)
    upload(driver, photo)
    caption = wait_for_results(driver)
    wait(driver).until(lambda d: d.execute_script("return window.streamClosed"))  # the page's last render follows
    time.sleep(0.5)
    seen = [s for s in driver.execute_script("return window.seen") if s["songs"]]
    assert seen[0]["caption"] == "" and seen[0]["songs"], seen  # the image route's songs, before any caption
    assert seen[-1]["caption"] == caption and caption  # then the caption, with the refined order
    shown = driver.execute_script("return [...document.querySelectorAll('#songs .song')].map((li) => li.dataset.id)")
    assert seen[-1]["songs"] == shown
