"""File names and tags made readable and harmless to show.

A file name is bytes. Python holds the bytes of a name that is not UTF-8 as lone surrogates
(``surrogateescape``); :func:`readable` decodes those for display only, each path component as UTF-8,
else CP949 (Korean Windows), else Latin-1. :func:`printable` also makes every control character
visible (``\\x1b``, ``\\x85``), so a name or tag cannot recolour the terminal, move its cursor or start
a new line: every line the CLI prints about a file or a tag goes through it. :func:`json_line` is
the same promise for a JSON line.
"""

from __future__ import annotations

import json
import re
from typing import Any

NAME_ENCODINGS = ("utf-8", "cp949")
"""How each component of a name that is not UTF-8 is read for display, in order; Latin-1 (which reads any
bytes) when none of these does."""

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # a byte that surrogateescape kept
_OTHER_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # C0, DEL, C1, line breaks, surrogates
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # what json.dumps leaves raw of those


def readable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name decoded for display (see the module docstring)."""
    if _ESCAPED_BYTE.search(text) is None:
        return text
    text = _OTHER_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
    return "/".join(_decoded(part) for part in text.encode("utf-8", "surrogateescape").split(b"/"))


def printable(text: str) -> str:
    """:func:`readable` ``text`` with every control character (C0 including tab and newline, DEL, C1,
    U+2028/9) and any remaining surrogate written as a visible escape, e.g. ``\\x1b[31m``."""
    return _UNSHOWABLE.sub(_escape, readable(text))


def json_line(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON for a terminal: non-ASCII text as it is, but controls that JSON would leave raw
    (DEL, C1, U+2028/9, lone surrogates) as ``\\u`` escapes. It loads back to the same value."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(value, ensure_ascii=False, indent=indent))


def _decoded(part: bytes) -> str:
    for encoding in NAME_ENCODINGS:
        try:
            return part.decode(encoding)
        except UnicodeDecodeError:
            continue
    return part.decode("latin-1")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
