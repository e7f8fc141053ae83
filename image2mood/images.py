"""Load and validate a photo: header checks first, then a bounded decode, then RGB at model size.

Only the formats in :data:`SUPPORTED` are tried (no Ghostscript-backed EPS and the like). Two checks
run on the header, before any pixel is decoded: the pixel count, and the memory the decode will take.
JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that still covers :data:`DECODE_SIDE` (a HEIC uses its
embedded thumbnail when that is big enough), so a 200-MP phone photo costs a few MB; a progressive JPEG
also keeps all its coefficients at full size, and its scans are bounded (see :mod:`image2mood.jpeg_cost`).
Other photos can only be decoded whole, so they must fit the decode budget; decodes running at once
share that budget, so concurrent uploads wait instead of adding up. A decode that takes more than
:data:`MAX_DECODE_CPU_S` of CPU is stopped. The decoded pixels are then converted and shrunk strip by
strip, so no second full-size copy is made.
"""

from __future__ import annotations

import ctypes
import io
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import ExifTags, Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from image2mood.config import Settings
from image2mood.errors import ImageError
from image2mood.jpeg_cost import check_scans

try:
    import pillow_heif
except ImportError:  # pragma: no cover - a dependency; without it HEIC photos get an 'install pillow-heif' error
    HEIF = False
else:
    pillow_heif.register_heif_opener()
    HEIF = True

SUPPORTED = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF (when pillow-heif is installed)"
MODEL_SIDE = 1024  # photos are shrunk so their longer side is at most this before the models see them
DECODE_SIDE = 768
"""The longer side a reduced-scale decode must keep: the models see 224-384 px and faces from 40 px, so a
1920×1080 JPEG decodes at half scale (960×540: 12 ms, against 48 ms for a full decode shrunk to 1024) and a
4032×3024 phone photo at a quarter (1008×756), neither resampled after."""
MB = 1 << 20
MAX_DECODE_CPU_S = 5.0
"""CPU seconds one decode in C may take (the largest photos the limits admit take about 1 s here)."""

_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow plugin ids; MPO comes in via JPEG
_JPEG_START = b"\xff\xd8\xff"  # what Pillow opens as JPEG (or MPO)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
# What Pillow (and pillow-heif) raise on truncated or corrupt data once the header has been read.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, RuntimeError)
_PILLOW_LIMIT = threading.Lock()

# Bytes Pillow stores per pixel in each mode (RGB is padded to 4 bytes); modes not listed take 4.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Extra copies of the decoded pixels a decoder holds at its peak, measured with bench/photo_memory.py:
# libwebp keeps two canvases and hands Pillow a third; libheif decodes into its own buffer first.
_DECODER_COPIES = {"WEBP": 3, "HEIF": 1}
_PYTHON_DECODER_COPIES = 2  # Pillow's Python decoders (BMP RLE) build the pixels in a bytearray, then copy them
_TIFF_PIXEL_BYTES = 8  # the most a TIFF layout Pillow reads takes per pixel in libtiff's buffer (RGBA, 16 bits)
_SLACK = 16 * MB  # the photo's bytes, decoder state, allocator rounding
_REDUCING_GAP = 2  # box-reduce to within 2× of model size, then Lanczos (Pillow's 'reducing_gap')
_STRIP_PIXELS = 1 << 20  # pixels converted at a time after the decode


class _DecodeMemory:
    """Decode memory in use across threads: a decode waits until its estimate fits its budget."""

    def __init__(self) -> None:
        self._used = 0
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, cost: int, budget: int) -> Iterator[None]:
        with self._free:  # cost <= budget, so a decode runs at the latest when it is alone
            self._free.wait_for(lambda: self._used == 0 or self._used + cost <= budget)
            self._used += cost
        try:
            yield
        finally:
            _release_freed_memory(cost)
            with self._free:
                self._used -= cost
                self._free.notify_all()


_DECODE_MEMORY = _DecodeMemory()
try:
    _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim  # glibc
except (OSError, AttributeError, TypeError):  # pragma: no cover - other C libraries return freed memory themselves
    _MALLOC_TRIM = None


_TRIM_AT_ONCE = 64 * MB  # a decode estimated at this or more (24-MP JPEGs stay under it) trims at once
_TRIM_EVERY_S = 1.0  # the others: at most this often
_trimmed = [0.0]  # when the last trim ran (time.monotonic())


def _release_freed_memory(cost: int) -> None:
    """Hand the memory decodes freed back to the system: glibc keeps it per thread otherwise, so each server
    thread would hold on to its largest decode (8 threads decoding 1080p and 24-MP photos kept 150–270 MB). A big
    decode trims at once, the others at most every :data:`_TRIM_EVERY_S` (between two, 8 threads held up to
    130 MB more than trimming every time): trimming after every photo cost 8 clients 4–12 % of their photos/s in
    four alternating pairs (the trim itself, then the lane's allocations faulting their pages back in)."""
    now = time.monotonic()
    if _MALLOC_TRIM is not None and (cost >= _TRIM_AT_ONCE or now - _trimmed[0] >= _TRIM_EVERY_S):
        _trimmed[0] = now
        _MALLOC_TRIM(0)


def load_configured_photo(data: bytes | Path, name: str, settings: Settings) -> Image.Image:
    """:func:`load_photo` with the pixel and decode-memory limits the settings name."""
    return load_photo(data, name=name, max_pixels=settings.max_image_pixels, max_decode_mb=settings.max_decode_mb)


def load_photo(
    data: bytes | Path, *, name: str = "photo", max_pixels: int = 210_000_000, max_decode_mb: int = 280,
    max_decode_s: float = MAX_DECODE_CPU_S,
) -> Image.Image:
    """Decode a photo to RGB, EXIF orientation applied, longer side at most :data:`MODEL_SIDE`.

    ``name`` is used in error messages. Anything unusable (empty, not an image, truncated, over
    ``max_pixels``, a JPEG over the scan limits, needing more than ``max_decode_mb`` MB or more than
    ``max_decode_s`` seconds of CPU to decode) raises :class:`ImageError`. The result holds no file handle.
    """
    if isinstance(data, Path):
        try:
            data = data.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {name}: {e.strerror or e}") from e
    if not data:
        raise ImageError(f"{name} is empty (0 bytes); choose a photo file")
    layout = check_scans(data, name) if data.startswith(_JPEG_START) else None
    coefficients = layout.coefficient_bytes if layout else 0  # libjpeg's buffer of every coefficient, if any
    source = _TimedBytes(data)
    with _open(source, name, max_pixels) as im:
        try:
            size, mode = im.size, im.mode  # before draft() shrinks them
            # JPEG: DCT-scaled decode; HEIF: a big-enough thumbnail; others: no-op
            im.draft(None, _fit(im.size, DECODE_SIDE))
            cost = decode_cost(im) + coefficients
            if cost > max_decode_mb * MB:
                kind, fix = ((layout.kind, "re-save it as a baseline (non-progressive) JPEG") if layout and coefficients
                             else (im.format, "save it as JPEG (decoded at reduced scale)"))
                raise ImageError(
                    f"{name} is a {size[0]}×{size[1]} {mode} {kind} ({_mp(size[0] * size[1])}), "
                    f"which takes about {math.ceil(cost / MB)} MB to decode; the limit is {max_decode_mb} MB "
                    f"(IMAGE2MOOD_MAX_DECODE_MB): {fix}, shrink it, or raise the limit"
                )
            with _DECODE_MEMORY.reserve(cost, max_decode_mb * MB):
                try:
                    if not _python_decoded(im):
                        source.stop_after(max_decode_s)
                    im.load()  # a TIFF applies its own orientation here
                    orientation = _orientation(im)
                    out = _to_rgb(im)
                finally:
                    im.close()  # the decoded pixels are freed before the next decode may start
                    source.close()  # and the photo's bytes (the timed read refers back to them)
            out.getexif()[ExifTags.Base.Orientation] = orientation
            ImageOps.exif_transpose(out, in_place=True)
            return out
        except _OutOfTime as e:
            raise ImageError(
                f"{name} took more than {max_decode_s:g} s of CPU to decode and was stopped; "
                "shrink the photo or re-save it as a baseline JPEG"
            ) from e
        except Image.DecompressionBombError as e:  # Pillow's own checks while decoding (TIFF, GIF frames)
            raise ImageError(f"{name} is too large to decode safely ({e}); shrink the photo") from e
        except _DECODE_ERRORS as e:
            raise ImageError(
                f"{name} is truncated or corrupt ({e}); upload the complete file again or re-save it as JPEG"
            ) from e


class _OutOfTime(Exception):
    """A decode ran past its CPU time."""


class _TimedBytes(io.BytesIO):
    """The photo's bytes, for Pillow to read."""

    def stop_after(self, seconds: float) -> None:
        """From now on, a read once this thread has used ``seconds`` more CPU time raises :class:`_OutOfTime`.
        Pillow's C decoders read 64 KB at a time and work on what they read (libjpeg too); its Python
        decoders read a byte at a time, too often to look at the clock (1 µs) each time."""
        until, read = time.thread_time() + seconds, super().read

        def timed_read(size: int | None = -1, /) -> bytes:
            if time.thread_time() > until:
                raise _OutOfTime
            return read(size)

        self.read = timed_read  # type: ignore[method-assign]


def _orientation(im: Image.Image) -> int:
    """The EXIF Orientation; 1 when the EXIF block cannot be read (the pixels are still good)."""
    try:
        return im.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return 1


def decode_cost(im: ImageFile.ImageFile) -> int:
    """Bytes that decoding ``im`` (opened, not yet loaded) and shrinking it to model size take at peak."""
    width, height = im.size
    decoded = width * height * _PIXEL_BYTES.get(im.mode, 4)
    fx, fy = _reduction(im.size)
    reduced_height = math.ceil(height / fy)
    reduced = math.ceil(width / fx) * reduced_height * 4
    strip = width * _strip_rows(width, fy) * 16  # crop + RGB(A) conversions of one strip
    fit_width, fit_height = _fit(im.size)
    resize = (fit_width * reduced_height + fit_width * fit_height) * 4  # Lanczos: horizontal pass, then vertical
    return decoded + _decoder_extra(im, decoded) + reduced + strip + resize + _SLACK


def _decoder_extra(im: ImageFile.ImageFile, decoded: int) -> int:
    """Bytes a format's decoder needs on top of the decoded image."""
    if _python_decoded(im):
        return decoded * _PYTHON_DECODER_COPIES
    if not isinstance(im, TiffImagePlugin.TiffImageFile):
        return decoded * _DECODER_COPIES.get(im.format or "", 0)
    # libtiff buffers one strip or tile (a strip may be the whole image); an Orientation tag makes
    # Pillow transpose the decoded image into a second one.
    width, height = im.size
    tags = im.tag_v2
    rows = _tag(tags, TiffImagePlugin.TILELENGTH) or _tag(tags, TiffImagePlugin.ROWSPERSTRIP) or height
    tile = min(_tag(tags, TiffImagePlugin.TILEWIDTH) or width, width) * min(rows, height)
    oriented = tags.get(ExifTags.Base.Orientation, 1) != 1
    return tile * _TIFF_PIXEL_BYTES + oriented * decoded


def _python_decoded(im: ImageFile.ImageFile) -> bool:
    """Whether Pillow decodes ``im`` in Python (RLE BMP), not in C."""
    return any(tile[0] in Image.DECODERS for tile in im.tile)


def _tag(tags: TiffImagePlugin.ImageFileDirectory_v2, key: int) -> int:
    """A positive whole-number TIFF tag, else 0 (absent or nonsense)."""
    value = tags.get(key)
    return value if isinstance(value, int) and value > 0 else 0


def _open(source: io.BytesIO, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """Read the header only (``Image.open`` is lazy) and refuse a photo over ``max_pixels``."""
    formats = (*_FORMATS, "HEIF") if HEIF else _FORMATS
    with _PILLOW_LIMIT:
        # Pillow's own bomb check would refuse before ours without naming the size: it waits while the
        # header is read, then stays at least at our limit so that the photos we accept also decode.
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(source, formats=formats)
        except UnidentifiedImageError as e:
            head = source.getbuffer()[:12].tobytes()
            if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
                if not HEIF:
                    raise ImageError(
                        f"{name} is a HEIC/HEIF photo: install pillow-heif (pip install pillow-heif) "
                        "or convert the photo to JPEG"
                    ) from e
                raise ImageError(f"{name} is a truncated or corrupt HEIC/HEIF file; re-save it as JPEG") from e
            raise ImageError(
                f"{name} is not an image image2mood can read (supported: {SUPPORTED}); save it as JPEG or PNG"
            ) from e
        except _DECODE_ERRORS as e:
            raise ImageError(f"{name} is truncated or corrupt ({e}); re-save it as JPEG") from e
        finally:
            Image.MAX_IMAGE_PIXELS = None if saved is None else max(saved, max_pixels)
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageError(
            f"{name} is {width}×{height} ({_mp(width * height)}); the limit is {_mp(max_pixels)} "
            "(IMAGE2MOOD_MAX_IMAGE_PIXELS): shrink the photo or raise the limit"
        )
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """A new RGB image at model size, made strip by strip so that only one full-size image ever exists."""
    width, height = im.size
    fx, fy = _reduction(im.size)
    rows = _strip_rows(width, fy)
    reduced = Image.new("RGB", (math.ceil(width / fx), math.ceil(height / fy)))
    for top in range(0, height, rows):
        strip = _flatten(im.crop((0, top, width, min(top + rows, height))))
        reduced.paste(strip.reduce((fx, fy)), (0, top // fy))
    size = _fit(im.size)
    if size == reduced.size:
        return reduced
    return reduced.resize(size, Image.Resampling.LANCZOS, box=(0, 0, width / fx, height / fy))


def _flatten(im: Image.Image) -> Image.Image:
    """``im`` in RGB: 16-bit grey scaled to 8 bits, transparency composited on white."""
    if im.mode.startswith("I"):  # I;16 (16-bit PNG/TIFF grey), I: Pillow's convert would clip at 255
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if not im.has_transparency_data:
        return im.convert("RGB")
    return Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA")).convert("RGB")


def _reduction(size: tuple[int, int]) -> tuple[int, int]:
    """Box-reduce factors that leave ``size`` within :data:`_REDUCING_GAP` × model size."""
    fit = _fit(size)
    return tuple(max(1, int(side / target / _REDUCING_GAP)) for side, target in zip(size, fit, strict=True))


def _strip_rows(width: int, fy: int) -> int:
    """Rows per conversion strip: a multiple of the vertical reduce factor, about :data:`_STRIP_PIXELS`."""
    return fy * max(1, _STRIP_PIXELS // (width * fy))


def _fit(size: tuple[int, int], side: int = MODEL_SIDE) -> tuple[int, int]:
    """``size`` shrunk (never grown) so that its longer side is at most ``side``."""
    width, height = size
    scale = side / max(width, height, 1)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _mp(pixels: int) -> str:
    return f"{round(pixels / 1e6, 1):g} MP"
