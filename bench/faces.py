"""Time reading a 1-MP photo's faces (MTCNN + expressions) on 2 threads: run by hand, not by the tests.

The floor is 80 ms per photo on 2 cores. The default photo is real: scikit-image's astronaut and
cameraman side by side (two faces), taken from its wheel and scaled to 1 MP; or pass ``--photo``. The
face models come from the configured faces folder, or are fetched into ``--cache``. The machine's load
average is printed beside the times. On a busy shared machine wall times mostly measure the queue for a
core; the process's CPU time per photo does not, so it is printed too (with ``--threads 1`` it is what
one free core would take).

    python bench/faces.py [--photo PATH] [--runs 30] [--threads 2] [--cache /tmp/faces-bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image

from image2mood.config import Settings
from image2mood.faces.fetch import faces_ready, fetch_faces
from image2mood.faces.reader import FaceModels

FLOOR_MS = 80.0
MEGAPIXEL = 1_000_000


def _sample_photo(cache: Path) -> Image.Image:
    """scikit-image's astronaut and cameraman side by side, scaled to one megapixel."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "--dest", str(cache), "scikit-image==0.26.0"], check=True)
    with zipfile.ZipFile(next(cache.glob("scikit_image-0.26.0-*.whl"))) as wheel:
        left, right = (Image.open(BytesIO(wheel.read(f"skimage/data/{n}"))).convert("RGB")
                       for n in ("astronaut.png", "camera.png"))
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    scale = (MEGAPIXEL / (both.width * both.height)) ** 0.5
    return both.resize((round(both.width * scale), round(both.height * scale)), Image.Resampling.LANCZOS)


def _ms(work, clock=time.perf_counter) -> float:
    started = clock()
    work()
    return (clock() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, help="a photo to time (default: the two-face sample, 1 MP)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the floor is for 2 cores)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/faces-bench"), help="wheels and fetched models")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    folder = settings.faces_folder()
    if not faces_ready(folder):
        folder = fetch_faces(args.cache / "faces", wheels_dir=args.cache)
    photo = Image.open(args.photo).convert("RGB") if args.photo else _sample_photo(args.cache)
    models = FaceModels(folder, settings.face_min_size)

    for _ in range(3):
        models.read(photo)
    detect, expressions, total, cpu = [], [], [], []
    for _ in range(args.runs):
        found: list = []
        detect.append(_ms(lambda: found.extend(models.detect(photo))))
        expressions.append(_ms(lambda: models.classify(models.crops(photo, found))))
        total.append(_ms(lambda: models.read(photo)))
        cpu.append(_ms(lambda: models.read(photo), clock=time.process_time))
    faces = models.read(photo)

    print(f"photo {photo.width}×{photo.height} ({photo.width * photo.height / 1e6:.2f} MP), "
          f"{len(faces)} faces: {', '.join(f.expression.key for f in faces)}; torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, times in (("detection", detect), ("expressions", expressions), ("faces read (total)", total),
                        ("CPU time (total)", cpu)):
        print(f"{name:19} min {min(times):6.1f} ms   median {statistics.median(times):6.1f} ms   "
              f"max {max(times):6.1f} ms")
    best, median = min(total), statistics.median(total)
    verdict = "meets" if median <= FLOOR_MS else "meets at best" if best <= FLOOR_MS else "misses"
    print(f"floor {FLOOR_MS:.0f} ms: {verdict} (min {best:.1f} ms, median {median:.1f} ms)")


if __name__ == "__main__":
    main()
