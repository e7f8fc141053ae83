"""Photo loading: every format and mode to RGB at model size, orientation, size limits, broken files."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from image2mood import images
from image2mood.errors import ImageError
from image2mood.images import MB, MODEL_SIDE, SUPPORTED, decode_cost, load_photo
from media_images import truncated_jpeg, write_huge_png, write_photo

COLOR = (200, 60, 40)


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def _encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode pixels fails the test (refusals must come from the header alone)."""

    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"{self.format} {self.size} was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# ---------------------------------------------------------------- formats and modes


@pytest.mark.parametrize(
    ("suffix", "tol"),
    [(".jpg", 4), (".png", 0), (".webp", 8), (".gif", 0), (".bmp", 0), (".tiff", 0), (".heic", 8)],
)
def test_each_format_loads_as_rgb_with_its_colour(tmp_path: Path, suffix: str, tol: int) -> None:
    path = write_photo(tmp_path / f"photo{suffix}", size=(640, 480), color=COLOR)
    for source in (path, path.read_bytes()):
        out = load_photo(source, name=path.name)
        assert out.mode == "RGB"
        assert out.size == (640, 480)  # never upscaled
        assert not isinstance(out, ImageFile.ImageFile)  # fully decoded, detached from any file
        assert _close(out.getpixel((320, 240)), COLOR, tol), out.getpixel((320, 240))


def test_heif_opener_is_registered() -> None:
    assert images.HEIF
    assert Image.registered_extensions()[".heic"] == "HEIF"


def test_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = load_photo(tmp_path / "anim.gif")
    assert out.getpixel((10, 10)) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_6_rotates_clockwise(fmt: str) -> None:
    stored = Image.new("RGB", (300, 200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 40))  # marks the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    out = load_photo(_encode(stored, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {})))
    assert out.size == (200, 300)
    assert _close(out.getpixel((195, 5)), (255, 0, 0), 8)  # stored top-left lands top-right
    assert _close(out.getpixel((5, 5)), (0, 0, 255), 8)


def test_rgba_is_composited_on_white() -> None:
    im = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    im.paste((255, 0, 0, 128), (50, 0, 100, 50))
    out = load_photo(_encode(im, "PNG"))
    assert out.getpixel((10, 25)) == (255, 255, 255)
    assert _close(out.getpixel((75, 25)), (255, 127, 127), 1)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_white(fmt: str) -> None:
    im = Image.new("P", (20, 20), 1)
    im.putpalette([0, 255, 0, 255, 0, 0])
    im.paste(0, (0, 0, 10, 20))
    out = load_photo(_encode(im, fmt, transparency=1))
    assert out.getpixel((15, 10)) == (255, 255, 255)
    assert out.getpixel((5, 10)) == (0, 255, 0)


def test_grey_with_alpha_is_composited_on_white() -> None:
    im = Image.new("LA", (20, 20), (0, 255))
    im.paste((0, 0), (10, 0, 20, 20))
    out = load_photo(_encode(im, "PNG"))
    assert out.getpixel((5, 5)) == (0, 0, 0)
    assert out.getpixel((15, 5)) == (255, 255, 255)


def test_greyscale() -> None:
    out = load_photo(_encode(Image.new("L", (40, 30), 77), "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (77, 77, 77)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_saturated(fmt: str) -> None:
    ramp = np.zeros((32, 64), np.uint16)
    ramp[:, 16:32] = 32768  # mid grey
    ramp[:, 32:48] = 65535  # white
    ramp[:, 48:] = 1000  # dark: 1000 / 256 → 3
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    out = load_photo(_encode(im, fmt))
    assert [out.getpixel((x, 10))[0] for x in (8, 24, 40, 56)] == [0, 128, 255, 3]


def test_cmyk_jpeg() -> None:
    data = _encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert _close(load_photo(data).getpixel((30, 30)), (255, 0, 0), 4)


def test_ycbcr_tiff() -> None:
    data = _encode(Image.new("RGB", (64, 64), COLOR).convert("YCbCr"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert _close(load_photo(data).getpixel((30, 30)), COLOR, 3)


# ---------------------------------------------------------------- size


def test_large_photo_is_shrunk_to_model_side(tmp_path: Path) -> None:
    im = Image.new("RGB", (6000, 4000), COLOR)
    im.paste((0, 0, 255), (0, 0, 3000, 2000))
    im.save(tmp_path / "big.jpg", quality=90)
    out = load_photo(tmp_path / "big.jpg")
    assert out.size == (MODEL_SIDE, 683)
    assert _close(out.getpixel((100, 100)), (0, 0, 255), 6)
    assert _close(out.getpixel((900, 600)), COLOR, 6)


@pytest.mark.parametrize(("size", "loaded"), [((1920, 1080), (960, 540)), ((4032, 3024), (1008, 756)),
                                               ((1500, 1000), (1024, 683))])
def test_jpeg_decodes_at_the_smallest_scale_that_keeps_the_decode_side(tmp_path: Path, size: tuple[int, int],
                                                                        loaded: tuple[int, int]) -> None:
    """Half or quarter scale while the longer side stays ≥ 768 px, with no resampling after; else full scale,
    shrunk to the model side."""
    im = Image.new("RGB", size, COLOR)
    im.paste((0, 0, 255), (0, 0, size[0] // 2, size[1] // 2))
    im.save(tmp_path / "photo.jpg", quality=90)
    out = load_photo(tmp_path / "photo.jpg")
    assert out.size == loaded
    assert _close(out.getpixel((10, 10)), (0, 0, 255), 6)
    assert _close(out.getpixel((loaded[0] - 10, loaded[1] - 10)), COLOR, 6)


def test_200_mp_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    """A 16000×12500 JPEG passes the default limit and costs a few MB, not the 200+ MB of a full decode."""
    im = Image.new("L", (16000, 12500), 200)  # greyscale keeps this test's own memory at 200 MB, 0.4 s
    im.paste(40, (0, 0, 8000, 6250))
    im.save(tmp_path / "200mp.jpg", quality=30)
    del im
    probe = (  # a fresh process, so ru_maxrss measures this load alone (Pillow's memory is not seen by tracemalloc)
        "import json, resource, sys; from pathlib import Path; from image2mood.images import load_photo\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "before = peak(); out = load_photo(Path(sys.argv[1]))\n"
        "print(json.dumps({'size': out.size, 'grey': [out.getpixel(p)[0] for p in ((50, 50), (1000, 780))],"
        " 'mb': peak() - before}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "200mp.jpg")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["size"] == [1024, 800]
    assert _close(result["grey"], [40, 200], 4)
    assert result["mb"] < 60, result  # a full decode needs ≥ 200 MB (L) before any conversion


def test_huge_png_is_refused_before_decoding(tmp_path: Path, no_decoding: None) -> None:
    path = write_huge_png(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageError) as err:
        load_photo(path, name="bomb.png")
    message = str(err.value)
    assert "bomb.png is 30000×30000 (900 MP)" in message
    assert "the limit is 210 MP (IMAGE2MOOD_MAX_IMAGE_PIXELS)" in message


def test_png_over_the_decode_budget_is_refused_before_decoding(tmp_path: Path, no_decoding: None) -> None:
    """The 14400² RGBA PNG: under the pixel limit, but 830 MB of pixels (before: 2.5 GB RSS, 9 s)."""
    path = write_huge_png(tmp_path / "bomb.png", 14400, 14400, mode="RGBA")
    with pytest.raises(ImageError) as err:
        load_photo(path, name="bomb.png")
    message = str(err.value)
    assert "bomb.png is a 14400×14400 RGBA PNG (207.4 MP), which takes about 851 MB to decode" in message
    assert "the limit is 280 MB (IMAGE2MOOD_MAX_DECODE_MB): save it as JPEG" in message


def test_rle_bmp_is_budgeted_for_pillows_python_decoder(no_decoding: None) -> None:
    """Pillow decodes RLE BMPs in Python, into a bytearray copied twice: three times an uncompressed BMP."""
    def bmp(compression: int) -> bytes:
        info = struct.pack("<IiiHHIIiiII", 40, 9000, 9000, 1, 8, compression, 0, 0, 0, 256, 0)
        return b"BM" + struct.pack("<IHHI", 0, 0, 0, 14 + 40 + 1024) + info + bytes(1024) + b"\0\1"

    with Image.open(io.BytesIO(bmp(0))) as raw, Image.open(io.BytesIO(bmp(1))) as rle:
        assert decode_cost(rle) - decode_cost(raw) == 2 * 9000 * 9000
    with pytest.raises(ImageError, match=r"rle\.bmp is a 9000×9000 P BMP \(81 MP\), which takes about 29\d MB"):
        load_photo(bmp(1), name="rle.bmp")


def test_decode_budget_is_a_parameter(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "p.png", size=(3000, 2000))
    with pytest.raises(ImageError, match=r"p\.png is a 3000×2000 RGB PNG \(6 MP\), which takes about \d+ MB"):
        load_photo(path, name="p.png", max_decode_mb=30)
    assert load_photo(path, max_decode_mb=120).size == (1024, 683)


_PEAK_PROBE = """
import json, re, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from image2mood.images import load_photo

def grown() -> float:  # MB the peak RSS (VmHWM, ru_maxrss of a live process) rose since the last reset
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024 - base

def reset() -> float:
    Path("/proc/self/clear_refs").write_text("5")
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024

base = reset()
size = load_photo(Path(sys.argv[1])).size
alone = grown()
base = reset()
with ThreadPoolExecutor(3) as pool:
    sizes = list(pool.map(lambda _: load_photo(Path(sys.argv[1])).size, range(3)))
print(json.dumps({"size": size, "alone_mb": alone, "three_mb": grown(), "sizes": sizes}))
"""


def test_worst_case_accepted_png_raises_peak_rss_by_under_300_mb(tmp_path: Path) -> None:
    """The largest RGBA PNG the decode budget lets in, in a fresh process: alone, and three at once."""
    path = write_huge_png(tmp_path / "worst.png", 7430, 7430, mode="RGBA")
    with Image.open(path) as im:
        assert 0.97 * 280 * MB < decode_cost(im) <= 280 * MB  # the worst case: just under the default budget
    run = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["size"] == [1024, 1024] and result["sizes"] == [[1024, 1024]] * 3
    assert 200 < result["alone_mb"] < 300, result  # 221 MB of pixels are decoded: the probe does see them
    assert result["three_mb"] < 300, result  # concurrent decodes wait for the budget instead of adding up


def test_shrinking_strip_by_strip_matches_a_whole_image_resize() -> None:
    """Conversion and reduction run in strips; the result matches Pillow's one-piece resize."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    im = Image.fromarray(np.kron(blocks, np.ones((75, 75, 1), np.uint8)), "RGBA")  # 4500×3000, strips of 2 rows
    expected = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB")
    expected = np.asarray(expected.resize((1024, 683), Image.Resampling.LANCZOS, reducing_gap=3.0), np.int16)
    out = np.asarray(load_photo(_encode(im, "PNG", compress_level=1)), np.int16)
    assert out.shape == expected.shape
    assert np.abs(out - expected).mean() < 1.5


def test_huge_png_helper_writes_a_valid_png(tmp_path: Path) -> None:
    im = Image.open(write_huge_png(tmp_path / "small.png", 300, 200))
    im.load()
    assert (im.size, im.mode, im.getextrema()) == ((300, 200), "1", (0, 0))


def test_gif_frame_bigger_than_its_screen_is_refused(no_decoding: None) -> None:
    """A 10×10 GIF whose first frame claims 60000×60000: Pillow grows the size on open; we refuse it."""
    gif = (
        b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
        + b"," + struct.pack("<HHHHB", 0, 0, 60000, 60000, 0) + b"\x02\x02\x4c\x01\x00;"
    )
    with pytest.raises(ImageError, match=r"bomb\.gif is 60000×60000 \(3600 MP\)"):
        load_photo(gif, name="bomb.gif")


def test_max_pixels_is_a_parameter(tmp_path: Path) -> None:
    path = write_photo(tmp_path / "p.png", size=(2000, 1000))
    with pytest.raises(ImageError, match=r"p\.png is 2000×1000 \(2 MP\); the limit is 1\.5 MP"):
        load_photo(path, name="p.png", max_pixels=1_500_000)
    assert load_photo(path, max_pixels=2_000_000).size == (1024, 512)


def test_pillow_bomb_error_becomes_image_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: ImageFile.ImageFile) -> None:
        raise Image.DecompressionBombError("Image size (1 pixels) exceeds limit")

    data = _encode(Image.new("RGB", (8, 8)), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(ImageError, match="x.png is too large to decode safely"):
        load_photo(data, name="x.png")


def test_pillow_limit_is_never_left_off() -> None:
    """Concurrent loads share Pillow's global bomb limit; it ends at least at ours, never disabled."""
    data = [_encode(Image.new("RGB", (64, 64), c), "PNG") for c in ((1, 2, 3), (4, 5, 6), (7, 8, 9))]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: load_photo(data[i % 3]), range(60)))
    assert [o.getpixel((0, 0)) for o in outs[:3]] == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 210_000_000


# ---------------------------------------------------------------- broken input


def test_text_file_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list\n" * 20)
    with pytest.raises(ImageError) as err:
        load_photo(path, name="notes.jpg")
    assert str(err.value).startswith("notes.jpg is not an image")
    assert SUPPORTED in str(err.value)


def test_formats_outside_the_list_are_refused() -> None:
    """Pillow reads PPM (and EPS, via Ghostscript); a photo upload does not need to."""
    with pytest.raises(ImageError, match="x.ppm is not an image"):
        load_photo(_encode(Image.new("RGB", (8, 8)), "PPM"), name="x.ppm")


def test_truncated_jpeg(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cut.jpg is truncated or corrupt"):
        load_photo(truncated_jpeg(tmp_path / "cut.jpg"), name="cut.jpg")


def test_truncated_png() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "PNG")
    with pytest.raises(ImageError, match="cut.png is truncated or corrupt"):
        load_photo(data[: len(data) // 2], name="cut.png")


def test_empty(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="empty.jpg is empty"):
        load_photo(b"", name="empty.jpg")
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(ImageError, match="empty.jpg is empty"):
        load_photo(tmp_path / "empty.jpg", name="empty.jpg")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read gone.jpg: No such file"):
        load_photo(tmp_path / "gone.jpg", name="gone.jpg")


def test_heic_without_pillow_heif_says_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.new("RGB", (64, 64), COLOR), "HEIF")
    monkeypatch.setattr(images, "HEIF", False)  # as if pillow-heif were missing: the HEIF plugin is not tried
    with pytest.raises(ImageError, match="x.heic is a HEIC/HEIF photo: install pillow-heif"):
        load_photo(data, name="x.heic")


def test_truncated_heic() -> None:
    data = _encode(Image.new("RGB", (64, 64), COLOR), "HEIF")
    with pytest.raises(ImageError, match="x.heic is a truncated or corrupt HEIC/HEIF file"):
        load_photo(data[: len(data) // 2], name="x.heic")


def test_a_big_decode_hands_its_memory_back_at_once_and_smaller_ones_at_most_once_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc keeps a thread's freed decode memory; ``malloc_trim`` hands it back, but after every photo it cost 8
    clients 7 % of their photos/s. The spy counts the real calls."""
    trims: list[int] = []
    real = images._MALLOC_TRIM
    monkeypatch.setattr(images, "_MALLOC_TRIM", lambda pad: trims.append(pad) or real(pad))
    monkeypatch.setattr(images, "_trimmed", [0.0])
    photo = _encode(Image.new("RGB", (1920, 1080), (90, 120, 150)), "JPEG")
    big = _encode(Image.new("RGB", (3000, 2000), (90, 120, 150)), "PNG")
    assert decode_cost(Image.open(io.BytesIO(big))) >= images._TRIM_AT_ONCE > decode_cost(Image.open(io.BytesIO(photo)))
    for _ in range(3):
        load_photo(photo)
    assert len(trims) == 1  # the first; the next two came within the second
    load_photo(big)
    assert len(trims) == 2  # at once
    images._trimmed[0] -= images._TRIM_EVERY_S
    load_photo(photo)
    assert len(trims) == 3  # a second later
