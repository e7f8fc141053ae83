"""The mood map: any CLAP-space vector placed on the valence × arousal plane (Russell's circumplex).

Two directions come zero-shot from CLAP's text tower, each the difference between a prompt pair:
valence from "sad, gloomy music" to "happy, cheerful music", arousal from "calm, quiet music" to
"energetic, intense music". Projections onto them are raw numbers on an arbitrary scale, so the map
is calibrated on the mood vocabulary: a linear map from CLAP space to the plane, fitted by ridge
regression to the circumplex positions of the moods and pulled towards the two prompt directions.
With real CLAP the prompt directions carry most of the map; with random weights only the fit does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from image2mood.moods import MOODS, Mood
from image2mood.vectors import l2_normalise

VALENCE_PROMPTS = ("sad, gloomy music", "happy, cheerful music")
AROUSAL_PROMPTS = ("calm, quiet music", "energetic, intense music")

CIRCUMPLEX: dict[str, tuple[float, float]] = {
    # mood key: (valence, arousal) in [-1, 1], after Russell (1980) and the music-emotion literature
    "calm": (0.5, -0.7),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.4),
    "energetic": (0.5, 0.8),
    "romantic": (0.6, -0.3),
    "dark": (-0.5, -0.3),
    "epic": (0.4, 0.8),
    "nostalgic": (0.2, -0.5),
    "dreamy": (0.4, -0.6),
    "tense": (-0.5, 0.7),
    "peaceful": (0.7, -0.8),
    "melancholic": (-0.5, -0.6),
    "playful": (0.7, 0.5),
    "angry": (-0.8, 0.8),
    "hopeful": (0.6, 0.3),
    "mysterious": (-0.2, 0.3),
}
RIDGE = 1e-3  # how strongly the map stays near the prompt directions, relative to the moods' spread


@dataclass(frozen=True)
class MapPoint:
    valence: float
    arousal: float

    def to_json(self) -> dict[str, float]:
        return {"valence": round(self.valence, 4), "arousal": round(self.arousal, 4)}


class MoodMap:
    """Places CLAP-space vectors on the valence × arousal plane; built once per CLAP encoder."""

    def __init__(self, encode_text: Callable[[list[str]], np.ndarray], mood_vectors: np.ndarray,
                 moods: tuple[Mood, ...] = MOODS) -> None:
        """``mood_vectors``: the moods' CLAP vectors (MoodSpace.vectors), one row per mood of ``moods``."""
        low_v, high_v, low_a, high_a = encode_text([*VALENCE_PROMPTS, *AROUSAL_PROMPTS])
        prior = np.stack([l2_normalise(high_v - low_v), l2_normalise(high_a - low_a)], axis=1)  # (dim, 2)
        known = [i for i, mood in enumerate(moods) if mood.key in CIRCUMPLEX]
        x = np.asarray(mood_vectors, dtype=np.float64)[known]
        target = np.array([CIRCUMPLEX[moods[i].key] for i in known])
        self.weights, self.bias = _ridge(x, target, prior.astype(np.float64), RIDGE)

    def place(self, vectors: np.ndarray) -> list[MapPoint]:
        """Valence and arousal (each clipped to [-1, 1]) of each row of ``vectors``."""
        coords = np.clip(np.atleast_2d(vectors) @ self.weights + self.bias, -1.0, 1.0)
        return [MapPoint(float(v), float(a)) for v, a in coords]


def _ridge(x: np.ndarray, target: np.ndarray, prior: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b minimising |(x - mean) W + b - target|² + strength·|W - prior·s|², with s the prior's own
    least-squares scale, so that W stays near the prompt directions where the fit allows."""
    mean = x.mean(axis=0)
    centred = x - mean
    projected = centred @ prior
    scale = (projected * (target - target.mean(axis=0))).sum(axis=0) / np.maximum((projected**2).sum(axis=0), 1e-12)
    anchor = prior * scale
    gram = centred.T @ centred
    strength *= np.trace(gram) / x.shape[1]  # relative to the moods' own spread, whatever the space's scale
    gram += strength * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, centred.T @ (target - target.mean(axis=0)) + strength * anchor)
    bias = target.mean(axis=0) - mean @ weights
    return weights.astype(np.float32), bias.astype(np.float32)
