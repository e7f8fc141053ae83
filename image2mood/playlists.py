"""An answer's songs as a playlist file: M3U8 (``#EXTM3U`` with ``#EXTINF``) or XSPF (XML).

Each entry's location is the song's file path, or its ``/audio/<id>`` URL under a base URL, as the
caller chooses. A song's highlight (its best part for the answer) is noted where the format allows: M3U8's
``#EXTVLCOPT:start-time=`` and XSPF's VLC extension (``<vlc:option>start-time=...``), which VLC starts the song
at, and XSPF's ``<annotation>`` ("Best part 0:30–0:45") for people. Tags come from files people did not write, so nothing in them can break the format:
line breaks and control characters (C0, C1, Unicode separators) never reach an M3U8 line, and XSPF is
written by ElementTree (which escapes markup) after characters that XML 1.0 cannot hold are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from image2mood.answers import audio_url
from image2mood.errors import Image2MoodError
from image2mood.highlights import clock
from image2mood.store.base import Song

XSPF_NS = "http://xspf.org/ns/0/"
VLC_APPLICATION = "http://www.videolan.org/vlc/playlist/0"
"""The XSPF ``<extension application=...>`` VLC reads its options from."""
VLC_NS = "http://www.videolan.org/vlc/playlist/ns/0/"
CREATOR = "image2mood"
FORMATS = (".m3u8", ".m3u", ".xspf")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
"""What ends or hides an M3U line: C0 and C1 controls (NEL, U+0085, among them), DEL, the Unicode line
and paragraph separators, and the bidirectional overrides that reorder what a line shows."""
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # what stays as it is when a URL is quoted (its own reserved characters)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # XML 1.0's Char


class PlaylistError(Image2MoodError):
    """A playlist that cannot be written (an unknown file suffix)."""


@dataclass(frozen=True)
class Entry:
    """One track: where to play it and what to call it."""

    location: str
    title: str
    artist: str | None
    duration: float  # seconds
    highlight: tuple[float, float] | None = None  # the best part's start and end, seconds


def entries(songs: Sequence[Song], base_url: str | None = None,
            highlights: Mapping[str, Mapping[str, float] | None] | None = None) -> list[Entry]:
    """The songs in order; each located by its file path, or by ``base_url`` + ``/audio/<id>`` when given, with
    its highlight (``{start, end, ...}`` by song id) where ``highlights`` has one."""
    root = base_url.rstrip("/") if base_url else None
    return [Entry(location=f"{root}{audio_url(song.id)}" if root else song.path, title=song.title,
                  artist=song.artist, duration=song.duration, highlight=_span((highlights or {}).get(song.id)))
            for song in songs]


def _span(highlight: Mapping[str, float] | None) -> tuple[float, float] | None:
    return None if not highlight else (float(highlight["start"]), float(highlight["end"]))


def m3u8(tracks: Sequence[Entry], title: str | None = None) -> str:
    """An extended M3U playlist (UTF-8): ``#EXTINF:<seconds>,<artist> - <title>`` before each location."""
    lines = ["#EXTM3U"]
    if title:
        lines.append(f"#PLAYLIST:{_line(title)}")
    for track in tracks:
        seconds = round(track.duration) if track.duration > 0 else -1  # -1: unknown, as M3U has it
        lines.append(f"#EXTINF:{seconds},{_line(_label(track))}")
        if track.highlight:
            lines.append(f"#EXTVLCOPT:start-time={track.highlight[0]:g}")
        lines.append(_m3u_location(track.location))
    return "\n".join(lines) + "\n"


def xspf(tracks: Sequence[Entry], title: str | None = None, creator: str = CREATOR) -> str:
    """An XSPF 1 playlist: title and creator, and per track its location, title, creator and duration (ms)."""
    ET.register_namespace("", XSPF_NS)
    ET.register_namespace("vlc", VLC_NS)
    playlist = ET.Element(f"{{{XSPF_NS}}}playlist", version="1")
    if title:
        _child(playlist, "title", title)
    _child(playlist, "creator", creator)
    track_list = ET.SubElement(playlist, f"{{{XSPF_NS}}}trackList")
    for entry in tracks:
        track = ET.SubElement(track_list, f"{{{XSPF_NS}}}track")
        _child(track, "location", _uri(entry.location))
        _child(track, "title", entry.title)
        if entry.artist:
            _child(track, "creator", entry.artist)
        if entry.highlight:  # in XSPF's order: annotation after creator, extension last
            _child(track, "annotation", f"Best part {clock(entry.highlight[0])}–{clock(entry.highlight[1])}")
        if entry.duration > 0:
            _child(track, "duration", str(round(entry.duration * 1000)))
        if entry.highlight:
            vlc = ET.SubElement(track, f"{{{XSPF_NS}}}extension", application=VLC_APPLICATION)
            ET.SubElement(vlc, f"{{{VLC_NS}}}option").text = f"start-time={entry.highlight[0]:g}"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(playlist, encoding="unicode") + "\n"


def render(suffix: str, tracks: Sequence[Entry], title: str | None = None) -> str:
    """The playlist in the format its file suffix names (``.m3u8``, ``.m3u`` or ``.xspf``)."""
    suffix = suffix.lower()
    if suffix not in FORMATS:
        raise PlaylistError(f"a playlist file must end in {', '.join(FORMATS)}; got {suffix or 'no suffix'!r}")
    return xspf(tracks, title) if suffix == ".xspf" else m3u8(tracks, title)


def write(path: Path, tracks: Sequence[Entry], title: str | None = None) -> None:
    """Write the playlist to ``path``, its format chosen by the suffix."""
    text = render(path.suffix, tracks, title)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PlaylistError(f"cannot write the playlist {path}: {exc.strerror or exc}") from None


def _label(track: Entry) -> str:
    return f"{track.artist} - {track.title}" if track.artist else track.title


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _m3u_location(location: str) -> str:
    """A path as it is, unless it holds a line break or control character: then as a file:// URI."""
    if _CONTROL.search(location) is None:
        return location
    return _uri(location)


def _uri(location: str) -> str:
    """XSPF locations are URIs: an http(s) or other URL as it is, a file path as a file:// URI."""
    if "://" in location:
        return quote(location, safe=_URL_SAFE)  # a control character in a URL becomes its %XX
    path = Path(location)
    return path.as_uri() if path.is_absolute() else quote(location)


def _child(parent: ET.Element, name: str, text: str) -> None:
    ET.SubElement(parent, f"{{{XSPF_NS}}}{name}").text = _NOT_XML.sub("", text)
