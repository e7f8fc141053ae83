"""Evaluation sets: one query per JSONL line, and the songs' labels.

A query line::

    {"id": "q1", "photo": "photos/beach.jpg", "relevant": ["music/a.flac", "1b4e...-uuid"]}
    {"text": "rainy night in the city", "labels": ["calm", "night"]}

- the query is a ``photo`` (a path, relative to the set file's folder) or a ``text``;
- its relevance is ``relevant`` (song ids or file paths) and/or ``labels``. With labels alone, a song
  is relevant when its own labels share one with the query's;
- ``id`` is optional (default: the photo's name or the line number).

Song labels come from a CSV (columns ``song`` and ``labels``, labels split by ``;`` or ``|``) or a JSONL
file (``{"song": path or id, "labels": [...]}``), or from the genre tags in the store.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from image2mood.errors import Image2MoodError, StoreError
from image2mood.images import SUPPORTED as PHOTO_FORMATS
from image2mood.library import song_id
from image2mood.store.base import Song, canonical_id

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"})
_SPLIT = re.compile(r"[;|]")
_GENRE_SPLIT = re.compile(r"[;|/,]")


class EvalSetError(Image2MoodError):
    """An evaluation set or labels file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Query:
    id: str
    photo: Path | None = None
    text: str | None = None
    relevant: frozenset[str] = frozenset()  # song ids
    labels: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"id": self.id}
        body.update({"photo": str(self.photo)} if self.photo else {"text": self.text})
        if self.relevant:
            body["relevant"] = sorted(self.relevant)
        if self.labels:
            body["labels"] = sorted(self.labels)
        return body


def normalise_labels(labels: Iterable[str]) -> frozenset[str]:
    """Labels compare case-insensitively, without surrounding spaces."""
    return frozenset(label.strip().lower() for label in labels if label and label.strip())


def song_key(value: str, base: Path) -> str:
    """A song id from an id or a file path (relative paths against ``base``), as the indexer makes it."""
    try:
        return canonical_id(value)
    except StoreError:
        path = Path(value).expanduser()
        return song_id(path if path.is_absolute() else base / path)


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalSetError(f"cannot read {path}: {e}") from e
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalSetError(f"{path}:{number}: not JSON ({e.msg}); each line is one JSON object") from e
        if not isinstance(item, dict):
            raise EvalSetError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
        yield number, item


def _string_list(item: dict, field: str, where: str) -> list[str]:
    value = item.get(field, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalSetError(f"{where}: '{field}' must be a list of strings")
    return value


def load_set(path: Path) -> list[Query]:
    """Read an evaluation set; a bad line is an error naming the file, line and field."""
    path = Path(path)
    base = path.resolve().parent
    queries: list[Query] = []
    seen: set[str] = set()
    for number, item in _lines(path):
        where = f"{path}:{number}"
        photo, text = item.get("photo"), item.get("text")
        if (photo is None) == (text is None):
            raise EvalSetError(f"{where}: give exactly one of 'photo' (a path) or 'text'")
        if not isinstance(photo or text, str) or not (photo or text).strip():
            raise EvalSetError(f"{where}: '{'photo' if photo is not None else 'text'}' must be a non-empty string")
        photo_path = None
        if photo is not None:
            photo_path = Path(photo).expanduser()
            photo_path = (photo_path if photo_path.is_absolute() else base / photo_path).resolve()
            if not photo_path.is_file():
                raise EvalSetError(f"{where}: photo {photo_path} does not exist")
        relevant = frozenset(song_key(v, base) for v in _string_list(item, "relevant", where))
        labels = normalise_labels(_string_list(item, "labels", where))
        if not relevant and not labels:
            raise EvalSetError(f"{where}: give 'relevant' (song ids or paths) or 'labels' (mood words)")
        query_id = str(item.get("id") or (photo_path.name if photo_path else f"line {number}"))
        if query_id in seen:
            raise EvalSetError(f"{where}: query id {query_id!r} is used twice; give each line its own 'id'")
        seen.add(query_id)
        queries.append(Query(query_id, photo_path, text, relevant, labels))
    if not queries:
        raise EvalSetError(f"{path} holds no queries")
    return queries


def _label_rows(path: Path, key_fields: tuple[str, ...]) -> Iterator[tuple[str, str, list[str]]]:
    """(where, key, labels) from a CSV or JSONL labels file; the key column is the first of ``key_fields``."""
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, item in _lines(path):
            where = f"{path}:{number}"
            key = next((item[f] for f in key_fields if isinstance(item.get(f), str)), None)
            if key is None:
                raise EvalSetError(f"{where}: needs one of {', '.join(repr(f) for f in key_fields)}")
            yield where, key, _string_list(item, "labels", where)
        return
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EvalSetError(f"cannot read {path}: {e}") from e
    if not rows:
        raise EvalSetError(f"{path} has no rows; expected a header line with "
                           f"{key_fields[0]!r} and 'labels', then one row per item")
    key_field = next((f for f in key_fields if f in rows[0]), None)
    if key_field is None or "labels" not in rows[0]:
        raise EvalSetError(f"{path}: the header needs a {key_fields[0]!r} column and a 'labels' column "
                           f"(labels separated by ';'), found {list(rows[0])}")
    for number, row in enumerate(rows, 2):
        yield f"{path}:{number}", (row[key_field] or "").strip(), _SPLIT.split(row.get("labels") or "")


def load_song_labels(path: Path) -> dict[str, frozenset[str]]:
    """Song id → labels, from a CSV (``song,labels``) or JSONL (``{"song": ..., "labels": [...]}``)."""
    path = Path(path)
    base = path.resolve().parent
    return {song_key(key, base): normalise_labels(labels)
            for _, key, labels in _label_rows(path, ("song", "path", "id")) if key}


def labels_from_tags(songs: Iterable[Song]) -> dict[str, frozenset[str]]:
    """Song id → labels from the genre tags in the store ("Ambient; Chill" → {"ambient", "chill"})."""
    return {song.id: normalise_labels(_GENRE_SPLIT.split(song.genre)) for song in songs if song.genre}


def make_set(photos: Path, labels_file: Path, out: Path | None, warn) -> list[dict[str, object]]:
    """Set lines for the photos under ``photos`` that the labels file (``photo,labels``) names.

    Photo paths in the result are relative to ``out``'s folder when given, else absolute. Photos
    without labels and labels without a photo are reported through ``warn`` and left out.
    """
    photos = Path(photos).resolve()
    found = {p.relative_to(photos).as_posix(): p for p in sorted(photos.rglob("*"))
             if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES}
    if not found:
        raise EvalSetError(f"no photos under {photos} (formats: {PHOTO_FORMATS})")
    by_name = {}
    for rel, p in found.items():
        by_name.setdefault(p.name, []).append(rel)
    lines, used = [], set()
    for where, key, labels in _label_rows(Path(labels_file), ("photo", "path", "file")):
        rel = key if key in found else (by_name.get(Path(key).name) or [None])[0] if key else None
        labels = sorted(normalise_labels(labels))
        if rel is None:
            warn(f"{where}: no photo {key!r} under {photos}; left out")
            continue
        if not labels:
            warn(f"{where}: photo {key!r} has no labels; left out")
            continue
        used.add(rel)
        target = found[rel]
        shown = os.path.relpath(target, out.resolve().parent) if out is not None else str(target)
        lines.append({"id": rel, "photo": Path(shown).as_posix(), "labels": labels})
    for rel in sorted(set(found) - used):
        warn(f"{found[rel]}: not in {labels_file}; left out")
    if not lines:
        raise EvalSetError(f"no photo under {photos} is named in {labels_file}; its 'photo' column holds "
                           "file names or paths relative to the photos folder")
    return lines
