"""Load and validate a photo: header check first, then a reduced decode, then RGB at model size.

Only the formats in :data:`SUPPORTED` are tried (no Ghostscript-backed EPS and the like). The size
check runs on the header, before any pixel is decoded; JPEGs are then decoded at 1/2, 1/4 or 1/8
scale when that still covers :data:`MODEL_SIDE`, so a 200-MP photo costs a few MB.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from image2mood.errors import ImageError

try:
    import pillow_heif
except ImportError:  # pragma: no cover - a dependency; without it HEIC photos get an 'install pillow-heif' error
    HEIF = False
else:
    pillow_heif.register_heif_opener()
    HEIF = True

SUPPORTED = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF (when pillow-heif is installed)"
MODEL_SIDE = 1024  # photos are shrunk so their longer side is at most this before the models see them

_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow plugin ids; MPO comes in via JPEG
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
# What Pillow (and pillow-heif) raise on truncated or corrupt data once the header has been read.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, RuntimeError)
_PILLOW_LIMIT = threading.Lock()


def load_photo(data: bytes | Path, *, name: str = "photo", max_pixels: int = 210_000_000) -> Image.Image:
    """Decode a photo to RGB, EXIF orientation applied, longer side at most :data:`MODEL_SIDE`.

    ``name`` is used in error messages. Anything unusable (empty, not an image, truncated, over
    ``max_pixels``) raises :class:`ImageError`. The result holds no file handle.
    """
    if isinstance(data, Path):
        try:
            data = data.read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read {name}: {e.strerror or e}") from e
    if not data:
        raise ImageError(f"{name} is empty (0 bytes); choose a photo file")
    with _open(data, name, max_pixels) as im:
        try:
            im.draft(None, _fit(im.size))  # JPEG: DCT-scaled decode; HEIF: a big-enough thumbnail; others: no-op
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return _to_rgb(im)
        except Image.DecompressionBombError as e:  # Pillow's own checks while decoding (TIFF, GIF frames)
            raise ImageError(f"{name} is too large to decode safely ({e}); shrink the photo") from e
        except _DECODE_ERRORS as e:
            raise ImageError(
                f"{name} is truncated or corrupt ({e}); upload the complete file again or re-save it as JPEG"
            ) from e


def _open(data: bytes, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """Read the header only (``Image.open`` is lazy) and refuse a photo over ``max_pixels``."""
    formats = (*_FORMATS, "HEIF") if HEIF else _FORMATS
    with _PILLOW_LIMIT:
        # Pillow's own bomb check would refuse before ours without naming the size: it waits while the
        # header is read, then stays at least at our limit so that the photos we accept also decode.
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(io.BytesIO(data), formats=formats)
        except UnidentifiedImageError as e:
            if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
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
    """A new RGB image at model size: 16-bit grey scaled to 8 bits, transparency composited on white."""
    if im.mode.startswith("I"):  # I;16 (16-bit PNG/TIFF grey), I: Pillow's convert would clip at 255
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    flat = im.convert("RGBA" if im.has_transparency_data else "RGB")
    size = _fit(flat.size)
    if size != flat.size:
        flat = flat.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if flat.mode == "RGBA":
        flat = Image.alpha_composite(Image.new("RGBA", flat.size, "white"), flat).convert("RGB")
    return flat


def _fit(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` shrunk (never grown) so that its longer side is at most :data:`MODEL_SIDE`."""
    width, height = size
    scale = MODEL_SIDE / max(width, height, 1)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _mp(pixels: int) -> str:
    return f"{round(pixels / 1e6, 1):g} MP"
