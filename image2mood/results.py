"""Kept answers: what a ``result_id`` names, so that an answer can be shared (/r/<id>) and leave as a playlist.

A result holds the caption, the moods, the query vector, the songs' ids with their scores, moods and
places on the mood map, and when it was made; the photo itself never, only a small JPEG thumbnail when
the person chose to share it. Each result is one JSON file in a folder, written atomically, named by
a random 128-bit id (checked strictly before any file is touched).

An answer is not written when it is made: it is *held* in memory (the last :data:`HELD_ANSWERS`), and
written only when someone *keeps* it: opens its share page, asks for its playlist or sends it to the
music server. So a flood of searches fills no disk. Kept results expire after a set time (an expired
one is not served), and the folder holds at most a set count and size: each write sweeps the expired
ones away, then the oldest while the folder is over either cap.

That is the folder backend, :class:`ResultStore`, for the embedded store. When the songs are in a Qdrant
server, :func:`open_results` keeps the answers in that server instead (:mod:`image2mood.results_qdrant`),
held ones included, so every service replica serves every answer. Both are :class:`Results`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from image2mood.answers import highlights_note
from image2mood.config import Settings
from image2mood.errors import Image2MoodError

if TYPE_CHECKING:  # recommend imports torch; reading a result should not
    from image2mood.recommend import Recommendation
    from image2mood.store.base import SongStore

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
"""What ``secrets.token_urlsafe(16)`` makes: 16 random bytes, 22 URL-safe characters."""
THUMBNAIL_PX = 320
HELD_ANSWERS = 1000
"""Answers held in memory until kept: about 27 KiB each with ten songs (measured), a shared photo's thumbnail
up to 30 kB more, so at most some 60 MB in all."""


class ResultStoreError(Image2MoodError):
    """The results folder (or the answers' Qdrant collection) cannot be written or read."""


@dataclass(frozen=True)
class SavedResult:
    """One kept answer, as its JSON file holds it."""

    id: str
    created: float  # Unix time
    route: str
    moods: list[dict[str, Any]]
    vector: list[float]
    songs: list[dict[str, Any]]  # per song: id, score, moods, valence, arousal, highlight ({start, end, score} or None)
    caption: str | None = None  # as the captioner wrote it
    query: str | None = None  # the words searched for, or the song asked about
    valence: float | None = None
    arousal: float | None = None
    thumbnail: bytes | None = field(default=None, repr=False)  # JPEG, only when the person shared it
    highlights_note: str | None = None  # why songs have no highlight (see image2mood.answers.highlights_note)
    captions: dict[str, str] = field(default_factory=dict)  # page language → caption (image2mood.captions)
    language: str | None = None  # the page language the answer was asked in: its share page's and playlists'

    @property
    def song_ids(self) -> list[str]:
        return [song["id"] for song in self.songs]

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["thumbnail"] = base64.b64encode(self.thumbnail).decode("ascii") if self.thumbnail else None
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SavedResult:
        thumbnail = body.get("thumbnail")
        return cls(**{**body, "thumbnail": base64.b64decode(thumbnail) if thumbnail else None})


def new_id() -> str:
    return secrets.token_urlsafe(16)


def valid_id(result_id: str) -> bool:
    """True for what :func:`new_id` could have made; nothing else is ever looked up on disk."""
    return ID_PATTERN.fullmatch(result_id) is not None


def thumbnail_jpeg(image: Image.Image, size: int = THUMBNAIL_PX) -> bytes:
    """A small JPEG of the photo (its longer side at most ``size`` px), with none of the original's metadata."""
    scale = min(1.0, size / max(image.size))
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(shape, Image.Resampling.LANCZOS, reducing_gap=3.0).convert("RGB")  # no full-size copy
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80, optimize=True)
    return out.getvalue()


def result_from(rec: Recommendation, query: str | None = None, thumbnail: bytes | None = None,
                language: str | None = None) -> SavedResult:
    """What is kept of an answer (a new id, made now), asked in page ``language``."""
    point = rec.point.to_json() if rec.point else {}
    songs = [{"id": ranked.song.id, "score": round(ranked.score, 4), "moods": [m.to_json() for m in ranked.moods],
              **(ranked.point.to_json() if ranked.point else {}),
              "highlight": ranked.highlight.to_json() if ranked.highlight else None} for ranked in rec.songs]
    return SavedResult(id=new_id(), created=time.time(), route=rec.route, moods=[m.to_json() for m in rec.moods],
                       vector=[round(float(x), 6) for x in rec.vector], songs=songs, caption=rec.caption,
                       query=query, valence=point.get("valence"), arousal=point.get("arousal"), thumbnail=thumbnail,
                       highlights_note=highlights_note(rec.songs),
                       captions=dict(rec.captions), language=language)


class Results(Protocol):
    """Where kept answers live: :class:`ResultStore` (a folder) or :class:`image2mood.results_qdrant.QdrantResults`."""

    ttl_s: float

    def hold(self, result: SavedResult) -> SavedResult:
        """Remember an answer, to be kept on demand (the oldest held ones are forgotten past a cap)."""

    def keep(self, result_id: str) -> SavedResult | None:
        """The kept answer with this id (a held one is kept now); None when malformed, unknown or expired."""

    def save(self, result: SavedResult) -> SavedResult:
        """Keep an answer now, then sweep back within the lifetime and caps."""

    def get(self, result_id: str) -> SavedResult | None:
        """The kept answer with this id, or None."""

    def sweep(self, keep: str | None = None) -> int:
        """Delete the expired answers, then the oldest while over the caps (never the answer ``keep``)."""


def open_results(settings: Settings, store: SongStore | None = None) -> Results:
    """Where this service keeps its answers: the Qdrant server of a server ``store``, in the collection
    ``<collection>-answers`` through the store's own client; else the results folder. The lifetime and caps
    are the settings' (IMAGE2MOOD_RESULT_TTL_HOURS, _RESULTS_MAX_COUNT, _RESULTS_MAX_MB) either way."""
    if store is not None and store.kind == "server":
        from image2mood.results_qdrant import SUFFIX, QdrantResults
        from image2mood.store.server import ServerStore

        assert isinstance(store, ServerStore)
        return QdrantResults(store.client, store.collection + SUFFIX, settings.result_ttl_hours,
                             settings.results_max_count, _max_bytes(settings), layout=store.layout.arguments())
    return ResultStore.configured(settings)


def _max_bytes(settings: Settings) -> int:
    return int(settings.results_max_mb * (1 << 20))


class ResultStore:
    """A folder of kept results, one ``<id>.json`` each, kept for ``ttl_hours``, at most ``max_count`` files
    and ``max_bytes`` bytes; and the answers held in memory until they are kept."""

    def __init__(self, folder: Path, ttl_hours: float, max_count: int = 10_000, max_bytes: int = 500 << 20,
                 held: int = HELD_ANSWERS) -> None:
        self.folder, self.ttl_s = folder, ttl_hours * 3600
        self.max_count, self.max_bytes, self.held = max_count, max_bytes, held
        self._held: OrderedDict[str, SavedResult] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def configured(cls, settings: Settings) -> ResultStore:
        """The results folder, lifetime and caps the settings name (IMAGE2MOOD_RESULTS, _RESULT_TTL_HOURS,
        _RESULTS_MAX_COUNT, _RESULTS_MAX_MB)."""
        return cls(settings.results.expanduser(), settings.result_ttl_hours, settings.results_max_count,
                   _max_bytes(settings))

    def hold(self, result: SavedResult) -> SavedResult:
        """Remember ``result`` in memory (the oldest held one is forgotten past ``held``), to be kept on demand."""
        with self._lock:
            self._held[result.id] = result
            while len(self._held) > self.held:
                self._held.popitem(last=False)
        return result

    def keep(self, result_id: str) -> SavedResult | None:
        """The kept result with this id; a held one is written now. None when the id is malformed, unknown
        (never made, or forgotten before it was kept) or expired."""
        if not valid_id(result_id):
            return None
        with self._lock:  # one writer per id: a second request for it finds the file
            held = self._held.pop(result_id, None)
            if held is not None and not self._expired(held.created):
                self._write(held)
                return held
        return self.get(result_id)

    def save(self, result: SavedResult) -> SavedResult:
        """Write ``result`` now (a crash leaves no half file), then sweep the folder back within its caps."""
        with self._lock:
            self._write(result)
        return result

    def get(self, result_id: str) -> SavedResult | None:
        """The kept result with this id, or None when the id is malformed, unknown, unreadable or expired."""
        if not valid_id(result_id):
            return None
        try:
            result = SavedResult.from_json(json.loads(self._path(result_id).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        return None if self._expired(result.created) else result

    def sweep(self, keep: str | None = None) -> int:
        """Delete the expired results (by their files' times: a result's file is written once), then the
        oldest while the folder holds over ``max_count`` files or ``max_bytes`` bytes, never the result
        ``keep``; how many went."""
        files: list[tuple[float, int, Path]] = []
        removed = 0
        for path in self.folder.glob("*.json"):
            try:
                stat = path.stat()
                if self._expired(stat.st_mtime):
                    path.unlink()
                    removed += 1
                else:
                    files.append((stat.st_mtime, stat.st_size, path))
            except OSError:
                continue  # gone already, or not ours to remove
        count, size = len(files), sum(f[1] for f in files)
        for _, bytes_, path in sorted(f for f in files if f[2].name != f"{keep}.json"):  # the oldest first
            if count <= self.max_count and size <= self.max_bytes:
                break
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
            count, size = count - 1, size - bytes_
        return removed

    def _write(self, result: SavedResult) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(result.to_json(), fh, ensure_ascii=False)
                os.replace(tmp, self._path(result.id))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ResultStoreError(f"cannot keep the answer in {self.folder}: {exc.strerror or exc}; "
                                   "set IMAGE2MOOD_RESULTS to a writable folder") from None
        self.sweep(keep=result.id)

    def _expired(self, created: float) -> bool:
        return time.time() - created > self.ttl_s

    def _path(self, result_id: str) -> Path:
        return self.folder / f"{result_id}.json"
