"""Write the settings table of docs/configuration.md from the settings class, so the page and the code agree.

    .venv/bin/python scripts/settings_doc.py          # rewrite the table in place
    .venv/bin/python scripts/settings_doc.py --check  # exit 1 when the page is out of date (the tests run this)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from image2mood.config import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def _default(field) -> str:
    if field.default_factory is not None:
        saved = os.environ.pop("XDG_DATA_HOME", None)  # the documented default, not this shell's
        try:
            value = field.default_factory()
        finally:
            if saved is not None:
                os.environ["XDG_DATA_HOME"] = saved
        return f"`{str(value).replace(str(Path.home()), '~')}`"
    if field.default is None or field.default is PydanticUndefined:
        return "—"
    value = field.default
    return f"`{value:_}`".replace("_", " ") if isinstance(value, int) and value >= 10_000 else f"`{value}`"


def table() -> str:
    """One row per setting: its variable, its default and its description."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `IMAGE2MOOD_{name.upper()}` | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def render(page: str) -> str:
    """The page with its table between the markers replaced by the current one."""
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    page = PAGE.read_text(encoding="utf-8")
    wanted = render(page)
    if "--check" in sys.argv[1:]:
        if wanted != page:
            print(f"{PAGE} is out of date: run `.venv/bin/python scripts/settings_doc.py`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
