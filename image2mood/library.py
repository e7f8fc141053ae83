"""Songs in: a music file becomes a :class:`Song` with its CLAP vector and tags.

Preparing a file (hash, tags, decoding its windows) needs no model and runs in worker threads;
embedding runs where the model is. The indexer overlaps the two.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from image2mood.audio import DecodedAudio, check_regular_file, content_hash, decode_windows
from image2mood.config import Settings
from image2mood.errors import Image2MoodError
from image2mood.models.clap import ClapEncoder
from image2mood.store.base import Song, StoreInfo, windowing_label
from image2mood.tags import Tags, read_tags


def song_id(path: Path) -> str:
    """A song's stable id: derived from its absolute path, so re-indexing updates it in place."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, Path(path).resolve().as_uri()))


def store_info(encoder: ClapEncoder, settings: Settings) -> StoreInfo:
    """What a store built by this encoder and these settings records about itself."""
    windowing = windowing_label(settings.windows_per_song, settings.window_seconds)
    return StoreInfo(clap_model=encoder.name, dim=encoder.dim, windowing=windowing,
                     preprocessing=encoder.preprocessing)


@dataclass(frozen=True)
class FileFacts:
    """What is known of a file before decoding: where it is, its id and content hash."""

    path: Path
    id: str
    content_hash: str


@dataclass(frozen=True)
class PreparedSong:
    """A decoded file ready for the model."""

    facts: FileFacts
    tags: Tags
    audio: DecodedAudio


def file_facts(path: Path) -> FileFacts:
    """Id and content hash of a file (reads the whole file once, in chunks).

    Raises :class:`Image2MoodError` naming the file when it is not a regular file (checked before
    anything opens it) or its name is not UTF-8 (a stored path is text: the store, the service and
    the web page need it).
    """
    check_regular_file(path)
    path = Path(path).resolve()
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise Image2MoodError(
            f"cannot index {shown}: its name is not valid UTF-8; rename it, e.g. with "
            f"`convmv -f latin1 -t utf8 --notest FILE` (for a Latin-1 name)"
        ) from None
    return FileFacts(path=path, id=song_id(path), content_hash=content_hash(path))


def prepare(facts: FileFacts, settings: Settings, sample_rate: int) -> PreparedSong:
    """Decode the file's windows and read its tags (raises AudioDecodeError for bad files)."""
    audio = decode_windows(
        facts.path,
        sample_rate=sample_rate,
        window_seconds=settings.window_seconds,
        max_windows=settings.windows_per_song,
    )
    return PreparedSong(facts=facts, tags=read_tags(facts.path), audio=audio)


def embed(prepared: PreparedSong, encoder: ClapEncoder) -> Song:
    """The stored form of a prepared file: its pooled, L2-normalised CLAP vector and metadata."""
    facts, tags = prepared.facts, prepared.tags
    return Song(
        id=facts.id, path=str(facts.path), content_hash=facts.content_hash, title=tags.title,
        artist=tags.artist, album=tags.album, genre=tags.genre,
        duration=round(prepared.audio.duration, 3), vector=encoder.encode_audio(prepared.audio.windows),
    )
