"""Accessibility of the web pages, in a real browser (Debian's Chromium, headless) against the real server.

axe-core (bundled by axe-selenium-python) checks the start page, an answer to a photo with two faces in
English and Korean on a desktop and in the phone layout, the shared-answer page and the tuning page, in
the light and the dark scheme: any violation, at any impact, fails. The text alternatives are read back:
the mood map as a list, the faces as words, the answer announced in the polite live region, the photo's
alt text made from its caption, <html lang> following the language switch. With less motion asked for,
nothing moves. Screenshots: test-artifacts/a11y-*.png. Keyboard-only use is in test_keyboard.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import cli_environment, post_multipart, run_cli, serving
from faces_data import face_folder, real_photos, wheels_dir  # noqa: F401  (fixtures)
from media import write_tone
from test_tuning_page import reports  # noqa: F401  (fixture: a folder with one real tuning run)
from test_web import ARTIFACTS, browser, by_css, page, screenshot, upload, wait, wait_for_results  # noqa: F401

SONGS = [("Rain Song", 220), ("Party Night", 330), ("비 오는 거리", 440)]


@pytest.fixture(scope="module")
def server(tiny_models: Path, face_folder: Path, reports: Path,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`image2mood serve` over three indexed songs, with the face models and a tuning reports folder."""
    work = tmp_path_factory.mktemp("a11y")
    (work / "music").mkdir()
    for n, (title, freq) in enumerate(SONGS):
        write_tone(work / "music" / f"{n}.flac", 3.0, freq, tags={"title": title, "artist": "Ana"})
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_FACES": str(face_folder),
           "IMAGE2MOOD_TUNE_REPORTS": str(reports)}
    indexed = run_cli(["index", str(work / "music"), "--store", str(work / "store")], env, work)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    with serving(work / "store", env, work) as base:
        yield base


@pytest.fixture(scope="module")
def two_faces(real_photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The astronaut and the cameraman side by side at half size: one photo, two faces (happy and sad)."""
    left, right = (Image.open(real_photos[name]).convert("RGB") for name in ("astronaut.png", "camera.png"))
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    path = tmp_path_factory.mktemp("two-faces") / "two-faces.jpg"
    both.resize((both.width // 2, both.height // 2)).save(path, "JPEG", quality=92)
    return path


def violations(driver) -> list[dict]:
    """Every axe-core violation on the page as it is now (all rules, every impact)."""
    from axe_selenium_python import Axe

    axe = Axe(driver)
    axe.inject()
    return axe.run()["violations"]


def assert_clean(driver, where: str) -> None:
    from axe_selenium_python import Axe

    found = violations(driver)
    assert not found, f"{where}: {Axe(driver).report(found)}"


def scheme(driver, dark: bool) -> None:
    """Emulate prefers-color-scheme (the page has a light and a dark scheme)."""
    features = [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    wait(driver, 5).until(lambda d: d.execute_script("return document.getAnimations().length === 0"))  # colours settled


def switch_language(driver, lang: str) -> None:
    driver.find_element("css selector", f".lang-btn[data-lang='{lang}']").click()
    assert driver.find_element("tag name", "html").get_attribute("lang") == lang


def text_of(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).get_attribute("textContent").strip()


def check_answer(driver, lang: str, where: str) -> None:
    """axe in both schemes, then the text alternatives of the answer on show, in ``lang``."""
    for dark in (False, True):
        scheme(driver, dark)
        assert_clean(driver, f"{where}, {'dark' if dark else 'light'}")
    scheme(driver, False)
    caption = driver.find_element("id", "caption").text
    songs = by_css(driver, "#songs .song")
    places = [li.get_attribute("textContent") for li in by_css(driver, "#map-list li")]
    assert len(places) == len(songs) + 1, places  # the photo, then each song
    if lang == "en":
        assert driver.find_element("id", "photo").get_attribute("alt") == f"Your photo: {caption}"
        assert text_of(driver, "#face").startswith("2 faces: happy")
        assert text_of(driver, "#status").startswith(f"Found {len(songs)} song") and "2 faces: happy" in \
            text_of(driver, "#status")
        assert places[0].startswith("Your photo: ") and ("pleasant" in places[0] or "neither" in places[0])
        assert places[1].startswith("1. ") and places[1].split(". ", 1)[1].startswith(songs[0].find_element(
            "css selector", ".song-title").text + ": ")
    else:
        assert driver.find_element("id", "photo").get_attribute("alt") == f"내 사진: {caption}"
        assert text_of(driver, "#face").startswith("얼굴 2개: 행복한")
        assert "얼굴 2개: 행복한" in text_of(driver, "#status")
        assert places[0].startswith("내 사진: ")
    assert driver.find_element("id", "status").get_attribute("aria-live") == "polite"


# ---------------------------------------------------------------- the tests


def test_the_start_page_is_clean_in_both_schemes(page) -> None:
    for dark in (False, True):
        scheme(page, dark)
        assert_clean(page, f"start page, {'dark' if dark else 'light'}")
    scheme(page, False)
    assert page.find_element("tag name", "html").get_attribute("lang") == "en"


def test_axe_catches_an_unlabeled_control(page) -> None:
    """The check itself works here: an input with no label is a critical finding."""
    page.execute_script("const i = document.createElement('input'); i.id = 'unlabeled';"
                        "document.getElementById('search-form').append(i);")
    found = {v["id"]: v for v in violations(page)}
    assert "label" in found and found["label"]["impact"] == "critical", found
    assert [node["target"] for node in found["label"]["nodes"]] == [["#unlabeled"]]


def test_an_answer_with_faces_is_clean_in_english_and_korean_on_desktop_and_phone(page, two_faces: Path) -> None:
    driver = page
    upload(driver, two_faces)
    wait_for_results(driver)
    wait(driver).until(lambda d: len(by_css(d, "#face-boxes rect")) == 2 and by_css(d, "#map-list li"))
    check_answer(driver, "en", "answer, desktop, English")
    switch_language(driver, "ko")
    check_answer(driver, "ko", "answer, desktop, Korean")
    screenshot(driver, ARTIFACTS / "a11y-answer-ko.png")

    driver.set_window_size(390, 844)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        driver.refresh()  # Korean is remembered; a touch screen gets the phone's camera input
        wait(driver).until(lambda d: d.find_element("id", "capture-label").is_displayed())
        assert driver.find_element("tag name", "html").get_attribute("lang") == "ko"
        assert driver.find_element("id", "capture-input").get_attribute("aria-label") == "사진 찍기"
        assert_clean(driver, "start page, phone, Korean")
        upload(driver, two_faces)
        wait_for_results(driver)
        wait(driver).until(lambda d: by_css(d, "#map-list li") and text_of(d, "#status"))
        check_answer(driver, "ko", "answer, phone, Korean")
        switch_language(driver, "en")
        check_answer(driver, "en", "answer, phone, English")
        screenshot(driver, ARTIFACTS / "a11y-answer-phone.png")
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.set_window_size(1280, 900)


def test_the_share_page_is_clean_in_both_languages(browser, server: str, two_faces: Path) -> None:  # noqa: F811
    driver = browser
    status, answer = post_multipart(f"{server}/api/recommend", {"image": ("photo.jpg", two_faces.read_bytes())},
                                    {"share_photo": "true"})
    assert status == 200, answer
    driver.get(f"{server}/r/{answer['result_id']}")
    wait(driver).until(lambda d: by_css(d, "#mood-map .map-song") and by_css(d, "#map-list li"))
    assert len(by_css(driver, "#map-list li")) == len(by_css(driver, "#songs .song")) + 1
    for lang in ("en", "ko"):
        switch_language(driver, lang)
        for dark in (False, True):
            scheme(driver, dark)
            assert_clean(driver, f"share page, {lang}, {'dark' if dark else 'light'}")
        scheme(driver, False)
    assert text_of(driver, "#map-list li").startswith("내 사진: ")
    switch_language(driver, "en")


def test_the_tuning_page_is_clean(browser, server: str) -> None:  # noqa: F811
    browser.get(server + "/tune")
    assert by_css(browser, "#reports a")  # the run is listed (a table to check, not the empty page)
    for dark in (False, True):
        scheme(browser, dark)
        assert_clean(browser, f"tuning page, {'dark' if dark else 'light'}")
    scheme(browser, False)


def test_less_motion_stops_every_animation(page) -> None:
    """With prefers-reduced-motion the busy spinner stands still and nothing glides."""
    def moving() -> list[str]:
        return page.execute_script("""
            document.getElementById('busy').hidden = false;  // the spinner on show, as while a photo is read
            return [...document.querySelectorAll('*')].filter((el) => {
                const s = getComputedStyle(el);
                return s.animationName !== 'none' || parseFloat(s.transitionDuration) > 0;
            }).map((el) => el.id || el.className || el.tagName);
        """)
    assert "spinner" in moving()  # it does spin normally: the check can see it
    page.execute_cdp_cmd("Emulation.setEmulatedMedia",
                         {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]})
    try:
        assert moving() == []
        assert page.execute_script("return matchMedia('(prefers-reduced-motion: reduce)').matches")
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
