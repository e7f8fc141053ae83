"""Read a music file's title, artist, album and genre tags (optional: a file without them still indexes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mutagen
import soundfile as sf

from image2mood.text import readable

_KEYS = ("title", "artist", "album", "genre")


@dataclass(frozen=True)
class Tags:
    """What a song is called; ``title`` falls back to the file name without its suffix (a name that is not
    UTF-8 decoded for display, see :func:`image2mood.text.readable`)."""

    title: str
    artist: str | None
    album: str | None
    genre: str | None


def read_tags(path: Path) -> Tags:
    """The first value of each tag, stripped, ``None`` when absent or empty. Never raises."""
    path = Path(path)
    try:
        found = mutagen.File(path, easy=True)
        values = {key: _first(found.tags.get(key)) for key in _KEYS} if found is not None and found.tags else {}
    except Exception:  # a broken or unknown file: tags are optional, decoding reports the real problem
        values = {}
    if not any(values.values()):
        values = _libsndfile_tags(path)
    return Tags(
        title=values.get("title") or readable(path.stem),
        artist=values.get("artist"),
        album=values.get("album"),
        genre=values.get("genre"),
    )


def _first(values: list[object] | None) -> str | None:
    text = str(values[0]).strip() if values else ""
    return text or None


def _libsndfile_tags(path: Path) -> dict[str, str | None]:
    """Tags libsndfile knows where mutagen found none (a WAV's RIFF INFO chunk, an AIFF's). It reads an
    open file, since it cannot open a name that is not UTF-8."""
    try:
        with open(path, "rb") as raw, sf.SoundFile(raw) as f:
            found = f.copy_metadata()
    except Exception:  # not a file libsndfile reads: no tags
        return {}
    return {key: _first([found[key]]) if key in found else None for key in _KEYS}
