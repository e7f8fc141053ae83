"""One reader of image–caption data for both trainers: Parquet, JSONL or CSV tables, and img2dataset's
``files`` and ``webdataset`` output folders (read by :mod:`training.shards`).

By default the columns are ``image`` (a path under ``--images``, or the image's bytes in Parquet)
and ``caption``. The LAION-COCO-NLLB shape reads as it comes: ``id``, ``url``, ``eng_caption``,
``captions`` (a list of ``[language code, caption]`` pairs, e.g. ``["kor_Hang", "..."]``) and
``score``; its images are files named by ``id`` under ``--images`` (as img2dataset writes them),
its English caption is ``eng_caption``, and ``caption_language`` picks a translation.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from image2mood.errors import Image2MoodError, ImageError
from image2mood.images import load_photo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic")
NLLB_CAPTION, NLLB_TRANSLATIONS, NLLB_ID = "eng_caption", "captions", "id"
KEY_COLUMNS = ("key", NLLB_ID)  # a row's own id (img2dataset's ``key``, LAION-COCO-NLLB's ``id``): the split's key
VALID_FRACTION = 0.2  # the 8:2 train/valid split


class DataError(Image2MoodError):
    """A table that cannot be trained on: unreadable, empty, or without the columns asked for."""


@dataclass(frozen=True, slots=True)
class TarMember:
    """An image inside an uncompressed tar shard, read by seeking to its data (the shard is never unpacked)."""

    shard: Path
    name: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.shard}/{self.name}"

    def read(self) -> bytes:
        with self.shard.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read(self.size)
        if len(data) != self.size:
            raise ImageError(f"{self}: the shard ends inside this member ({len(data)} of {self.size} bytes)")
        return data


@dataclass(frozen=True, slots=True)
class Pair:
    """One row: its caption, where its image is (a file, bytes, a tar member, or nothing in text-only
    tables) and its own key where the data gives one."""

    row: int
    caption: str
    image: Path | bytes | TarMember | None = None
    key: str | None = None

    @property
    def image_key(self) -> str:
        """A stable key for this row's image: its path (or shard/member), or a hash of its bytes."""
        if isinstance(self.image, bytes):
            return "sha1:" + hashlib.sha1(self.image).hexdigest()
        return str(self.image)

    @property
    def split_key(self) -> str:
        """What decides the row's side of the split: its own key, else its image, else its caption."""
        return self.key or (self.caption_key if self.image is None else self.image_key)

    @property
    def caption_key(self) -> str:
        return "sha1:" + hashlib.sha1(self.caption.encode()).hexdigest()


@dataclass
class Dataset:
    """The usable rows of a table, and the rows that were skipped with the reason for each."""

    source: str
    pairs: list[Pair]
    skipped: dict[int, str] = field(default_factory=dict)  # row → why it was left out of ``pairs``
    broken: dict[int, str] = field(default_factory=dict)  # row → why its image could not be used

    def image(self, pair: Pair, max_pixels: int = 210_000_000) -> Image.Image | None:
        """The pair's image, or None (the row is counted as broken) when it is missing or broken."""
        try:
            return load_image(pair, max_pixels)
        except ImageError as exc:
            self.broken[pair.row] = str(exc)
            return None

    def report(self) -> str:
        """One line: pairs read, rows skipped by reason, broken images with the first few reasons."""
        line = f"{self.source}: {len(self.pairs)} pairs"
        if self.skipped:
            reasons = Counter(self.skipped.values())
            line += f", {len(self.skipped)} rows skipped (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"
        if self.broken:
            first = "; ".join(list(self.broken.values())[:3])
            line += f", {len(self.broken)} broken images skipped ({first}{' ...' if len(self.broken) > 3 else ''})"
        return line


def read_pairs(path: Path, *, images: Path | None = None, caption_column: str | None = None,
               caption_language: str | None = None, image_column: str = "image",
               need_images: bool = True) -> Dataset:
    """Read ``path`` (a table, or a folder of tables such as a dataset's Parquet shards) into
    image–caption pairs; rows without a caption (or image reference) are skipped. Parquet is read
    batch by batch and only in the columns used, so a table with 200 translations a row stays small.
    An img2dataset output folder (``00000.tar`` ... or ``00000/`` ... beside their Parquet) is read
    shard by shard as a stream (:func:`training.shards.read_shards`)."""
    from training.shards import layout_of, read_shards

    if path.is_dir() and (layout := layout_of(path)):
        return read_shards(path, layout, caption_column=caption_column, caption_language=caption_language)
    files = _tables(path)
    columns, rows = _open(files[0])
    caption_of, caption_source = _caption_reader(path, columns, caption_column, caption_language)
    image_of, image_source = (_image_reader(path, columns, image_column, images) if need_images
                              else ((lambda row: None), None))
    key_column = next((c for c in KEY_COLUMNS if c in columns), None)
    needed = list(dict.fromkeys(c for c in (caption_source, image_source, key_column) if c))
    dataset = Dataset(source=str(path), pairs=[])
    number = -1
    for file in files:
        if file != files[0]:
            rows = _open(file)[1]
        try:
            for number, row in enumerate(rows(needed), number + 1):
                caption = caption_of(row)
                image = image_of(row) if caption else None
                if not caption or (need_images and image is None):
                    dataset.skipped[number] = "no caption" if not caption else "no image"
                    continue
                key = _text(str(row[key_column])) if key_column and row.get(key_column) is not None else None
                dataset.pairs.append(Pair(row=number, caption=caption, image=image, key=key))
        except DataError:
            raise
        except Exception as exc:  # pyarrow and decoding errors all mean "not a readable table"
            raise DataError(f"{file} could not be read ({type(exc).__name__}: {exc})") from exc
    if number < 0:
        raise DataError(f"{path} holds no rows; give a table with at least one image–caption pair")
    if not dataset.pairs:
        raise DataError(f"{path}: none of its {number + 1} rows has a usable caption"
                        + (" and image" if need_images else "") + f" ({dataset.report()})")
    return dataset


def text_pairs(sentences: list[str], source: str) -> Dataset:
    """Caption-only pairs (the text-bridge trainer's input) from a list of sentences."""
    return Dataset(source=source, pairs=[Pair(row=i, caption=s) for i, s in enumerate(sentences)])


def split(pairs: list[Pair], seed: int, valid_fraction: float = VALID_FRACTION) -> tuple[list[Pair], list[Pair]]:
    """A deterministic train/valid split (8:2 by default), decided by each row's :attr:`Pair.split_key`:
    the rows whose keys hash lowest under ``seed`` are the validation rows. The same rows and seed give
    the same split in any order (shards read in another order, a table shuffled); both sides keep the
    rows' order."""
    if len(pairs) < 2:
        raise DataError(f"{len(pairs)} usable pair(s) cannot be split into training and validation; "
                        "give at least 2 (a few thousand for a useful model)")
    n_valid = min(len(pairs) - 1, max(1, round(len(pairs) * valid_fraction)))
    rank = sorted(range(len(pairs)), key=lambda i: (_hash(seed, pairs[i].split_key), pairs[i].caption, i))
    valid = set(rank[:n_valid])
    return ([p for i, p in enumerate(pairs) if i not in valid], [p for i, p in enumerate(pairs) if i in valid])


def _hash(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()


def load_image(pair: Pair, max_pixels: int = 210_000_000) -> Image.Image:
    """The pair's image through the product's own validated loader; ImageError when missing or broken."""
    if pair.image is None:
        raise ImageError(f"row {pair.row} has no image")
    name = f"row {pair.row} ({'image bytes' if isinstance(pair.image, bytes) else pair.image})"
    if isinstance(pair.image, TarMember):
        try:
            return load_photo(pair.image.read(), name=name, max_pixels=max_pixels)
        except OSError as exc:
            raise ImageError(f"{name} could not be read ({exc})") from exc
    return load_photo(pair.image, name=name, max_pixels=max_pixels)


TABLE_SUFFIXES = (".parquet", ".pq", ".jsonl", ".json", ".ndjson", ".csv", ".tsv")


def _tables(path: Path) -> list[Path]:
    """``path`` itself, or the tables in the folder ``path`` (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
        if not files:
            raise DataError(f"folder {path} holds no tables ({', '.join(TABLE_SUFFIXES)})")
        return files
    if not path.is_file():
        raise DataError(f"table {path} does not exist")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown table format {path.suffix.lower()!r}; use .parquet, .jsonl or .csv")
    return [path]


def _open(path: Path) -> tuple[set[str], Callable[[list[str]], Iterator[dict[str, Any]]]]:
    """A table's column names, and a function that yields its rows (only the columns asked for, in Parquet)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.ParquetFile(path)
            return set(table.schema_arrow.names), lambda columns: (
                row for batch in table.iter_batches(batch_size=4096, columns=columns) for row in batch.to_pylist())
        with path.open(encoding="utf-8", newline="") as fh:
            if suffix in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                rows = list(reader)
                columns = set(reader.fieldnames or ())
            else:
                rows = [_json_row(path, n, line) for n, line in enumerate(fh, 1) if line.strip()]
                columns = set().union(*(row.keys() for row in rows[:100]))
    except DataError:
        raise
    except Exception as exc:  # pyarrow, csv and decoding errors all mean "not a readable table"
        raise DataError(f"{path} could not be read as a {suffix[1:]} table ({type(exc).__name__}: {exc})") from exc
    return columns, lambda _columns: iter(rows)


def _json_row(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {number} is not JSON ({exc.msg}); write one JSON object per line") from exc
    if not isinstance(row, dict):
        raise DataError(f"{path} line {number} is not a JSON object")
    return row


def _caption_reader(path: Path, columns: set[str], column: str | None,
                    language: str | None) -> tuple[Callable[[dict], str | None], str]:
    """A function from a row to its caption, chosen from the columns the table has; and that column."""
    if language:
        source = column or NLLB_TRANSLATIONS
        _require(path, columns, source, "--caption-column")
        return (lambda row: _translation(row.get(source), language)), source
    if column is None:
        column = "caption" if "caption" in columns or NLLB_CAPTION not in columns else NLLB_CAPTION
    _require(path, columns, column, "--caption-column")
    return (lambda row: _text(row.get(column))), column


def _translation(pairs: Any, language: str) -> str | None:
    """The caption for ``language`` in a LAION-COCO-NLLB translation list ``[[code, caption], ...]``."""
    for item in pairs or ():
        code, caption = (item.get("lang"), item.get("caption")) if isinstance(item, dict) else item[:2]
        if code == language:
            return _text(caption)
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _image_reader(path: Path, columns: set[str], column: str,
                  root: Path | None) -> tuple[Callable[[dict], Path | bytes | None], str]:
    """A function from a row to its image (bytes or an existing-or-not file path); and its column."""
    if column not in columns and NLLB_ID in columns:
        if root is None:
            raise DataError(f"{path} has no {column!r} column; its images are looked up by {NLLB_ID!r} "
                            "under --images ROOT (ROOT/<id>.jpg ...): give --images")
        return (lambda row: _by_id(root, row.get(NLLB_ID))), NLLB_ID
    _require(path, columns, column, "--image-column")

    def image_of(row: dict[str, Any]) -> Path | bytes | None:
        value = row.get(column)
        if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str) and value.strip():
            file = Path(value.strip()).expanduser()
            return file if file.is_absolute() or root is None else root / file
        return None

    return image_of, column


def _by_id(root: Path, key: Any) -> Path | None:
    if key is None or str(key).strip() == "":
        return None
    for suffix in IMAGE_SUFFIXES:
        if (root / f"{key}{suffix}").is_file():
            return root / f"{key}{suffix}"
    return root / f"{key}.jpg"  # missing: counted as a broken image when loaded


def _require(path: Path, columns: set[str], column: str, option: str) -> None:
    if column not in columns:
        raise DataError(f"{path} has no column {column!r} (its columns: {', '.join(sorted(columns))}); "
                        f"name the right one with {option}")
