"""Mood words and face reading: nearest prompts, the face threshold, and a face counting in the photo's moods."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.faces.zero_shot import FACE_PROMPTS, NOT_FACE_PROMPTS, FaceReader
from image2mood.moods import EXPRESSIONS, MOODS, FaceReading, MoodSpace
from image2mood.recommend import Options, Recommender
from image2mood.store import open_store


class PromptSpace:
    """A text encoder whose every distinct prompt gets its own orthogonal unit vector."""

    def __init__(self, dim: int = 128) -> None:
        self.dim, self.index = dim, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row, self.index.setdefault(text, len(self.index))] = 1
        return out


def test_mood_space_names_the_nearest_moods() -> None:
    space = MoodSpace(PromptSpace())
    sad, calm = space.vector("sad"), space.vector("calm")
    top = space.top(0.8 * sad + 0.6 * calm, k=2)
    assert [m.mood.key for m in top] == ["sad", "calm"] and top[0].score > top[1].score
    assert {m.key for m in MOODS} >= {"calm", "happy", "sad", "energetic", "romantic", "dark", "epic"}
    assert all(m.ko and m.en for m in MOODS)


def test_face_reader_reads_an_expression_only_when_it_sees_a_face() -> None:
    encode = PromptSpace()
    reader = FaceReader(encode)
    face = encode([FACE_PROMPTS[0]])[0]
    happy = encode(["a photo of a happy face"])[0]
    reading = reader.read(face + 0.5 * happy)
    assert reading is not None and reading.expression.key == "happy" and reading.face_probability > 0.5
    assert reader.read(encode([NOT_FACE_PROMPTS[0]])[0] + 0.5 * happy) is None
    assert {e.key for e in EXPRESSIONS} >= {"happy", "sad", "angry", "surprised", "calm", "fearful"}


def test_a_face_counts_in_the_photos_moods(settings: Settings) -> None:
    settings = settings.model_copy(update={"store": ":memory:"})
    sad = next(e for e in EXPRESSIONS if e.key == "sad")
    photo = Image.new("RGB", (256, 256), (120, 130, 140))
    with open_store(settings.store, info=store_info(clap_encoder(settings), settings)) as store:
        recommender = Recommender(settings, store)
        recommender.__dict__["faces"] = SimpleNamespace(read=lambda vector: FaceReading(sad, 1.0, 1.0))
        with_face = recommender.for_photo(photo, Options(top=1))
        recommender.__dict__["faces"] = SimpleNamespace(read=lambda vector: None)
        without = recommender.for_photo(photo, Options(top=1))
    assert [f.expression.key for f in with_face.faces] == ["sad"] and without.faces == []
    assert with_face.caption == without.caption
    towards_sad = recommender.moods.vector("sad")
    assert float(with_face.vector @ towards_sad) > float(without.vector @ towards_sad) + 0.05
