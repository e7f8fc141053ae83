"""Faces in the answer: the real face models on a real face pull the photo's query towards its mood.

CLIP, BLIP and CLAP are the tiny random models here; the pull happens in CLAP space, between the query
and the mood prompts, so it is measured there all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faces_data import ASTRONAUT_FACE, face_folder, iou, real_photos, rgb, wheels_dir  # noqa: F401
from image2mood.answers import recommendation_json
from image2mood.config import Settings
from image2mood.faces.reader import Face, mood_weights
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder, image_encoder
from image2mood.faces.zero_shot import FaceReader
from image2mood.moods import EXPRESSIONS, MoodSpace
from image2mood.recommend import Options, Recommendation, Recommender
from image2mood.store import open_store
from service.openapi import openapi_document


def _recommend(settings: Settings, photo_path: Path, sees_faces_without_models: bool = True) -> Recommendation:
    with open_store(":memory:", info=store_info(clap_encoder(settings), settings)) as store:
        recommender = Recommender(settings, store)
        if not sees_faces_without_models:  # CLIP's fallback, told to need more than certainty to see a face
            recommender.__dict__["faces"] = FaceReader(image_encoder(settings).encode_text, face_threshold=1.01)
        return recommender.for_photo(rgb(photo_path), Options(top=1))


def test_a_smiling_face_is_in_the_answer_and_pulls_the_query_towards_happy(
        settings: Settings, face_folder: Path, real_photos: dict[str, Path], tmp_path: Path) -> None:
    photo = real_photos["astronaut.png"]
    with_faces = _recommend(settings.model_copy(update={"faces": face_folder}), photo)
    without = _recommend(settings.model_copy(update={"faces": tmp_path / "none"}), photo,
                         sees_faces_without_models=False)

    [face] = with_faces.faces
    assert face.expression.key == "happy" and iou(face.box, ASTRONAUT_FACE) > 0.7
    assert "faces" in with_faces.timings_ms and with_faces.caption == without.caption
    assert without.faces == [] and "no face models are installed" in without.note and "image2mood models faces" in without.note
    happy = MoodSpace(clap_encoder(settings).encode_text).vector("happy")
    assert float(with_faces.vector @ happy) > float(without.vector @ happy) + 0.05

    body = recommendation_json(with_faces)
    assert "face" not in body and len(body["faces"]) == 1
    shown = body["faces"][0]
    assert set(shown) == {"box", "score", "expression", "en", "ko", "mood", "probabilities"}
    assert shown["expression"] == "happy" and shown["ko"] == "행복한" and len(shown["box"]) == 4
    assert set(shown["probabilities"]) == {e.key for e in EXPRESSIONS}
    assert body["photo_size"] == [512, 512]
    documented = openapi_document()["components"]["schemas"]["PhotoResults"]["allOf"][1]["properties"]
    assert set(documented["faces"]["items"]["required"]) == set(shown) and "photo_size" in documented


def test_a_photo_without_people_has_no_faces_and_no_pull(settings: Settings, face_folder: Path,
                                                          real_photos: dict[str, Path]) -> None:
    answer = _recommend(settings.model_copy(update={"faces": face_folder}), real_photos["coffee.png"])
    assert answer.faces == [] and "face" not in (answer.note or "")


def _face(key: str, score: float, box: tuple[int, int, int, int] | None) -> Face:
    expression = next(e for e in EXPRESSIONS if e.key == key)
    return Face(expression, {key: 1.0}, score, box)


def test_bigger_and_surer_faces_pull_harder_and_several_share_the_pull() -> None:
    size = (1000, 800)  # a face 200 px across (a quarter of the short side) counts fully
    big_happy, small_sad = _face("happy", 1.0, (0, 0, 200, 200)), _face("sad", 1.0, (500, 500, 550, 550))
    assert mood_weights([big_happy], size) == {"happy": 1.0}
    assert mood_weights([small_sad], size) == {"sad": pytest.approx(0.25)}
    assert mood_weights([_face("sad", 0.5, (500, 500, 700, 700))], size) == {"sad": 0.5}
    both = mood_weights([big_happy, small_sad], size)
    assert both["happy"] == pytest.approx(0.8) and both["sad"] == pytest.approx(0.2)
    crowd = [_face("angry", 0.9, (i, 0, i + 200, 200)) for i in range(0, 1000, 100)]
    assert sum(mood_weights(crowd, size).values()) == pytest.approx(1.0)
    assert mood_weights([], size) == {}
