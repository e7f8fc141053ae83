"""MTCNN on real photos: one face gives one box around it, several faces several, a scene none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from faces_data import ASTRONAUT_FACE, CAMERAMAN_FACE, face_folder, iou, real_photos, rgb, wheels_dir  # noqa: F401
from image2mood.errors import ModelLoadError
from image2mood.faces.mtcnn import MTCNN, nms


@pytest.fixture(scope="module")
def detector(face_folder: Path) -> MTCNN:
    return MTCNN(face_folder)


def _inside(point: tuple[float, float], box: tuple[float, ...]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def test_one_face_gives_one_box_around_it_with_its_landmarks(detector: MTCNN, real_photos: dict[str, Path]) -> None:
    faces = detector.detect(rgb(real_photos["astronaut.png"]))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.95 and iou(face.box, ASTRONAUT_FACE) > 0.7
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert all(_inside(p, face.box) for p in face.landmarks)
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_a_photo_without_people_gives_none(detector: MTCNN, real_photos: dict[str, Path]) -> None:
    assert detector.detect(rgb(real_photos["coffee.png"])) == []
    assert detector.detect(rgb(real_photos["rocket.jpg"])) == []


def test_several_faces_in_one_photo_are_all_found(detector: MTCNN, real_photos: dict[str, Path]) -> None:
    astronaut, cameraman = rgb(real_photos["astronaut.png"]), rgb(real_photos["camera.png"])
    both = Image.new("RGB", (astronaut.width + cameraman.width, max(astronaut.height, cameraman.height)))
    both.paste(astronaut, (0, 0))
    both.paste(cameraman, (astronaut.width, 0))
    faces = detector.detect(both)
    assert len(faces) == 2
    shifted = (CAMERAMAN_FACE[0] + astronaut.width, CAMERAMAN_FACE[1], CAMERAMAN_FACE[2] + astronaut.width,
               CAMERAMAN_FACE[3])
    assert all(max(iou(f.box, want) for f in faces) > 0.6 for want in (ASTRONAUT_FACE, shifted))


def test_faces_below_the_minimum_size_are_not_looked_for(detector: MTCNN, real_photos: dict[str, Path]) -> None:
    astronaut = rgb(real_photos["astronaut.png"])  # her face is about 90 px across
    small = rgb(real_photos["camera.png"]).resize((154, 154), Image.Resampling.LANCZOS)  # his, about 25 px
    photo = Image.new("RGB", (astronaut.width + small.width, astronaut.height))
    photo.paste(astronaut, (0, 0))
    photo.paste(small, (astronaut.width, 0))
    assert len(detector.detect(photo, min_size=20)) == 2
    [big] = detector.detect(photo, min_size=80)
    assert iou(big.box, ASTRONAUT_FACE) > 0.7


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() -> None:
    boxes = torch.tensor([[0, 0, 99, 99], [5, 5, 104, 104], [200, 200, 299, 299], [10, 10, 49, 49]], dtype=torch.float)
    scores = torch.tensor([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]  # box 0 overlaps box 1 by IoU 0.82
    assert nms(boxes, scores, 0.5, by_min=True).tolist() == [3, 2]  # box 3 lies inside box 1
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_a_file_that_is_not_a_state_dict_is_a_clear_error(tmp_path: Path, face_folder: Path) -> None:
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        (tmp_path / name).write_bytes((face_folder / name).read_bytes())
    (tmp_path / "rnet.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="rnet.pt is not an MTCNN RNet state dict"):
        MTCNN(tmp_path)
