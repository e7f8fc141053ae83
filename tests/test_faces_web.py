"""The page draws each face's box and expression on the photo, in English and Korean (real browser,
real server, the real face models on a real face; CLIP, BLIP and CLAP are the tiny models)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import cli_environment, run_cli, serving
from faces_data import ASTRONAUT_FACE, face_folder, real_photos, wheels_dir  # noqa: F401
from media import write_tone
from test_web import ARTIFACTS, browser, by_css, page, screenshot, upload, wait, wait_for_results  # noqa: F401


@pytest.fixture(scope="module")
def server(tiny_models: Path, face_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`image2mood serve` over two indexed songs, with the face models."""
    work = tmp_path_factory.mktemp("faces-web")
    (work / "music").mkdir()
    for i in range(2):
        write_tone(work / "music" / f"tone{i}.flac", 3.0, 300 + 200 * i, tags={"title": f"Tone {i}"})
    env = {**cli_environment(tiny_models), "IMAGE2MOOD_FACES": str(face_folder)}
    indexed = run_cli(["index", str(work / "music"), "--store", str(work / "store")], env, work)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    with serving(work / "store", env, work) as base:
        yield base


def test_the_photo_shows_each_face_with_its_box_and_expression_in_both_languages(
        page, real_photos: dict[str, Path]) -> None:
    driver = page
    upload(driver, real_photos["astronaut.png"])
    wait_for_results(driver)
    wait(driver).until(lambda d: d.find_element("id", "face-boxes").get_attribute("hidden") is None)
    assert len(by_css(driver, "#face-boxes rect")) == 1
    label = driver.find_element("css selector", "#face-boxes text")
    assert label.text == "happy" and "happy" in driver.find_element("id", "face").text

    # Where the box is drawn, as a share of the photo as displayed (object-fit: contain letterboxes it).
    drawn = driver.execute_script("""
        const img = document.getElementById('photo'), r = img.getBoundingClientRect();
        const box = document.querySelector('#face-boxes rect').getBoundingClientRect();
        const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        const left = r.left + (r.width - img.naturalWidth * scale) / 2;
        const top = r.top + (r.height - img.naturalHeight * scale) / 2;
        return [(box.left - left) / scale, (box.top - top) / scale,
                (box.right - left) / scale, (box.bottom - top) / scale];
    """)
    assert all(abs(got - want) < 15 for got, want in zip(drawn, ASTRONAUT_FACE)), drawn  # photo pixels (512 wide)

    driver.find_element("css selector", ".lang-btn[data-lang='ko']").click()
    assert label.text == "행복한" and "행복한" in driver.find_element("id", "face").text
    screenshot(driver, ARTIFACTS / "web-faces-ko.png")
    driver.find_element("css selector", ".lang-btn[data-lang='en']").click()
    assert label.text == "happy"
