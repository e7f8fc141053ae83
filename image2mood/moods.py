"""Mood words: a small vocabulary in English and Korean, embedded as CLAP text prompts.

A vector in CLAP space (a photo's query, a song's audio) is described by the moods whose prompts lie
nearest to it. A face's expression maps onto a mood (:mod:`image2mood.faces` reads faces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from image2mood.vectors import l2_normalise


@dataclass(frozen=True)
class Mood:
    key: str
    en: str
    ko: str


MOODS: tuple[Mood, ...] = (
    Mood("calm", "calm", "차분한"),
    Mood("happy", "happy", "행복한"),
    Mood("sad", "sad", "슬픈"),
    Mood("energetic", "energetic", "신나는"),
    Mood("romantic", "romantic", "로맨틱한"),
    Mood("dark", "dark", "어두운"),
    Mood("epic", "epic", "웅장한"),
    Mood("nostalgic", "nostalgic", "그리운"),
    Mood("dreamy", "dreamy", "몽환적인"),
    Mood("tense", "tense", "긴장감 있는"),
    Mood("peaceful", "peaceful", "평화로운"),
    Mood("melancholic", "melancholic", "쓸쓸한"),
    Mood("playful", "playful", "장난스러운"),
    Mood("angry", "angry", "격렬한"),
    Mood("hopeful", "hopeful", "희망찬"),
    Mood("mysterious", "mysterious", "신비로운"),
)

# CLAP text prompts per mood; a mood's vector is the normalised mean of its prompts.
MOOD_TEMPLATES = ("{} music", "a {} song")


@dataclass(frozen=True)
class Expression:
    key: str
    en: str
    ko: str
    mood: str  # the mood key it counts towards


EXPRESSIONS: tuple[Expression, ...] = (
    Expression("happy", "happy", "행복한", "happy"),
    Expression("sad", "sad", "슬픈", "sad"),
    Expression("angry", "angry", "화난", "angry"),
    Expression("surprised", "surprised", "놀란", "energetic"),
    Expression("calm", "calm", "차분한", "calm"),
    Expression("fearful", "fearful", "두려운", "tense"),
    Expression("disgusted", "disgusted", "불쾌한", "dark"),
)


@dataclass(frozen=True)
class MoodScore:
    mood: Mood
    score: float

    def to_json(self) -> dict[str, object]:
        return {"key": self.mood.key, "en": self.mood.en, "ko": self.mood.ko, "score": round(self.score, 4)}


@dataclass(frozen=True)
class FaceReading:
    expression: Expression
    probability: float  # of this expression among EXPRESSIONS
    face_probability: float  # that the photo shows a face at all

    def to_json(self) -> dict[str, object]:
        e = self.expression
        return {"expression": e.key, "en": e.en, "ko": e.ko, "mood": e.mood,
                "probability": round(self.probability, 4), "face_probability": round(self.face_probability, 4)}


class MoodSpace:
    """Mood prompt vectors in CLAP space, computed once per CLAP encoder."""

    def __init__(self, encode_text, moods: tuple[Mood, ...] = MOODS, templates: tuple[str, ...] = MOOD_TEMPLATES) -> None:
        self.moods = moods
        prompts = [t.format(m.en) for m in moods for t in templates]
        vectors = encode_text(prompts).reshape(len(moods), len(templates), -1)
        self.vectors = l2_normalise(vectors.mean(axis=1))

    def vector(self, key: str) -> np.ndarray:
        return self.vectors[[m.key for m in self.moods].index(key)]

    def top(self, vector: np.ndarray, k: int = 3) -> list[MoodScore]:
        """The ``k`` moods nearest to a CLAP-space vector, best first."""
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        return [MoodScore(self.moods[i], float(scores[i])) for i in np.argsort(-scores)[:k]]
