"""A song as the store holds it (:class:`Song`), a search's :class:`Hit`, a :class:`SongFilter`, and the
names of the vectors a song has."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from image2mood.errors import StoreError

VECTOR_NAME = "audio"
"""The named vector that holds a song's CLAP audio embedding (its windows pooled): the one searched."""
WINDOWS_NAME = "windows"
"""The named multivector that holds a song's window vectors, one per decoded window (never searched: read
for the songs of an answer, to find their best part). Stored as float16, on disk (``bench/windows.py``)."""


@dataclass(frozen=True)
class Song:
    """One song of the library as stored: its id, its payload and (optionally) its vector.

    Equality compares the payload fields only, never the vector.
    """

    id: str
    path: str
    content_hash: str
    title: str
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    duration: float = 0.0
    size: int | None = None  # the file's size and mtime when it was hashed: a rerun trusts them (None: unknown)
    mtime_ns: int | None = None
    window_starts: tuple[float, ...] | None = None
    """Where each of ``windows`` starts in the song, seconds; None: no window vectors stored."""
    window_seconds: float | None = None
    """How long each window is, seconds (a song shorter than a window: the song's length)."""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    windows: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The window vectors, ``[len(window_starts), dim]`` (read only when asked for: ``with_windows``)."""

    def __post_init__(self) -> None:
        if self.window_starts is not None and not isinstance(self.window_starts, tuple):
            object.__setattr__(self, "window_starts", tuple(float(t) for t in self.window_starts))

    def to_payload(self) -> dict[str, Any]:
        """The stored payload: every field but ``id``, ``vector`` and ``windows``."""
        return {
            "path": self.path,
            "content_hash": self.content_hash,
            "title": self.title,
            "artist": self.artist,
            "album": self.album,
            "genre": self.genre,
            "duration": float(self.duration),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "window_starts": None if self.window_starts is None else list(self.window_starts),
            "window_seconds": self.window_seconds,
        }

    @classmethod
    def from_payload(cls, id: Any, payload: Mapping[str, Any] | None, vector: Any = None) -> Song:
        """Rebuild a song from a backend record (id as str or UUID, vector as list/dict/array; a dict may
        hold the window vectors too)."""
        p = payload or {}
        windows = None
        if isinstance(vector, Mapping):
            windows = vector.get(WINDOWS_NAME)
            vector = vector.get(VECTOR_NAME)
        return cls(
            id=str(id),
            path=p.get("path", ""),
            content_hash=p.get("content_hash", ""),
            title=p.get("title", ""),
            artist=p.get("artist"),
            album=p.get("album"),
            genre=p.get("genre"),
            duration=float(p.get("duration") or 0.0),
            size=p.get("size"),
            mtime_ns=p.get("mtime_ns"),
            window_starts=p.get("window_starts"),
            window_seconds=p.get("window_seconds"),
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            windows=None if windows is None else np.asarray(windows, dtype=np.float32),
        )


@dataclass(frozen=True)
class Hit:
    """A search result: the song (without its vector) and its cosine similarity to the query."""

    song: Song
    score: float


@dataclass(frozen=True)
class SongFilter:
    """Restricts a search; every given condition must hold."""

    artist: str | None = None
    genre: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    exclude_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse bounds the backend cannot compare (a NaN once crashed the embedded engine)."""
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"song filter: {name} must be a finite number of seconds ≥ 0, got {value!r}")
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError(f"song filter: min_duration ({self.min_duration:g}) is more than "
                             f"max_duration ({self.max_duration:g})")

    def matches(self) -> dict[str, str]:
        """Exact-match conditions, payload key → value."""
        return {k: v for k, v in (("artist", self.artist), ("genre", self.genre)) if v is not None}

    def has_duration_range(self) -> bool:
        """Whether a duration bound (inclusive) is given."""
        return self.min_duration is not None or self.max_duration is not None


def canonical_id(value: str) -> str:
    """A point id as the canonical UUID string; anything else is a StoreError."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise StoreError(f"song id {value!r} is not a UUID") from None
