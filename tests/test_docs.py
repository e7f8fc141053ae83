"""The README and the manual: short start page, every relative link resolving, every setting documented,
and no module grown past one screenful of concerns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
MAX_LINES = 350


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto: … : not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_catches_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## A section\n\n[ok](#a-section) [gone](missing.md) [nowhere](#no-such)\n"
                    "```\n[in code](ignored.md)\n```\n")
    assert links(page) == ["#a-section", "missing.md", "#no-such"]
    assert anchors(page) == {"top", "a-section"}


def test_readme_is_a_short_start_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for command in ("bash scripts/setup.sh", "bash scripts/test.sh"):
        assert command in readme
    assert "../shared" not in readme and "issue" not in readme.lower()


def test_every_setting_is_on_the_configuration_page() -> None:
    """scripts/settings_doc.py --check: the page's table is the one the settings class gives."""
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings_doc.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    from image2mood.config import Settings
    for name in Settings.model_fields:
        assert f"`IMAGE2MOOD_{name.upper()}`" in page


def test_no_module_outside_the_tests_is_over_350_lines() -> None:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    long = {name: n for name in tracked.stdout.split()
            if not name.startswith("tests/") and (ROOT / name).exists()
            and (n := len((ROOT / name).read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"
