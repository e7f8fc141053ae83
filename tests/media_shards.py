"""Test helper: img2dataset's output written as img2dataset writes it, in its ``files`` and ``webdataset``
layouts (per sample ``KEY.jpg``, ``KEY.txt`` and ``KEY.json``; per shard a Parquet of url statuses), and
the equivalent table (one row per sample: key, image file, caption, translations)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from media_captions import CATEGORIES, KOREAN, captioned_image
from media_images import truncated_jpeg


def sample_rows(shards: int = 2, per_shard: int = 6, broken: bool = True) -> list[dict]:
    """The samples, img2dataset-keyed (5-digit shard, 4-digit index); the last of each shard is broken."""
    rows = []
    for shard in range(shards):
        for i in range(per_shard):
            category = (shard * per_shard + i) % len(CATEGORIES)
            rows.append({"shard": shard, "key": f"{shard:05d}{i:04d}", "category": category,
                         "caption": CATEGORIES[category][1], "seed": shard * 100 + i,
                         "captions": [["kor_Hang", KOREAN[category]], ["fra_Latn", f"légende {category}"]],
                         "broken": broken and i == per_shard - 1})
    return rows


def image_bytes(row: dict, scratch: Path) -> bytes:
    """The sample's JPEG; a broken sample's is a truncated JPEG."""
    if row["broken"]:
        return truncated_jpeg(scratch / f"broken-{row['key']}.jpg").read_bytes()
    buffer = io.BytesIO()
    captioned_image(row["category"], seed=row["seed"]).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _members(row: dict, scratch: Path) -> dict[str, bytes]:
    meta = {"url": f"https://example.org/{row['key']}.jpg", "key": row["key"], "status": "success",
            "caption": row["caption"], "captions": row["captions"], "width": 96, "height": 96}
    return {"jpg": image_bytes(row, scratch), "txt": row["caption"].encode(),
            "json": json.dumps(meta, ensure_ascii=False).encode()}


def write_img2dataset(folder: Path, rows: list[dict], layout: str) -> Path:
    """Write ``rows`` in ``layout`` (``files`` or ``webdataset``) under ``folder``, shards in order."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f".{folder.name}-scratch"
    scratch.mkdir(exist_ok=True)
    for shard in sorted({row["shard"] for row in rows}):
        mine = [row for row in rows if row["shard"] == shard]
        if layout == "webdataset":
            with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
                for row in mine:
                    for ext, data in _members(row, scratch).items():
                        info = tarfile.TarInfo(f"{row['key']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        else:
            (folder / f"{shard:05d}").mkdir(exist_ok=True)
            for row in mine:
                for ext, data in _members(row, scratch).items():
                    (folder / f"{shard:05d}" / f"{row['key']}.{ext}").write_bytes(data)
        statuses = [{"url": f"https://example.org/{r['key']}.jpg", "key": r["key"], "caption": r["caption"],
                     "status": "success"} for r in mine]
        statuses.append({"url": "https://example.org/gone.jpg", "key": None, "caption": "not fetched",
                         "status": "failed_to_download"})
        pq.write_table(pa.Table.from_pylist(statuses), folder / f"{shard:05d}.parquet")
    return folder


def write_equivalent_table(folder: Path, rows: list[dict]) -> Path:
    """The same samples as a table of image files (``key``, ``image``, ``caption``, ``captions``)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    table = []
    for row in rows:
        (images / f"{row['key']}.jpg").write_bytes(image_bytes(row, folder))
        table.append({"key": row["key"], "image": f"{row['key']}.jpg", "caption": row["caption"],
                      "captions": row["captions"]})
    pq.write_table(pa.Table.from_pylist(table), folder / "pairs.parquet")
    return folder / "pairs.parquet"
