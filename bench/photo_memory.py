"""Peak memory and time of one photo decode, per format: run by hand, not by the tests.

Each photo is loaded by ``image2mood.images.load_photo`` in a fresh process that reports how far the
decode raised its peak RSS (VmHWM, the ``ru_maxrss`` of a live process, reset after the imports
through ``/proc/self/clear_refs``). The photos are big but cheap to store (solid colour or
zeros); they are written once into ``--cache``. To compare with an older version, put that version's
package first on the path: ``PYTHONPATH=/tmp/old python bench/photo_memory.py``.

    python bench/photo_memory.py [--cache /tmp/photo-bench] [--only png-rgba]
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media_images import write_huge_png  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # this script writes the bombs


def _pillow(size: tuple[int, int], mode: str, fmt: str, **options: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        Image.new(mode, size, 90).save(path, fmt, **options)

    return write


def _png(size: tuple[int, int], mode: str) -> Callable[[Path], None]:
    return lambda path: write_huge_png(path, *size, mode=mode)


def _bmp_rle8(size: tuple[int, int]) -> Callable[[Path], None]:
    """An 8-bit RLE BMP: each row as runs of 255 pixels (Pillow decodes RLE in Python)."""

    def write(path: Path) -> None:
        width, height = size
        row = struct.pack("BB", 255, 7) * (width // 255) + struct.pack("BB", width % 255, 7) + b"\0\0"
        data = row * height + b"\0\1"
        palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
        offset = 14 + 40 + len(palette)
        header = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 0, 0, 256, 0)
        path.write_bytes(header + info + palette + data)

    return write


PHOTOS: dict[str, Callable[[Path], None]] = {
    "png-rgba-14400": _png((14400, 14400), "RGBA"),
    "png-rgba-7000": _png((7000, 7000), "RGBA"),
    "png-rgba16-14400": _png((14400, 14400), "RGBA;16"),
    "png-grey16-14400": _png((14400, 14400), "I;16"),
    "png-grey16-9000": _png((9000, 9000), "I;16"),
    "png-1bit-14400": _png((14400, 14400), "1"),
    "tiff-rgb-12000": _pillow((12000, 12000), "RGB", "TIFF", compression="tiff_deflate"),
    "tiff-rgb-6000": _pillow((6000, 6000), "RGB", "TIFF", compression="tiff_deflate"),
    "webp-rgb-12000": _pillow((12000, 12000), "RGB", "WEBP", quality=10, method=0),
    "webp-rgb-3500": _pillow((3500, 3500), "RGB", "WEBP", quality=10, method=0),
    "gif-14400": _pillow((14400, 14400), "P", "GIF"),
    "bmp-rle8-14400": _bmp_rle8((14400, 14400)),
    "jpeg-rgb-200mp": _pillow((16000, 12500), "RGB", "JPEG", quality=30),
}

_PROBE = """
import json, re, sys, time
from pathlib import Path
from image2mood.errors import ImageError
from image2mood.images import load_photo
def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024
options = json.loads(sys.argv[2])
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here, after the imports
before, start = peak_mb(), time.perf_counter()
try:
    result = {"size": load_photo(Path(sys.argv[1]), name=Path(sys.argv[1]).name, **options).size}
except ImageError as e:
    result = {"refused": str(e)}
print(json.dumps({**result, "peak_mb": round(peak_mb() - before), "s": round(time.perf_counter() - start, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/photo-bench"))
    parser.add_argument("--only", nargs="*", default=list(PHOTOS), choices=list(PHOTOS))
    parser.add_argument("--max-decode-mb", type=int, help="passed to load_photo (leave out for old versions)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    options = {} if args.max_decode_mb is None else {"max_decode_mb": args.max_decode_mb}
    for key in args.only:
        path = args.cache / f"{key}.{key.split('-')[0]}"
        if not path.exists():
            PHOTOS[key](path)
        probe = [sys.executable, "-c", _PROBE, str(path), json.dumps(options)]
        run = subprocess.run(probe, capture_output=True, text=True, cwd=args.cache)  # not this checkout's package
        out = json.loads(run.stdout) if run.returncode == 0 else {"crash": run.stderr.strip().splitlines()[-1:]}
        print(f"{key:18} {path.stat().st_size / 1e6:8.1f} MB file  {json.dumps(out, ensure_ascii=False)}", flush=True)


if __name__ == "__main__":
    main()
