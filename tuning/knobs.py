"""The knobs a sweep turns: how songs are embedded, the fusion weight, the projection head, the mood words
and their prompts, diversity and the faces' pull; every combination is one setting."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from image2mood.config import Settings
from image2mood.errors import Image2MoodError
from image2mood.moods import MOOD_TEMPLATES, MOODS, Mood
from image2mood.query import FACE_WEIGHT


@dataclass(frozen=True)
class SongVectors:
    """How the songs' vectors are made: the configured store's way, or a variant to re-embed."""

    windows: int
    seconds: float
    pooling: str = "mean"

    @property
    def label(self) -> str:
        return f"{self.windows}x{self.seconds:g}s-{self.pooling}"


@dataclass(frozen=True)
class Knobs:
    """One setting of every knob."""

    alpha: float
    projection: Path | None
    templates: tuple[str, ...]
    vocabulary: tuple[Mood, ...]
    max_per_artist: int | None
    mmr: float | None
    face_weight: float
    songs: SongVectors

    def to_json(self) -> dict[str, object]:
        return {"alpha": self.alpha, "projection": str(self.projection) if self.projection else None,
                "templates": list(self.templates), "vocabulary": [m.key for m in self.vocabulary],
                "max_per_artist": self.max_per_artist, "mmr": self.mmr, "face_weight": self.face_weight,
                "windows": self.songs.windows, "window_seconds": self.songs.seconds, "pooling": self.songs.pooling}


@dataclass
class SweepSpec:
    """The values to try for each knob; the first value of each is the configured one where it is listed."""

    alphas: list[float]
    projections: list[Path | None]
    templates: list[tuple[str, ...]] = field(default_factory=lambda: [MOOD_TEMPLATES])
    vocabularies: list[tuple[Mood, ...]] = field(default_factory=lambda: [MOODS])
    max_per_artist: list[int | None] = field(default_factory=lambda: [None])
    mmr: list[float | None] = field(default_factory=lambda: [None])
    face_weights: list[float] = field(default_factory=lambda: [FACE_WEIGHT])
    song_vectors: list[SongVectors] = field(default_factory=list)  # empty: the configured store only
    k: int = 10

    def baseline(self, settings: Settings) -> Knobs:
        """The knobs as the configuration sets them: what every other setting is compared with."""
        return Knobs(settings.alpha, settings.projection_path(), MOOD_TEMPLATES, MOODS, None, None, FACE_WEIGHT,
                     SongVectors(settings.windows_per_song, settings.window_seconds))

    def grid(self, configured: SongVectors) -> list[Knobs]:
        songs = self.song_vectors or [configured]
        return [Knobs(*values) for values in itertools.product(
            self.alphas, self.projections, self.templates, self.vocabularies, self.max_per_artist, self.mmr,
            self.face_weights, songs)]


def vocabulary(words: str) -> tuple[Mood, ...]:
    """A vocabulary from comma-separated English mood words (known ones keep their Korean)."""
    known = {m.key: m for m in MOODS}
    chosen = tuple(known.get(w, Mood(w, w, w)) for w in (w.strip().lower() for w in words.split(",")) if w)
    if len(chosen) < 2:
        raise Image2MoodError(f"a vocabulary needs at least two mood words separated by commas, got {words!r}")
    return chosen


def templates(spec: str) -> tuple[str, ...]:
    """Prompt templates separated by ';', each with one '{}' for the mood word."""
    chosen = tuple(t.strip() for t in spec.split(";") if t.strip())
    bad = [t for t in chosen if t.count("{}") != 1]
    if not chosen or bad:
        raise Image2MoodError(f"prompt templates are separated by ';' and hold one '{{}}' each "
                              f"(e.g. \"{{}} music;a {{}} song\"), got {spec!r}")
    return chosen
