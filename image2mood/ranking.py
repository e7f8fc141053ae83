"""Ranking: the songs nearest to a query, reordered for diversity (maximal marginal relevance, a cap per
artist), each with its moods, its place on the mood map and its highlight (:mod:`image2mood.highlights`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from image2mood.highlights import Highlight, highlights, missing_reason
from image2mood.moodmap import MapPoint, MoodMap
from image2mood.moods import MoodScore, MoodSpace
from image2mood.store.base import Song, SongFilter, SongStore

CANDIDATES_PER_RESULT = 4  # candidates fetched per wanted song when diversity reorders them


@dataclass(frozen=True)
class Options:
    """What a caller may set per query."""

    top: int = 10
    alpha: float | None = None  # None: the configured alpha
    song_filter: SongFilter = field(default_factory=SongFilter)
    max_per_artist: int | None = None
    mmr: float | None = None  # MMR lambda in [0, 1]: 1 = relevance only, lower = more diverse
    maxsim: bool = False  # songs scored by their best window (MaxSim), not their pooled vector: a tuning knob


@dataclass(frozen=True)
class RankedSong:
    song: Song
    score: float
    moods: list[MoodScore]
    point: MapPoint | None = None  # the song on the mood map
    highlight: Highlight | None = None  # its part closest to the query
    no_highlight: str | None = None  # why it has none, and how to get one (None: it has one, or none was asked)


def rank(store: SongStore, query: np.ndarray, options: Options, moods: MoodSpace,
         mood_map: MoodMap | None = None, highlight_seconds: float | None = None) -> list[RankedSong]:
    """The songs of ``store`` nearest to a query vector, reordered for diversity when ``options`` ask, each with
    its nearest moods in ``moods``, (given a ``mood_map``) its place on the map and (given ``highlight_seconds``)
    its highlight of that length, or why it has none."""
    diverse = options.max_per_artist is not None or options.mmr is not None
    limit = options.top * CANDIDATES_PER_RESULT if diverse else options.top
    hits = store.search(query, limit=limit, song_filter=options.song_filter, with_vectors=True, maxsim=options.maxsim)
    ranked = [(hit.song, hit.score) for hit in hits]
    if options.mmr is not None:
        ranked = _mmr(ranked, options.mmr, len(ranked))
    if options.max_per_artist is not None:
        ranked = _cap_per_artist(ranked, options.max_per_artist)
    ranked = ranked[: options.top]
    if mood_map is None or not ranked:
        points: list[MapPoint | None] = [None] * len(ranked)
    else:
        points = mood_map.place(np.stack([song.vector for song, _ in ranked]))
    songs = [song for song, _ in ranked]
    found = [None] * len(ranked) if highlight_seconds is None else highlights(store, songs, query, highlight_seconds)
    why = None if highlight_seconds is None else missing_reason(store)
    return [RankedSong(song, score, moods.top(song.vector), point, highlight, why if highlight is None else None)
            for (song, score), point, highlight in zip(ranked, points, found, strict=True)]


def _cap_per_artist(ranked: list[tuple[Song, float]], cap: int) -> list[tuple[Song, float]]:
    """Keep the order, but no more than ``cap`` songs of one artist (unknown artists are not capped)."""
    seen: dict[str, int] = {}
    kept = []
    for song, score in ranked:
        if song.artist is not None:
            seen[song.artist] = seen.get(song.artist, 0) + 1
            if seen[song.artist] > cap:
                continue
        kept.append((song, score))
    return kept


def _mmr(ranked: list[tuple[Song, float]], lam: float, k: int) -> list[tuple[Song, float]]:
    """Maximal marginal relevance: trade relevance for distance from the songs already chosen."""
    if not ranked:
        return ranked
    vectors = np.stack([song.vector for song, _ in ranked])
    relevance = np.array([score for _, score in ranked])
    chosen: list[int] = []
    left = list(range(len(ranked)))
    while left and len(chosen) < k:
        if chosen:
            redundancy = (vectors[left] @ vectors[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(left))
        best = left[int(np.argmax(lam * relevance[left] - (1 - lam) * redundancy))]
        chosen.append(best)
        left.remove(best)
    return [ranked[i] for i in chosen]
