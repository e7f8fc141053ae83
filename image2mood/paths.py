"""Where a song's file is, as the store keeps it: text, whatever bytes its name is made of.

A path whose name is valid UTF-8 is stored as it is. Any other (a CP949 or Latin-1 name copied from
Windows or an old archive) is stored as its ``file://`` URI, each byte that is not plain ASCII
percent-escaped: valid UTF-8 for the store's JSON payload, a location every playlist player reads, and
turned back into the very same bytes by :func:`local_path`. A stored local path is always absolute (it
begins with ``/``), so the two forms cannot be confused. The song's id is made from the same URI
(:func:`image2mood.library.song_id`), so it is stable and unique for every name.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote_to_bytes

from image2mood.text import printable

FILE_URI = "file://"


def stored_path(path: Path | str) -> str:
    """How the store keeps ``path`` (absolute, or a music server's ``subsonic://`` URI)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, held as surrogates
        return Path(path).as_uri()
    return text


def local_path(stored: str) -> Path:
    """The file a stored path names, with the exact bytes of its name."""
    if stored.startswith(FILE_URI):
        return Path(os.fsdecode(unquote_to_bytes(stored.removeprefix(FILE_URI))))
    return Path(stored)


def shown_path(stored: str) -> str:
    """A stored path as a person reads it: the name decoded and its controls escaped (see :mod:`image2mood.text`)."""
    return printable(str(local_path(stored)) if stored.startswith(FILE_URI) else stored)
