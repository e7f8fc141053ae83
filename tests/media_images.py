"""Test helpers that write photos: ordinary ones in any format Pillow (or pillow-heif) saves, broken
ones, and a valid but huge PNG that costs half a megabyte on disk and half a second to write (30000×30000)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

try:
    import pillow_heif
except ImportError:  # pragma: no cover
    pass
else:
    pillow_heif.register_heif_opener()  # lets write_photo save .heic


def write_photo(
    path: Path,
    size: tuple[int, int] = (640, 480),
    color: tuple[int, int, int] = (200, 60, 40),
    fmt: str | None = None,
    **options: object,
) -> Path:
    """A solid-colour RGB photo; ``fmt`` (Pillow's format name) defaults to the one the suffix implies.

    ``options`` go to ``Image.save`` (``quality``, ``exif`` ...)."""
    path = Path(path)
    Image.new("RGB", size, color).save(path, format=fmt, **options)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG of noise cut off at 60 %: the header is intact, the pixel data ends early."""
    path = Path(path)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, "JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def write_huge_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit greyscale PNG of any size, written chunk by chunk without an image in memory."""
    path = Path(path)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 (None) + packed pixels, all zero
    compressor = zlib.compressobj(1)  # fastest: zeros shrink ~200× even so
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        _chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        for _ in range(height):
            if data := compressor.compress(row):
                _chunk(f, b"IDAT", data)
        _chunk(f, b"IDAT", compressor.flush())
        _chunk(f, b"IEND", b"")
    return path


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))
