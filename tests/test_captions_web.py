"""The page in Korean, in headless Chromium against `image2mood serve` on the tiny models: the caption is shown in
Korean (the translator's, streamed after the songs), and in English again at the switch. Screenshot:
test-artifacts/web-caption-ko.png."""

from __future__ import annotations

from pathlib import Path

from conftest import post_multipart
from test_web import ARTIFACTS, browser, photo, screenshot, server, upload, wait  # noqa: F401  (fixtures)


def test_the_korean_page_shows_the_korean_caption(browser, server: str, photo: Path) -> None:  # noqa: F811
    driver = browser
    driver.get(server + "/")
    driver.execute_script("localStorage.setItem('image2mood.lang', 'ko')")
    driver.get(server + "/")
    wait(driver).until(lambda d: d.find_element("tag name", "html").get_attribute("lang") == "ko")
    upload(driver, photo)
    caption = driver.find_element("id", "caption")
    wait(driver).until(lambda d: caption.get_attribute("data-ko") and d.find_elements("css selector", "#songs .song"))
    assert not driver.find_element("id", "error").is_displayed(), driver.find_element("id", "error").text
    status, body = post_multipart(f"{server}/api/recommend", {"image": (photo.name, photo.read_bytes())},
                                  {"lang": "ko"})
    assert status == 200, body
    korean, english = body["captions"]["ko"], body["captions"]["en"]
    assert korean != english
    assert caption.text == korean and caption.get_attribute("lang") == "ko"
    assert caption.get_attribute("data-en") == english
    screenshot(driver, ARTIFACTS / "web-caption-ko.png")

    driver.find_element("css selector", ".lang-btn[data-lang='en']").click()
    assert caption.text == english and caption.get_attribute("lang") == "en"
    driver.find_element("css selector", ".lang-btn[data-lang='ko']").click()
    assert caption.text == korean
    driver.execute_script("localStorage.clear()")
