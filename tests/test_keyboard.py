"""Keyboard only: from the start page to a played song and a shared link, with Tab, Enter and Space.

The real server (`image2mood serve`, tiny models) and headless Chromium, as in test_web.py. Every key goes
to whatever has the focus (ActionChains.send_keys; no element is clicked): the one thing typed into an
element is the photo's path, into the focused file input after Enter opened its chooser, because that is
how WebDriver fills a file chooser. Each stop must show a focus ring. Screenshots:
test-artifacts/keyboard-*.png.
"""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from test_web import ARTIFACTS, browser, by_css, page, photo, screenshot, server, wait, wait_for_results  # noqa: F401

# What has the focus, as "tag#id.class" (the id or class may be empty), and the focus ring it shows.
FOCUS = """
const el = document.activeElement;
const ringed = el.matches('input[type=file]') ? el.labels[0] : el;  // a hidden file input's label shows its ring
const style = getComputedStyle(ringed);
return [`${el.tagName.toLowerCase()}#${el.id}.${el.classList[0] || ''}`,
        style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 ? style.outlineColor : null];
"""


def press(driver, *keys: str) -> None:
    """Keys to the focused element, as a keyboard sends them."""
    ActionChains(driver).send_keys(*keys).perform()


def focused(driver) -> str:
    """The focused element, after checking that it shows a focus ring."""
    name, ring = driver.execute_script(FOCUS)
    assert ring, f"{name} has the focus but no focus ring"
    return name


def tab(driver) -> str:
    press(driver, Keys.TAB)
    return focused(driver)


def tab_to(driver, wanted: str, limit: int = 60) -> list[str]:
    """Press Tab until `wanted` has the focus; the stops on the way (audio players have several inside)."""
    stops = []
    while not stops or stops[-1] != wanted:
        assert len(stops) < limit, f"{wanted} not reached with Tab: {stops}"
        press(driver, Keys.TAB)
        stops.append(driver.execute_script(FOCUS)[0])
    focused(driver)
    return stops


def html_lang(driver) -> str:
    return driver.find_element("tag name", "html").get_attribute("lang")


def played(driver, audio) -> bool:
    return driver.execute_script("return !arguments[0].paused && arguments[0].currentTime > 0", audio)


def test_from_the_start_page_to_a_played_song_and_a_shared_link_by_keyboard(page, photo: Path, tmp_path: Path) -> None:
    driver = page
    driver.execute_cdp_cmd("Page.setInterceptFileChooserDialog", {"enabled": True})  # no native dialog
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    driver.execute_script("window.choosers = 0;"
                          "document.getElementById('photo-input').addEventListener('click', () => window.choosers++)")

    # The language switch: Space, then Enter.
    assert [tab(driver), tab(driver), tab(driver)] == ["a#.skip-link", "button#.lang-btn", "button#.lang-btn"]
    press(driver, Keys.SPACE)
    assert html_lang(driver) == "ko" and driver.find_element("css selector", "#pick-label [data-i18n]").text == "사진 고르기"
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert focused(driver) == "button#.lang-btn"
    press(driver, Keys.ENTER)
    assert html_lang(driver) == "en" and driver.find_element("css selector", "#pick-label [data-i18n]").text == "Choose a photo"

    # Choose a photo: Enter on the file input opens its chooser; the photo's path goes into the chooser.
    assert [tab(driver), tab(driver)] == ["button#.lang-btn", "input#photo-input.visually-hidden"]
    screenshot(driver, ARTIFACTS / "keyboard-photo.png")
    press(driver, Keys.ENTER)
    assert driver.execute_script("return window.choosers") == 1
    driver.switch_to.active_element.send_keys(str(photo))
    wait_for_results(driver)
    wait(driver).until(lambda d: d.find_element("id", "share-link").is_displayed())

    # A text search: typed, then Enter.
    assert [tab(driver), tab(driver)] == ["button#camera-btn.btn", "input#search-input."]
    press(driver, "rainy night in the city", Keys.ENTER)
    wait(driver).until(lambda d: "rainy night in the city" in d.find_element("id", "caption").text)

    # Share the photo (Space ticks the box), then Options (Enter opens them), in the order they are on the page.
    assert [tab(driver), tab(driver)] == ["button#.btn", "input#share-photo."]
    press(driver, Keys.SPACE)
    assert driver.find_element("id", "share-photo").is_selected()
    assert tab(driver) == "summary#."
    press(driver, Keys.ENTER)
    assert driver.find_element("id", "opt-top").is_displayed()
    screenshot(driver, ARTIFACTS / "keyboard-options.png")
    assert [tab(driver) for _ in range(5)] == ["input#opt-alpha.", "input#opt-top.", "input#opt-max-per-artist.",
                                               "input#opt-artist.", "input#opt-genre."]

    # The answer, in reading order: Back, Save playlist, Share, then the songs; Space plays the first.
    assert [tab(driver) for _ in range(4)] == ["button#back-btn.btn", "a#save-playlist.btn", "a#share-link.btn",
                                               "audio#."]
    first = by_css(driver, "#songs audio")[0]
    assert driver.switch_to.active_element == first
    press(driver, Keys.SPACE)
    wait(driver, 20).until(lambda d: played(d, first))
    screenshot(driver, ARTIFACTS / "keyboard-song.png")

    # "More like this" on that song: Enter; the focus moves to what the new answer is about.
    title = by_css(driver, "#songs .song-title")[0].text
    tab_to(driver, "button#.btn")
    assert driver.switch_to.active_element == by_css(driver, "#songs button.more")[0]
    press(driver, Keys.ENTER)
    wait(driver).until(lambda d: d.find_element("id", "query-kind").get_attribute("textContent") == "More like this song")
    wait(driver).until(lambda d: d.find_element("id", "caption").text.startswith(title)
                       and d.find_element("id", "share-link").is_displayed())
    assert driver.execute_script("return document.activeElement.id") == "caption"

    # Save playlist (the next stop after the caption; Back is before it): Enter downloads it.
    assert tab(driver) == "a#save-playlist.btn"
    press(driver, Keys.ENTER)
    wait(driver, 20).until(lambda d: [p for p in tmp_path.glob("*.m3u8") if p.stat().st_size])
    playlist = next(tmp_path.glob("*.m3u8")).read_text()
    assert playlist.startswith("#EXTM3U") and "/audio/" in playlist

    # Share: Enter opens the shared link, where the language switch and the players work by keyboard too.
    assert tab(driver) == "a#share-link.btn"
    shared = driver.find_element("id", "share-link").get_attribute("href")
    press(driver, Keys.ENTER)
    wait(driver).until(lambda d: d.current_url == shared and by_css(d, "#mood-map .map-song"))
    assert [tab(driver), tab(driver), tab(driver)] == ["a#.brand-link", "button#.lang-btn", "button#.lang-btn"]
    press(driver, Keys.SPACE)
    assert html_lang(driver) == "ko"
    screenshot(driver, ARTIFACTS / "keyboard-shared-ko.png")
    assert tab_to(driver, "audio#.")[:3] == ["a#save-m3u8.btn", "a#save-xspf.btn", "a#.btn"]
    press(driver, Keys.SPACE)
    wait(driver, 20).until(lambda d: played(d, by_css(d, "#songs audio")[0]))
    press(driver, Keys.SPACE)  # and stops again
    wait(driver, 5).until(lambda d: d.execute_script("return document.querySelector('#songs audio').paused"))
