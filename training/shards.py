"""img2dataset's output read as it comes, shard by shard.

Two layouts, each with one Parquet per shard (``00000.parquet``: every url with its download status):

- ``webdataset``: ``00000.tar``, ``00001.tar`` ... holding ``000000001.jpg``, ``.txt``, ``.json`` per sample;
- ``files``: folders ``00000/``, ``00001/`` ... holding the same files.

A sample's caption is its ``.txt`` (img2dataset's ``--caption_col``) or a field of its ``.json``
(``--save_additional_columns``, e.g. LAION-COCO-NLLB's ``captions`` translations). Tars are read in
stream mode, a member at a time, and never unpacked: a pair keeps the member's offset and size, and
its image is read from there when a trainer needs it. Nothing is kept from one shard to the next but
the pairs themselves (key, caption and where the image is), so memory does not grow with the shards.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.data import IMAGE_SUFFIXES, DataError, Dataset, Pair, TarMember, _caption_reader

Layout = Literal["webdataset", "files"]
_IMAGE_EXTS = {suffix[1:] for suffix in IMAGE_SUFFIXES}
_Member = tuple[str, Callable[[], "Path | TarMember | bytes"], Callable[[], bytes]]
"""A shard member: its name, how to get its image (a place or its bytes), and how to read its bytes."""


@dataclass(slots=True)
class Sample:
    """One sample of a shard: its key, its image (a file, a tar member, or its bytes when streamed with
    ``with_bytes``), the fields of its ``.json`` with the ``.txt`` as ``caption``, and what was wrong."""

    key: str
    image: Path | TarMember | bytes | None = None
    record: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def layout_of(folder: Path) -> Layout | None:
    """``webdataset`` for a folder of ``.tar`` shards, ``files`` for one of numbered shard folders, else None."""
    names = os.listdir(folder)
    if any(name.endswith(".tar") for name in names):
        return "webdataset"
    if any(name.isdigit() and (folder / name).is_dir() for name in names):
        return "files"
    return None


def shards(folder: Path, layout: Layout) -> list[Path]:
    """The shards of ``folder`` in name order."""
    if layout == "webdataset":
        return sorted(p for p in folder.iterdir() if p.suffix == ".tar")
    return sorted(p for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def samples(folder: Path, layout: Layout, with_bytes: bool = False) -> Iterator[Sample]:
    """Every sample of every shard, streamed in order; ``with_bytes`` reads each tar image as it passes."""
    for shard in shards(folder, layout):
        members = _tar_members(shard, with_bytes) if layout == "webdataset" else _folder_members(shard)
        yield from _grouped(shard, members)


def read_shards(folder: Path, layout: Layout, *, caption_column: str | None = None,
                caption_language: str | None = None) -> Dataset:
    """The pairs of an img2dataset output folder; samples without a caption or image, or with a broken
    ``.json``, are skipped and counted (broken images are counted when loaded, as for tables). Images are
    named by absolute paths, so the feature cache's keys do not depend on the folder the command ran in."""
    folder = folder.absolute()
    found = shards(folder, layout)
    dataset = Dataset(source=f"{folder} (img2dataset {layout}, {len(found)} shards{_fetched(folder)})", pairs=[])
    caption_of = None
    number = -1
    for number, sample in enumerate(samples(folder, layout)):
        if sample.problem:
            dataset.skipped[number] = sample.problem
            continue
        if caption_of is None:
            caption_of = _caption_reader(folder / sample.key, set(sample.record), caption_column,
                                         caption_language)[0]
        caption = caption_of(sample.record)
        if not caption or sample.image is None:
            dataset.skipped[number] = "no caption" if not caption else "no image"
            continue
        dataset.pairs.append(Pair(row=number, caption=caption, image=sample.image, key=sample.key))
    if number < 0:
        raise DataError(f"{folder} holds no samples in its {layout} shards")
    if not dataset.pairs:
        raise DataError(f"{folder}: none of its {number + 1} samples has a usable caption and image "
                        f"({dataset.report()})")
    return dataset


def _tar_members(shard: Path, with_bytes: bool) -> Iterator[_Member]:
    with tarfile.open(shard, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            place = TarMember(shard, member.name, member.offset_data, member.size)

            def read(m: tarfile.TarInfo = member) -> bytes:
                return tar.extractfile(m).read()  # type: ignore[union-attr]

            yield member.name, (read if with_bytes else lambda p=place: p), read


def _folder_members(shard: Path) -> Iterator[_Member]:
    for name in sorted(os.listdir(shard)):
        yield name, lambda n=name: shard / n, (shard / name).read_bytes


def _grouped(shard: Path, members: Iterator[_Member]) -> Iterator[Sample]:
    """Consecutive members sharing a key make one sample; a shard that breaks off marks the sample it was on
    (or, before any, one named after the shard) and ends."""
    sample: Sample | None = None
    try:
        for name, image, read in members:
            key, _, ext = _basename(name).partition(".")
            if sample is not None and key != sample.key:
                yield sample
                sample = None
            sample = sample or Sample(key=key)
            ext = ext.lower()
            if ext in _IMAGE_EXTS:
                sample.image = image()
            elif ext in ("txt", "json"):
                _add_text(sample, ext, read)
    except (tarfile.TarError, EOFError, OSError) as exc:
        problem = f"in a cut-short or unreadable shard ({shard.name}: {exc})"
        sample = sample or Sample(key=shard.stem)
        sample.problem = problem
    if sample is not None:
        yield sample


def _add_text(sample: Sample, ext: str, read: Callable[[], bytes]) -> None:
    """The ``.txt`` becomes the ``caption`` field (it wins over the ``.json``'s); a bad or unreadable one is a
    problem."""
    try:
        text = read().decode("utf-8")
        if ext == "txt":
            sample.record["caption"] = text
        else:
            fields = json.loads(text)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
            sample.record = {**fields, **sample.record}
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        sample.problem = f"broken .{ext}"
    except OSError as exc:
        sample.problem = f"unreadable .{ext} ({exc.strerror or exc})"


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _fetched(folder: Path) -> str:
    """``, N of M urls fetched`` from the shards' Parquet status columns, when they are there."""
    import pyarrow.parquet as pq

    total = fetched = 0
    for table in sorted(folder.glob("*.parquet")):
        try:
            status = pq.read_table(table, columns=["status"]).column("status").to_pylist()
        except Exception:  # noqa: BLE001  (another table, or none readable: the count is left out)
            return ""
        total, fetched = total + len(status), fetched + status.count("success")
    return f", {fetched} of {total} urls fetched" if total else ""
