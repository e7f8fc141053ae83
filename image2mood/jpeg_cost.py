"""What decoding a JPEG will cost, read from its markers before libjpeg sees a byte.

A progressive JPEG (or a sequential one whose components come in separate scans) is decoded into a
buffer of every DCT coefficient at full size, whatever the output scale, and every scan passes over
the blocks of its components, however few bytes it holds: a 1.2 MB file of 200 copies of one scan
over a 14000×14000 photo took 26 s of CPU. So the scans are counted and their passes added up from
the marker segments (walked by their lengths, entropy-coded data skipped to the next marker, as
libjpeg reads them), and a file over the limits is refused before it is decoded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from image2mood.errors import ImageError

MAX_SEGMENTS = 1000
"""Marker segments a JPEG may have (cameras write a few dozen): Pillow parses those before the first scan
in Python, about 1 s per million."""
MAX_SCANS = 32
"""Scans a JPEG may have: libjpeg's progressive scripts write 10 (colour), 6 (grey) or 18 (CMYK)."""
MAX_SCAN_PIXELS = 1_600_000_000
"""Samples all scans together may pass over: about 1 s of CPU for the costliest scans. libjpeg's 10 scans
pass over 8 times a 4:2:0 photo's pixels, 640 MP for the 80 MP the default decode memory admits."""

# The next marker with a length or EOI: 0xFF 0x00 is a stuffed data byte, 0xFF 0xFF fill, RST0-7 and
# SOI stand alone (inside entropy-coded data, RSTs may come every few blocks).
_NEXT_MARKER = re.compile(rb"\xff[\x02-\xcf\xd9-\xfe]")
_EOI, _SOS = 0xD9, 0xDA
_FRAMES = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_BLOCK = 8
_COEFFICIENT_BYTES = 64 * 2  # one 8×8 block of 16-bit coefficients


@dataclass(frozen=True)
class JpegLayout:
    """The frame and the scans of a JPEG's first image (an MPO's first picture), as libjpeg reads them."""

    width: int
    height: int
    progressive: bool
    sampling: dict[int, tuple[int, int]]  # component id: (horizontal, vertical) sampling factor
    scans: tuple[tuple[int, ...], ...]  # the component ids of each scan, up to MAX_SCANS + 1 of them
    segments: int  # marker segments, up to MAX_SEGMENTS + 1

    def blocks(self, component: int) -> int:
        """8×8 blocks libjpeg keeps for a component: its size in blocks rounded up to its sampling factors."""
        h, v = self.sampling.get(component, (1, 1))
        hmax = max(f for f, _ in self.sampling.values())
        vmax = max(f for _, f in self.sampling.values())
        across = math.ceil(self.width * h / (hmax * _BLOCK))
        down = math.ceil(self.height * v / (vmax * _BLOCK))
        return _round_up(across, h) * _round_up(down, v)

    @property
    def kind(self) -> str:
        """What the file is, in words: "progressive JPEG", "JPEG of 3 separate scans" or "JPEG"."""
        if self.progressive:
            return "progressive JPEG"
        return f"JPEG of {len(self.scans)} separate scans" if self.buffered else "JPEG"

    @property
    def buffered(self) -> bool:
        """Whether libjpeg keeps every coefficient (``has_multiple_scans``): progressive, or a first scan
        without all the components."""
        return self.progressive or bool(self.scans) and len(self.scans[0]) < len(self.sampling)

    @property
    def coefficient_bytes(self) -> int:
        """The full-size coefficient buffer a buffered file is decoded through; 0 for one interleaved scan."""
        return sum(map(self.blocks, self.sampling)) * _COEFFICIENT_BYTES if self.buffered else 0

    @property
    def scan_pixels(self) -> int:
        """Samples the scans pass over, all together (a scan visits every block of its components)."""
        return sum(self.blocks(c) for scan in self.scans for c in scan) * _BLOCK * _BLOCK


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def read_layout(data: bytes) -> JpegLayout:
    """The layout of the JPEG in ``data`` (which starts with SOI); 0×0 without a frame header (libjpeg
    refuses such a file). Counting stops after MAX_SCANS + 1 scans or MAX_SEGMENTS + 1 segments."""
    frame: tuple[int, int, bool, dict[int, tuple[int, int]]] | None = None
    scans: list[tuple[int, ...]] = []
    pos = segments = 0
    while len(scans) <= MAX_SCANS and segments <= MAX_SEGMENTS and (found := _NEXT_MARKER.search(data, pos)):
        code, pos = data[found.start() + 1], found.end()
        if code == _EOI:
            break
        segments += 1
        if pos + 2 > len(data):
            break  # truncated: libjpeg stops here too
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment, pos = data[pos + 2:pos + length], pos + max(length, 2)
        if code in _FRAMES and frame is None and len(segment) >= 6:
            frame = _frame(code, segment)
        elif code == _SOS and segment:
            scans.append(tuple(segment[1:1 + 2 * segment[0]:2]))
    width, height, progressive, sampling = frame or (0, 0, False, {1: (1, 1)})
    return JpegLayout(width, height, progressive, sampling, tuple(scans), segments)


def _frame(code: int, segment: bytes) -> tuple[int, int, bool, dict[int, tuple[int, int]]]:
    """Width, height, progressiveness and component sampling factors from an SOFn segment."""
    height, width, count = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    sampling = {}
    for i in range(6, min(6 + 3 * count, len(segment) - 2), 3):
        factors = segment[i + 1]
        sampling[segment[i]] = (max(1, factors >> 4), max(1, factors & 15))
    return width, height, code in _PROGRESSIVE, sampling or {1: (1, 1)}


def check_scans(data: bytes, name: str) -> JpegLayout:
    """The layout of a JPEG whose scans are within the limits; :class:`ImageError` for one over them."""
    layout = read_layout(data)
    kind = "progressive JPEG" if layout.progressive else "JPEG"
    size = f"{layout.width}×{layout.height}"
    if layout.segments > MAX_SEGMENTS:
        raise ImageError(
            f"{name} is a {kind} with more than {MAX_SEGMENTS:,} marker segments (cameras write a few dozen); "
            "image2mood refuses it: re-save it as JPEG"
        )
    if len(layout.scans) > MAX_SCANS:
        raise ImageError(
            f"{name} is a {size} {kind} of more than {MAX_SCANS} scans (libjpeg writes 6 to 18), each decoded "
            "over the whole photo; image2mood refuses it: re-save it as a baseline (non-progressive) JPEG"
        )
    if layout.scan_pixels > MAX_SCAN_PIXELS:
        raise ImageError(
            f"{name} is a {size} {kind} of {len(layout.scans)} scans, each decoded over the whole photo: "
            f"{layout.scan_pixels / 1e6:,.0f} MP in all, and the limit is {MAX_SCAN_PIXELS / 1e6:,.0f} MP: "
            "re-save it as a baseline (non-progressive) JPEG or shrink it"
        )
    return layout
