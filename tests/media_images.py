"""Test helpers that write photos: ordinary ones in any format Pillow (or pillow-heif) saves, broken
ones, and valid but huge PNGs that cost little on disk (a 30000×30000 1-bit one: half a megabyte,
half a second to write)."""

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


# PNG (bit depth, colour type, channels) for the modes write_huge_png writes.
PNG_MODES = {
    "1": (1, 0, 1), "L": (8, 0, 1), "I;16": (16, 0, 1), "RGB": (8, 2, 3), "RGBA": (8, 6, 4), "RGBA;16": (16, 6, 4),
}


def write_huge_png(path: Path, width: int, height: int, mode: str = "1") -> Path:
    """A valid all-zero PNG of any size and mode (see :data:`PNG_MODES`), written chunk by chunk
    without an image in memory: black, or transparent black with alpha."""
    path = Path(path)
    depth, colour, channels = PNG_MODES[mode]
    row = bytes(1 + (width * depth * channels + 7) // 8)  # filter byte 0 (None) + packed pixels, all zero
    compressor = zlib.compressobj(1)  # fastest: zeros shrink ~200× even so
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        _chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
        for _ in range(height):
            if data := compressor.compress(row):
                _chunk(f, b"IDAT", data)
        _chunk(f, b"IDAT", compressor.flush())
        _chunk(f, b"IEND", b"")
    return path


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(png_chunk(kind, data))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
