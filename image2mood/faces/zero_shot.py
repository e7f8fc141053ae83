"""Faces read by CLIP zero-shot prompts: the stand-in when the face models are not installed.

Is there a face in the photo, and which of ``moods.EXPRESSIONS`` does it show?
"""

from __future__ import annotations

import numpy as np

from image2mood.moods import EXPRESSIONS, FaceReading

EXPRESSION_TEMPLATE = "a photo of a {} face"
FACE_PROMPTS = ("a close-up photo of a person's face", "a portrait photo of a person")
NOT_FACE_PROMPTS = (
    "a photo of a landscape", "a photo of a city street", "a photo of a room", "a photo of food",
    "a photo of an animal", "a photo of an object", "a photo of the sky", "a photo of a crowd from far away",
)
CLIP_LOGIT_SCALE = 100.0  # CLIP's trained temperature for zero-shot softmax


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


class FaceReader:
    """CLIP zero-shot: is there a face, and which expression does it show?"""

    def __init__(self, encode_text, face_threshold: float = 0.5) -> None:
        self.face_threshold = face_threshold
        self.scene = encode_text([*FACE_PROMPTS, *NOT_FACE_PROMPTS])
        self.expressions = encode_text([EXPRESSION_TEMPLATE.format(e.en) for e in EXPRESSIONS])

    def read(self, image_vector: np.ndarray) -> FaceReading | None:
        """The expression of the face in the photo, or None when CLIP sees no face."""
        scene = _softmax(CLIP_LOGIT_SCALE * (self.scene @ image_vector))
        face_probability = float(scene[: len(FACE_PROMPTS)].sum())
        if face_probability < self.face_threshold:
            return None
        expression = _softmax(CLIP_LOGIT_SCALE * (self.expressions @ image_vector))
        best = int(np.argmax(expression))
        return FaceReading(EXPRESSIONS[best], float(expression[best]), face_probability)
