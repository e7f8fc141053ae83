"""Songs in: a music file becomes a :class:`Song` with its CLAP vector and tags.

Preparing a file (hash, tags, decoding its windows) needs no model and runs in worker threads;
embedding runs where the model is. The indexer overlaps the two.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from image2mood.audio import DecodedAudio, decode_windows
from image2mood.config import Settings
from image2mood.files import check_regular_file, content_hash
from image2mood.paths import stored_path
from image2mood.store.base import Song, StoreInfo, windowing_label
from image2mood.tags import Tags, read_tags

if TYPE_CHECKING:  # torch loads only when a song is embedded: a rerun over unchanged files needs none
    from image2mood.models.clap import ClapEncoder, Pooling


def song_id(path: Path) -> str:
    """A song's stable id: derived from its absolute path, so re-indexing updates it in place."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, Path(path).resolve().as_uri()))


ALL_WINDOWS = 64
"""``windows_per_song`` 0 ("all"): every window of a song up to this many (10:40 of 10-s windows), then this
many spread evenly, so that a long file's decoded audio stays bounded (about 120 MB at 48 kHz)."""


def window_limit(settings: Settings) -> int:
    """The most windows decoded per song under these settings."""
    return settings.windows_per_song or ALL_WINDOWS


class ClapIdentity(Protocol):
    """What a store records of the CLAP model that made its vectors: a loaded ``ClapEncoder`` or the
    ``ClapFacts`` read from its folder."""

    @property
    def name(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def preprocessing(self) -> str: ...


def store_info(encoder: ClapIdentity, settings: Settings) -> StoreInfo:
    """What a store built by this CLAP model and these settings records about itself."""
    windowing = windowing_label(settings.windows_per_song, settings.window_seconds)
    return StoreInfo(clap_model=encoder.name, clap_fingerprint=encoder.fingerprint, dim=encoder.dim,
                     windowing=windowing, preprocessing=encoder.preprocessing)


@dataclass(frozen=True)
class FileFacts:
    """What is known of a file before decoding: where it is, its id and content hash (and size and mtime)."""

    path: Path | str  # a file, or a music server's song (subsonic://HOST/ID, see image2mood.subsonic)
    id: str
    content_hash: str  # "" until :meth:`hashed`
    size: int | None = None
    mtime_ns: int | None = None

    def same_file(self, stored: Song) -> bool:
        """Whether the stored song was hashed from this file as it is now: same size and mtime, so it need
        not be read again."""
        return self.size is not None and (stored.size, stored.mtime_ns) == (self.size, self.mtime_ns)

    def hashed(self) -> FileFacts:
        """These facts with the file's content hash (reads the whole file once, in chunks)."""
        return self if self.content_hash else replace(self, content_hash=content_hash(Path(self.path)))


@dataclass(frozen=True)
class PreparedSong:
    """A decoded file ready for the model."""

    facts: FileFacts
    tags: Tags
    audio: DecodedAudio


def file_facts(path: Path, hashed: bool = True) -> FileFacts:
    """Id, size, mtime and content hash of a file (``hashed=False``: no hash, and nothing is read).

    Raises :class:`AudioDecodeError` naming the file when it is not a regular file (checked before
    anything opens it). Any name is accepted, UTF-8 or not (see :mod:`image2mood.paths`).
    """
    info = check_regular_file(path)  # before any read: a change after it is seen by the next run
    path = Path(path).resolve()
    facts = FileFacts(path=path, id=song_id(path), content_hash="", size=info.st_size, mtime_ns=info.st_mtime_ns)
    return facts.hashed() if hashed else facts


def prepare(facts: FileFacts, settings: Settings, sample_rate: int) -> PreparedSong:
    """Decode the file's windows and read its tags (raises AudioDecodeError for bad files)."""
    audio = decode_windows(
        Path(facts.path),
        sample_rate=sample_rate,
        window_seconds=settings.window_seconds,
        max_windows=window_limit(settings),
    )
    return PreparedSong(facts=facts, tags=read_tags(Path(facts.path)), audio=audio)


def embed(prepared: PreparedSong, encoder: ClapEncoder, pooling: Pooling = "mean") -> Song:
    """The stored form of a prepared file: its window vectors with where each window starts, their pooled
    (``pooling``), L2-normalised CLAP vector, and metadata."""
    from image2mood.models.clap import pool

    facts, tags, audio = prepared.facts, prepared.tags, prepared.audio
    windows = encoder.window_vectors(audio.windows)
    return Song(
        id=facts.id, path=stored_path(facts.path), content_hash=facts.content_hash, title=tags.title,
        artist=tags.artist, album=tags.album, genre=tags.genre,
        duration=round(audio.duration, 3), size=facts.size, mtime_ns=facts.mtime_ns,
        window_starts=audio.starts, window_seconds=len(audio.windows[0]) / encoder.sample_rate,
        vector=pool(windows, pooling), windows=windows,
    )
