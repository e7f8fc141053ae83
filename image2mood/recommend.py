"""Queries into CLAP space and ranked songs out: a photo, a text, or another song.

A photo takes two routes into the songs' space: its BLIP caption through CLAP's text tower, and its
CLIP vector through the projection head. The query is their normalised weighted sum (``alpha`` for
the image route); a face's expression, read by CLIP zero-shot, pulls it towards that mood. Without a
projection checkpoint the caption route alone serves, and the result says so.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from image2mood.config import Settings
from image2mood.errors import Image2MoodError, StoreError
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.models.projection import ProjectionHead
from image2mood.moods import FaceReader, FaceReading, MoodScore, MoodSpace
from image2mood.store import open_configured_store
from image2mood.store.base import Song, SongFilter, SongStore, canonical_id
from image2mood.vectors import l2_normalise

FACE_WEIGHT = 0.5  # how far a clear facial expression pulls the query towards its mood
CANDIDATES_PER_RESULT = 4  # candidates fetched per wanted song when diversity reorders them


class UnknownSongError(Image2MoodError):
    """A song id that is not in the store."""


@dataclass(frozen=True)
class Options:
    """What a caller may set per query."""

    top: int = 10
    alpha: float | None = None  # None: the configured alpha
    song_filter: SongFilter = field(default_factory=SongFilter)
    max_per_artist: int | None = None
    mmr: float | None = None  # MMR lambda in [0, 1]: 1 = relevance only, lower = more diverse


@dataclass(frozen=True)
class RankedSong:
    song: Song
    score: float
    moods: list[MoodScore]


@dataclass
class Recommendation:
    """Everything a person is shown: the songs and why."""

    route: str  # "fused", "image", "caption", "text" or "song"
    vector: np.ndarray  # the query in CLAP space (L2-normalised)
    moods: list[MoodScore]
    songs: list[RankedSong]
    caption: str | None = None
    alpha: float | None = None
    note: str | None = None
    face: FaceReading | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Recommender:
    """Holds the models (loaded once) and a store; answers queries from any thread."""

    def __init__(self, settings: Settings, store: SongStore) -> None:
        self.settings, self.store = settings, store
        self.clap = factory.clap_encoder(settings)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="photo")

    @classmethod
    def open(cls, settings: Settings) -> Recommender:
        """A recommender over the configured store, which must have been built by the configured CLAP."""
        store = open_configured_store(settings, store_info(factory.clap_encoder(settings), settings))
        return cls(settings, store)

    @cached_property
    def moods(self) -> MoodSpace:
        return MoodSpace(self.clap.encode_text)

    @cached_property
    def faces(self) -> FaceReader:
        return FaceReader(factory.image_encoder(self.settings).encode_text)

    @property
    def projection(self) -> ProjectionHead | None:
        return factory.projection_head(self.settings)

    def warm_up(self) -> None:
        """Load every model and prompt table now (a server does this before its first request)."""
        factory.captioner(self.settings)
        factory.image_encoder(self.settings)
        _ = self.projection, self.moods, self.faces

    def for_photo(self, image: Image.Image, options: Options = Options()) -> Recommendation:
        """Songs for an RGB photo: caption and CLIP run side by side, then fuse and search."""
        timings: dict[str, float] = {}
        caption_job = self._pool.submit(_timed, timings, "caption",
                                        lambda: factory.captioner(self.settings).caption([image])[0])
        clip_vector = _timed(timings, "clip", lambda: factory.image_encoder(self.settings).encode_images([image])[0])
        face = _timed(timings, "face", lambda: self.faces.read(clip_vector))
        head = self.projection
        image_route = None
        if head is not None:
            with torch.inference_mode():
                image_route = _timed(timings, "projection", lambda: head(
                    torch.from_numpy(clip_vector)[None]).numpy()[0])
        caption = caption_job.result()
        text_route = _timed(timings, "clap_text", lambda: self.clap.encode_text([caption])[0])

        alpha = self.settings.alpha if options.alpha is None else options.alpha
        if image_route is None:
            route, alpha, note = "caption", 0.0, "no projection checkpoint is configured: the caption alone chose the songs"
            query = text_route
        else:
            route = "caption" if alpha == 0 else "image" if alpha == 1 else "fused"
            query, note = l2_normalise(alpha * image_route + (1 - alpha) * text_route), None
        if face is not None:
            pull = FACE_WEIGHT * face.probability * self.moods.vector(face.expression.mood)
            query = l2_normalise(query + pull)
        songs = _timed(timings, "search", lambda: self._rank(query, options))
        return Recommendation(route=route, vector=query, moods=self.moods.top(query), songs=songs, caption=caption,
                              alpha=alpha, note=note, face=face, timings_ms=timings)

    def for_text(self, text: str, options: Options = Options()) -> Recommendation:
        """Songs for a free-text description ("rainy night in the city")."""
        query = self.clap.encode_text([text])[0]
        return Recommendation(route="text", vector=query, moods=self.moods.top(query),
                              songs=self._rank(query, options))

    def similar(self, song_id: str, options: Options = Options()) -> tuple[Song, Recommendation]:
        """Songs like a stored one (the song itself is left out)."""
        found = self.find([song_id], with_vectors=True)
        if not found:
            raise UnknownSongError(f"no song with id {song_id} in the store")
        song = found[0]
        excluded = replace(options.song_filter, exclude_ids=(*options.song_filter.exclude_ids, song.id))
        options = replace(options, song_filter=excluded)
        return song, Recommendation(route="song", vector=song.vector, moods=self.moods.top(song.vector),
                                    songs=self._rank(song.vector, options))

    def find(self, ids: list[str], with_vectors: bool = False) -> list[Song]:
        """Stored songs by id; ids that are not song ids at all are simply not found."""
        valid = []
        for song_id in ids:
            try:
                valid.append(canonical_id(song_id))
            except StoreError:  # not an id the store could hold
                continue
        return self.store.get(valid, with_vectors=with_vectors)

    def _rank(self, query: np.ndarray, options: Options) -> list[RankedSong]:
        diverse = options.max_per_artist is not None or options.mmr is not None
        limit = options.top * CANDIDATES_PER_RESULT if diverse else options.top
        hits = self.store.search(query, limit=limit, song_filter=options.song_filter, with_vectors=True)
        ranked = [(hit.song, hit.score) for hit in hits]
        if options.mmr is not None:
            ranked = _mmr(ranked, options.mmr, len(ranked))
        if options.max_per_artist is not None:
            ranked = _cap_per_artist(ranked, options.max_per_artist)
        return [RankedSong(song, score, self.moods.top(song.vector)) for song, score in ranked[: options.top]]


def _timed(timings: dict[str, float], name: str, work):
    started = time.perf_counter()
    result = work()
    timings[name] = round((time.perf_counter() - started) * 1000, 1)
    return result


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
