"""Command-line value types the indexer's commands share."""

from __future__ import annotations

from typing import Any

import click


class WindowCount(click.ParamType):
    """1 to 64 windows per song, or ``all`` (stored as 0: every window)."""

    name = "1-64|all"
    _count = click.IntRange(1, 64)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return 0 if str(value).lower() == "all" else self._count.convert(value, param, ctx)
