"""What `index ray` indexes: folders, manifests and object-store prefixes, listed as one kind of row.

A SOURCE is a folder (walked as `index` walks it), a manifest (Parquet, CSV or JSONL with a ``path`` or
``uri`` column and optional ``song_id``, ``artist``, ``title`` and ``album``), or a prefix that pyarrow's
file systems read (``s3://``, ``gs://``, ``file://``). A ``file://`` prefix and a manifest's local paths
become plain local files, so they give the same songs (ids, stored paths) as the folder does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from image2mood.files import SUPPORTED_SUFFIXES, iter_audio_files
from image2mood.errors import Image2MoodError
from image2mood.store.base import canonical_id

MANIFEST_SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")
TAG_COLUMNS = ("artist", "title", "album")


class SourceError(Image2MoodError):
    """A SOURCE that cannot be listed: missing, an unreadable manifest, a file system pyarrow lacks."""


@dataclass(frozen=True)
class Item:
    """One song to index: a local file, or an object a pyarrow file system reads (``uri``)."""

    location: str  # a local path, or an object's URI (s3://bucket/key)
    remote: bool = False
    song_id: str | None = None  # the manifest's own id for it, as a canonical UUID
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    size: int | None = None  # known without reading it (a remote object's listing)
    mtime_ns: int | None = None

    def to_row(self) -> dict:
        return asdict(self)


def list_sources(sources: Iterable[str]) -> list[Item]:
    """Every song the SOURCEs name, each once, in a deterministic order."""
    items: dict[str, Item] = {}
    for source in sources:
        for item in _list(source):
            items.setdefault(item.location, item)
    return list(items.values())


def local_roots(sources: Iterable[str]) -> list[Path]:
    """The local folders and files among the SOURCEs (what `--prune` may prune under); manifests and
    remote prefixes name no folder to prune."""
    roots = []
    for source in sources:
        if source.startswith("file://"):
            roots.append(_file_uri_path(source))
        elif "://" not in source and Path(source).suffix.lower() not in MANIFEST_SUFFIXES:
            roots.append(Path(source))
    return roots


def _list(source: str) -> Iterator[Item]:
    if source.startswith("file://"):
        yield from _folder(_file_uri_path(source))
    elif "://" in source:
        yield from _prefix(source)
    elif Path(source).suffix.lower() in MANIFEST_SUFFIXES and Path(source).is_file():
        yield from _manifest(Path(source))
    elif Path(source).exists():
        yield from _folder(Path(source))
    else:
        raise SourceError(f"SOURCE {source} does not exist: give a folder, a manifest "
                          f"({', '.join(MANIFEST_SUFFIXES)}) or an s3://, gs:// or file:// prefix")


def _file_uri_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _folder(root: Path) -> Iterator[Item]:
    for path in iter_audio_files([root]):
        yield Item(location=str(path.absolute()))


def _prefix(uri: str) -> Iterator[Item]:
    """The audio objects under a prefix, with their sizes and times from the listing (nothing is read)."""
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (OSError, ValueError, ImportError) as e:
        raise SourceError(f"cannot list {uri}: {e}") from e
    scheme = uri.split("://", 1)[0]
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and Path(info.path).suffix.lower() in SUPPORTED_SUFFIXES:
            mtime = info.mtime_ns if info.mtime_ns is not None else None
            yield Item(location=f"{scheme}://{info.path}", remote=True, size=info.size, mtime_ns=mtime)


def _manifest(path: Path) -> Iterator[Item]:
    """A manifest's rows: a ``path`` (relative to the manifest's folder, or absolute) or a ``uri`` each."""
    table = _read_table(path)
    columns = set(table.column_names)
    where = "path" if "path" in columns else "uri" if "uri" in columns else None
    if where is None:
        raise SourceError(f"manifest {path} has no 'path' or 'uri' column (it has {sorted(columns)})")
    for number, row in enumerate(table.to_pylist(), start=2 if path.suffix.lower() == ".csv" else 1):
        location = row.get(where)
        if not isinstance(location, str) or not location.strip():
            raise SourceError(f"manifest {path}, row {number}: no {where}")
        tags = {name: _text(row.get(name)) for name in TAG_COLUMNS}
        song_id = _song_id(row.get("song_id"))
        if location.startswith("file://"):
            location = str(_file_uri_path(location))
        if "://" in location:
            yield Item(location=location, remote=True, song_id=song_id, **tags)
        else:
            local = Path(location) if Path(location).is_absolute() else path.parent / location
            yield Item(location=str(local.absolute()), song_id=song_id, **tags)


def _read_table(path: Path):
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet

    try:
        if path.suffix.lower() == ".parquet":
            return pyarrow.parquet.read_table(path)
        if path.suffix.lower() == ".csv":
            return pyarrow.csv.read_csv(path)
        return pyarrow.json.read_json(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"cannot read manifest {path}: {e}") from e


def _text(value: object) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _song_id(value: object) -> str | None:
    """A manifest's song id as a point id: itself when it is a UUID, else a UUID made from it (stable)."""
    if value is None or str(value).strip() == "":
        return None
    try:
        return canonical_id(str(value))
    except Image2MoodError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"image2mood:song:{value}"))
