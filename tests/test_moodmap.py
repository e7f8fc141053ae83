"""The mood map: calibration puts every mood in its circumplex quadrant; songs and photos get places."""

from __future__ import annotations

import numpy as np

from image2mood.config import Settings
from image2mood.models import factory
from image2mood.moodmap import AROUSAL_PROMPTS, CIRCUMPLEX, VALENCE_PROMPTS, MoodMap
from image2mood.moods import MOODS, MoodSpace


def test_every_mood_falls_in_its_circumplex_quadrant_on_the_tiny_models(settings: Settings) -> None:
    """With random weights only the calibration can be tested: it must place the vocabulary right."""
    clap = factory.clap_encoder(settings)
    space = MoodSpace(clap.encode_text)
    points = MoodMap(clap.encode_text, space.vectors).place(space.vectors)
    for mood, point in zip(MOODS, points, strict=True):
        valence, arousal = CIRCUMPLEX[mood.key]
        assert np.sign(point.valence) == np.sign(valence), (mood.key, point)
        assert np.sign(point.arousal) == np.sign(arousal), (mood.key, point)
        assert -1 <= point.valence <= 1 and -1 <= point.arousal <= 1


def test_prompt_directions_carry_the_map_where_the_space_is_meaningful() -> None:
    """A made-up 3-d space where 'happy' and 'energetic' prompts point along axes 0 and 1: a vector
    along axis 0 is pleasant and one along axis 1 is excited, beyond the moods it was fitted on."""
    axes = {"sad, gloomy music": [-1, 0, 0], "happy, cheerful music": [1, 0, 0],
            "calm, quiet music": [0, -1, 0], "energetic, intense music": [0, 1, 0]}

    def encode_text(texts: list[str]) -> np.ndarray:
        return np.array([axes[t] for t in texts], dtype=np.float32)

    moods = np.array([[*CIRCUMPLEX[m.key], 0.1] for m in MOODS], dtype=np.float32)
    mood_map = MoodMap(encode_text, moods)
    pleasant, excited = mood_map.place(np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0]], dtype=np.float32))
    assert pleasant.valence > 0.5 and abs(pleasant.arousal) < 0.3
    assert excited.arousal > 0.5 and abs(excited.valence) < 0.3


def test_place_clips_to_the_plane(settings: Settings) -> None:
    clap = factory.clap_encoder(settings)
    space = MoodSpace(clap.encode_text)
    far = MoodMap(clap.encode_text, space.vectors).place(100 * space.vectors[:2])
    assert all(-1 <= p.valence <= 1 and -1 <= p.arousal <= 1 for p in far)


def _planted_space(seed: int) -> tuple:
    """A 32-d space where a fixed linear map carries valence and arousal (plus noise), and the prompt pairs
    point nowhere in particular: only the calibration on the moods can find the map."""
    rng = np.random.default_rng(seed)
    planted = rng.normal(size=(2, 32))

    def embed(points: list[tuple[float, float]]) -> np.ndarray:
        vectors = np.asarray(points) @ planted + 0.3 * rng.normal(size=(len(points), 32))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    prompts = {text: rng.normal(size=32).astype(np.float32) for text in (*VALENCE_PROMPTS, *AROUSAL_PROMPTS)}
    return embed, lambda texts: np.stack([prompts[t] for t in texts])


HELD_OUT = [(v * a, s * b) for v in (1, -1) for s in (1, -1) for a, b in ((0.7, 0.4), (0.4, 0.7), (0.6, 0.6))]


def _right_quadrants(mood_map: MoodMap, vectors: np.ndarray) -> int:
    return sum(np.sign(p.valence) == np.sign(v) and np.sign(p.arousal) == np.sign(a)
               for p, (v, a) in zip(mood_map.place(vectors), HELD_OUT, strict=True))


def test_calibration_places_held_out_vectors_in_their_quadrants_on_a_planted_map() -> None:
    """Fitted on the 16 moods, the map puts 12 held-out points (3 per quadrant, never fitted on) in their
    quadrants; fitted on the same moods with their circumplex places shuffled, it cannot (at most 8)."""
    embed, encode_text = _planted_space(0)
    moods = [CIRCUMPLEX[m.key] for m in MOODS]
    held_out = embed(HELD_OUT)
    assert _right_quadrants(MoodMap(encode_text, embed(moods)), held_out) == 12
    shuffled = [moods[i] for i in np.random.default_rng(1).permutation(len(moods))]
    assert _right_quadrants(MoodMap(encode_text, embed(shuffled)), held_out) <= 8
