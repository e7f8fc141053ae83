"""Fuzzing the photo front door: hundreds of bad photos and bad fields posted to POST /api/recommend.

Every answer is a 4xx JSON error with a message, or a 200 when the file really is a photo; never a 5xx,
never a hang. Afterwards the service still answers a good photo and the store holds the same songs.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from indexer.pipeline import Indexer
from media import write_tone
from media_images import png_chunk
from service.app import create_app

SONGS = 3
RNG = np.random.default_rng(11)

REFUSE, ACCEPT, EITHER = "refuse", "accept", "either"
Case = tuple[str, bytes, str]  # (upload name, bytes, REFUSE / ACCEPT / EITHER)


def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _noise(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def _png(ihdr: tuple[int, int, int, int], *chunks: tuple[bytes, bytes], rows: bytes = b"") -> bytes:
    width, height, depth, colour = ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
        + b"".join(png_chunk(kind, data) for kind, data in chunks)
        + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")
    )


def _tiff(**overrides: tuple[int, list[int]]) -> bytes:
    """An 8×8 8-bit grey little-endian TIFF whose tags (by name: tag number as 't<N>') may be overridden."""
    pixels = bytes(range(64))
    tags: dict[int, tuple[int, list[int]]] = {  # tag: (TIFF type: 3 SHORT, 4 LONG; values)
        256: (4, [8]), 257: (4, [8]), 258: (3, [8]), 259: (3, [1]), 262: (3, [1]),
        273: (4, [8]), 277: (3, [1]), 278: (4, [8]), 279: (4, [64]),
    }
    tags.update({int(k[1:]): v for k, v in overrides.items()})
    ifd_at = 8 + len(pixels)
    extra = b""
    entries = b""
    for tag, (kind, values) in sorted(tags.items()):
        fmt = "<H" if kind == 3 else "<I"
        data = b"".join(struct.pack(fmt, v & (0xFFFF if kind == 3 else 0xFFFFFFFF)) for v in values)
        if len(data) <= 4:
            entries += struct.pack("<HHI", tag, kind, len(values)) + data.ljust(4, b"\0")
        else:
            offset = ifd_at + 2 + 12 * len(tags) + 4 + len(extra)
            entries += struct.pack("<HHII", tag, kind, len(values), offset)
            extra += data
    return b"II*\0" + struct.pack("<I", ifd_at) + pixels + struct.pack("<H", len(tags)) + entries + b"\0" * 4 + extra


def _gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF with a 2-colour table and one tiny LZW block per frame, each frame claiming its own size."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for width, height in frames:
        out += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return out + b";"


def _apng(size: tuple[int, int], frames: int, rows: bytes | None = None) -> bytes:
    """An animated RGBA PNG of all-zero frames the size of its canvas, every frame's data the same."""
    width, height = size
    data = zlib.compress(bytes((1 + width * 4) * height) if rows is None else rows, 9)
    chunks = [(b"acTL", struct.pack(">II", frames, 0))]
    for i in range(frames):
        control = struct.pack(">IIIIIHHBB", max(0, 2 * i - 1), width, height, 0, 0, 1, 50, 0, 0)
        chunks += [(b"fcTL", control), (b"IDAT", data) if i == 0 else (b"fdAT", struct.pack(">I", 2 * i) + data)]
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + b"".join(png_chunk(kind, chunk) for kind, chunk in chunks) + png_chunk(b"IEND", b"")
    )


def truncated() -> Iterator[Case]:
    """Each format, cut at 12 offsets from the first byte to the last."""
    im = _noise()
    sources = {
        "jpg": _encode(im, "JPEG"), "png": _encode(im, "PNG"), "webp": _encode(im, "WEBP"),
        "gif": _encode(im, "GIF"), "bmp": _encode(im, "BMP"), "tiff": _encode(im, "TIFF", compression="tiff_deflate"),
        "heic": _encode(im, "HEIF"), "progressive.jpg": _encode(im, "JPEG", progressive=True),
    }
    for suffix, data in sources.items():
        for cut in np.linspace(1, len(data) - 1, 12).astype(int):
            # Cut off only a trailer some decoders do not need, a photo may stay whole: then a 200 is right.
            yield f"cut{cut}.{suffix}", data[:cut], EITHER


def random_bytes() -> Iterator[Case]:
    magics = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0",
              b"MM\0*", b"BM", b"\0\0\0\x18ftypheic"]
    for i in range(45):
        data = magics[i % len(magics)] + RNG.bytes(int(RNG.integers(1, 5000)))
        yield f"random{i}.jpg", data, REFUSE


def wrong_extensions() -> Iterator[Case]:
    im = _noise()
    for fmt, suffix in (("PNG", "jpg"), ("JPEG", "png"), ("GIF", "webp"), ("WEBP", "gif"), ("BMP", "heic"),
                        ("TIFF", "jpeg"), ("JPEG", "txt"), ("PNG", "")):
        yield f"photo.{suffix}", _encode(im, fmt), ACCEPT  # a real photo: its name does not matter


def dimension_bombs() -> Iterator[Case]:
    yield "claims100k.png", _png((100_000, 100_000, 8, 6)), REFUSE
    yield "claims14400-rgba.png", _png((14_400, 14_400, 8, 6)), REFUSE  # under the pixel limit, over the budget
    yield "claims-zero.png", _png((0, 0, 8, 2)), REFUSE
    yield "claims-wide.png", _png((2**31 - 1, 1, 8, 2)), REFUSE
    yield "claims64k.gif", _gif((65535, 65535), [(65535, 65535)]), REFUSE
    yield "frame-grows.gif", _gif((10, 10), [(60000, 60000)]), REFUSE
    sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 65500, 65500) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    yield "claims65k.jpg", b"\xff\xd8" + sof + b"\xff\xd9", REFUSE
    yield "claims-huge.bmp", b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 0, 0, 0, 0), REFUSE
    yield "claims-huge.tiff", _tiff(t256=(4, [60000]), t257=(4, [60000]), t278=(4, [60000])), REFUSE
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (16383).to_bytes(3, "little") * 2
    yield "claims16k.webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x, REFUSE


def frame_bombs() -> Iterator[Case]:
    """Many big frames; only the first is ever decoded, so a small first frame makes a valid photo."""
    yield "many-huge-frames.gif", _gif((8000, 8000), [(8000, 8000)] * 400), EITHER  # each frame's data is short
    yield "huge-frames-small-screen.gif", _gif((16, 16), [(16, 16)] + [(60000, 60000)] * 400), EITHER
    yield "apng-100-frames.png", _apng((3000, 3000), 100), ACCEPT
    yield "apng-100-huge-frames.png", _apng((14400, 14400), 100, rows=bytes(1000)), REFUSE  # over the budget
    frames = [Image.new("RGB", (800, 800), (i * 40 % 256, 0, 0)) for i in range(12)]
    for fmt in ("PNG", "WEBP", "GIF"):
        data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=20,
                       **({"method": 0, "quality": 5} if fmt == "WEBP" else {}))
        yield f"animated.{fmt.lower()}", data, ACCEPT


def modes() -> Iterator[Case]:
    """Unusual but valid photos: each must give a 200."""
    yield "cmyk.jpg", _encode(_noise(mode="CMYK"), "JPEG"), ACCEPT
    yield "cmyk.tiff", _encode(_noise(mode="CMYK"), "TIFF"), ACCEPT
    grey16 = Image.fromarray(RNG.integers(0, 65535, (48, 64), dtype=np.uint16))
    yield "grey16.png", _encode(grey16, "PNG"), ACCEPT
    yield "grey16.tiff", _encode(grey16, "TIFF"), ACCEPT
    yield "rgb16.png", _png((8, 8, 16, 2), rows=b"".join(b"\0" + bytes(8 * 6) for _ in range(8))), ACCEPT
    yield "rgba16.png", _png((8, 8, 16, 6), rows=b"".join(b"\0" + bytes(8 * 8) for _ in range(8))), ACCEPT
    yield "la.png", _encode(_noise(mode="LA"), "PNG"), ACCEPT
    yield "one-bit.bmp", _encode(_noise(mode="1"), "BMP"), ACCEPT
    yield "one-pixel.png", _encode(Image.new("RGB", (1, 1)), "PNG"), ACCEPT
    yield "sliver.png", _encode(Image.new("RGB", (6000, 1)), "PNG"), ACCEPT


def metadata_bombs() -> Iterator[Case]:
    im = _noise()
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a JPEG APP1 segment holds at most 64 KB
    yield "huge-exif.jpg", _encode(im, "JPEG", exif=exif), ACCEPT
    for value in (0, 9, 65535):
        odd = Image.Exif()
        odd[0x0112] = value  # an Orientation that means nothing
        yield f"orientation{value}.jpg", _encode(im, "JPEG", exif=odd), ACCEPT
    yield "huge-exif.png", _encode(im, "PNG", exif=b"Exif\0\0" + RNG.bytes(3_000_000)), ACCEPT
    yield "huge-exif.webp", _encode(im, "WEBP", exif=RNG.bytes(3_000_000)), ACCEPT
    zeros = zlib.compress(bytes(50_000_000), 9)  # 50 MB of text in 50 KB, 50 times Pillow's limit for one chunk
    grey = (8, 8, 8, 0)
    # Pillow refuses these bombs (or skips the chunk) before inflating them: a 400 or a 200, never the 50 MB.
    yield "ztxt-bomb.png", _png(grey, (b"zTXt", b"comment\0\0" + zeros), rows=bytes(72)), EITHER
    yield "iccp-bomb.png", _png(grey, (b"iCCP", b"icc\0\0" + zeros), rows=bytes(72)), EITHER
    yield "many-text.png", _png(grey, *[(b"tEXt", b"k\0" + bytes(60_000))] * 200, rows=bytes(72)), ACCEPT
    yield "bad-iccp.png", _png(grey, (b"iCCP", b"icc\0\0" + zlib.compress(b"junk" * 10)), rows=bytes(72)), ACCEPT


def absurd_tiffs() -> Iterator[Case]:
    for name, tags in {
        "offset-past-end": {"t273": (4, [10**9])},
        "count-huge": {"t279": (4, [2**32 - 1])},
        "bits64": {"t258": (3, [64])},
        "bits3": {"t258": (3, [3])},
        "samples-1000": {"t277": (3, [1000])},
        "rows-zero": {"t278": (4, [0])},
        "rows-huge": {"t278": (4, [2**32 - 1])},
        "compression-unknown": {"t259": (3, [12345])},
        "compression-lzw-on-raw": {"t259": (3, [5])},
        "compression-jpeg-on-raw": {"t259": (3, [7])},
        "photometric-99": {"t262": (3, [99])},
        "width-zero": {"t256": (4, [0])},
        "orientation-99": {"t274": (3, [99])},
        "tiles-huge": {"t322": (4, [2**31]), "t323": (4, [2**31]), "t324": (4, [8]), "t325": (4, [64])},
        "many-strips": {"t273": (4, [8] * 5000), "t279": (4, [64] * 5000)},
        "planar-2": {"t284": (3, [2])},
        "predictor-3": {"t317": (3, [3]), "t259": (3, [8])},
        "extrasamples": {"t338": (3, [1, 1, 1])},
    }.items():
        yield f"{name}.tiff", _tiff(**tags), EITHER


def not_photos() -> Iterator[Case]:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9"><rect width="9e9" height="9e9"/></svg>'
    for name, data in {
        "drawing.jpg": svg, "drawing.svg": svg, "page.jpg": b"<!doctype html><html><body>hi</body></html>",
        "notes.jpg": b"shopping list\n" * 50, "data.jpg": b'{"a": 1}', "doc.jpg": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        "archive.jpg": b"PK\x03\x04" + bytes(100), "program.jpg": b"\x7fELF\x02\x01\x01" + bytes(100),
        "eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "ppm.jpg": _encode(_noise(), "PPM"),
        "empty.jpg": b"", "one-byte.jpg": b"\xff", "nul.png": bytes(1000), "": b"\xff\xd8\xff",
    }.items():
        yield name, data, REFUSE


def all_cases() -> list[Case]:
    return [case for family in (truncated, random_bytes, wrong_extensions, dimension_bombs, frame_bombs, modes,
                                metadata_bombs, absurd_tiffs, not_photos) for case in family()]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    root = tmp_path_factory.mktemp("library")
    for i in range(SONGS):
        write_tone(root / f"song{i}.flac", seconds=3, freq=200 + 90 * i, tags={"title": f"Song {i}", "artist": "Ana"})
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1)
    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root]).indexed == SONGS
    app = create_app(settings)
    yield app
    app.extensions["image2mood"].store.close()


def _post(client: FlaskClient, name: str, data: bytes, **fields: str):
    form = {"image": (io.BytesIO(data), name), **fields}
    return client.post("/api/recommend", data=form, content_type="multipart/form-data")


def _check(response, what: str, expected: str) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, (what, response.status_code, text[:300])
    assert "Traceback" not in text, what
    assert response.status_code == 200 or expected != ACCEPT, (what, "was refused", text[:300])
    if response.status_code == 200:
        assert expected != REFUSE, (what, "was accepted")
        assert len(response.get_json()["songs"]) == SONGS, what
        return
    assert 400 <= response.status_code < 500, (what, response.status_code)
    error = response.get_json()["error"]
    assert error["status"] == response.status_code and len(error["message"]) > 10, (what, error)


@pytest.mark.timeout(240)
def test_bad_photos_get_a_4xx_or_a_200_never_a_5xx(app, tmp_path: Path) -> None:
    cases = all_cases()
    assert len(cases) >= 200
    client = app.test_client()
    store = app.extensions["image2mood"].store
    before = store.count()
    statuses = {}
    for name, data, expected in cases:
        response = _post(client, name, data, top=str(SONGS))
        _check(response, name, expected)
        statuses[name] = response.status_code
    assert sum(s >= 400 for s in statuses.values()) >= 120  # most of them are bad
    assert _post(client, "good.jpg", _encode(_noise(), "JPEG"), top=str(SONGS)).status_code == 200
    assert store.count() == before == SONGS


BAD_FIELDS = [
    {"min_duration": "nan"}, {"max_duration": "nan"}, {"alpha": "nan"}, {"mmr": "nan"}, {"top": "nan"},
    {"min_duration": "-1"}, {"max_duration": "-inf"}, {"min_duration": "inf"}, {"alpha": "inf"}, {"alpha": "-1"},
    {"alpha": "2"}, {"mmr": "-0.5"}, {"top": "0"}, {"top": "101"}, {"top": "1.5"}, {"top": "-3"},
    {"min_duration": "10", "max_duration": "5"}, {"max_per_artist": "0"}, {"min_duration": "1e309"},
    {"alpha": "abc"}, {"top": "ten"}, {"artist": "x" * 100_000},
]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=lambda f: ",".join(f"{k}={v[:8]}" for k, v in f.items()))
def test_bad_fields_with_a_good_photo_get_a_400_naming_the_field(app, fields: dict[str, str]) -> None:
    response = _post(app.test_client(), "good.jpg", _encode(_noise(), "JPEG"), **fields)
    _check(response, str(fields), REFUSE)
    assert response.status_code == 400
    assert any(key in response.get_json()["error"]["message"] for key in fields), response.get_json()
    assert app.extensions["image2mood"].store.count() == SONGS


_BOMB_PROBE = """
import json, re, sys
from pathlib import Path
from PIL import PngImagePlugin
from image2mood.errors import ImageError
from image2mood.images import load_photo

def rss(field: str) -> float:
    return int(re.search(field + r":\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024

if sys.argv[2] == "limit-lifted":  # the positive control: Pillow told to inflate any text chunk
    PngImagePlugin.MAX_TEXT_CHUNK = 1 << 30
Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) starts again from here
base = rss("VmRSS")
try:
    outcome = list(load_photo(Path(sys.argv[1])).size)
except ImageError as exc:
    outcome = str(exc)
print(json.dumps({"grown_mb": rss("VmHWM") - base, "outcome": outcome}))
"""


def _peak_growth(path: Path, mode: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _BOMB_PROBE, str(path), mode], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name", ["ztxt-bomb.png", "iccp-bomb.png"])
def test_a_compressed_chunk_bomb_never_inflates(name: str, tmp_path: Path) -> None:
    """50 MB of zeros in a 50 KB zTXt or iCCP chunk: decoding the photo in a fresh process raises its peak
    RSS by under 20 MB; the same probe with Pillow's chunk limit lifted sees the 50 MB (over 40 MB)."""
    path = tmp_path / name
    path.write_bytes(next(data for case, data, _ in metadata_bombs() if case == name))
    assert _peak_growth(path, "as-shipped")["grown_mb"] < 20
    assert _peak_growth(path, "limit-lifted")["grown_mb"] > 40
