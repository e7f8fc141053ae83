"""Queries into CLAP space and ranked songs out: a photo, a text, or another song.

A photo takes two routes into the songs' space: its BLIP caption through CLAP's text tower, and its
CLIP vector through the projection head. The query is their normalised weighted sum (``alpha`` for
the image route). The photo's faces, found by MTCNN and read by the expression model, pull
it towards their expressions' moods; without the face models, CLIP's zero-shot reading of the whole
photo stands in and the result says so. Without a projection checkpoint the caption route alone serves,
and the result says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from PIL import Image

from image2mood.captions import ENGLISH, language_key, with_languages
from image2mood.config import Settings
from image2mood.errors import Image2MoodError, ModelLoadError, ModelNotFoundError, StoreError
from image2mood.faces.reader import Face, FaceModels, mood_weights
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.models.lane import ModelLane
from image2mood.faces.zero_shot import FaceReader
from image2mood.models.projection import ProjectionHead
from image2mood.moodmap import MapPoint, MoodMap
from image2mood.moods import MoodScore, MoodSpace
from image2mood.photo_memo import PhotoMemo, photo_key
from image2mood.query import face_pull, fuse, project
from image2mood.ranking import Options, RankedSong, rank
from image2mood.store import open_configured_store
from image2mood.store.base import Song, SongStore, canonical_id



log = logging.getLogger(__name__)


class UnknownSongError(Image2MoodError):
    """A song id that is not in the store."""


@dataclass
class Recommendation:
    """Everything a person is shown: the songs and why."""

    route: str  # "fused", "image", "caption", "text" or "song"
    vector: np.ndarray  # the query in CLAP space (L2-normalised)
    moods: list[MoodScore]
    songs: list[RankedSong]
    caption: str | None = None  # as the captioner wrote it
    captions: dict[str, str] = field(default_factory=dict)  # page language → caption; "en" is what CLAP read
    caption_note: str | None = None  # why a caption asked for is missing
    alpha: float | None = None
    note: str | None = None
    faces: list[Face] = field(default_factory=list)  # the most confident first
    photo_size: tuple[int, int] | None = None  # (width, height) the photo was read at: the faces' box pixels
    timings_ms: dict[str, float] = field(default_factory=dict)
    point: MapPoint | None = None  # the query on the mood map


class Recommender:
    """Holds the models (loaded once) and a store; answers queries from any thread."""

    def __init__(self, settings: Settings, store: SongStore, lane: ModelLane | None = None) -> None:
        """``lane``: where model calls run (inline unless a thread serves it, as `serve`'s main thread does)."""
        self.settings, self.store = settings, store
        self.lane = lane or ModelLane()
        self.clap = factory.clap_encoder(settings)
        self.memo = PhotoMemo()  # caption, CLIP vector and faces of recent photos

    @classmethod
    def open(cls, settings: Settings, lane: ModelLane | None = None) -> Recommender:
        """A recommender over the configured store, which must have been built by the configured CLAP's
        weights (its songs windowed any way)."""
        store = open_configured_store(settings, store_info(factory.clap_encoder(settings), settings), access="read")
        return cls(settings, store, lane)

    @cached_property
    def moods(self) -> MoodSpace:
        return MoodSpace(self.clap.encode_text)

    @cached_property
    def mood_map(self) -> MoodMap:
        return MoodMap(self.clap.encode_text, self.moods.vectors, self.moods.moods)

    @cached_property
    def faces(self) -> FaceReader:
        return FaceReader(factory.image_encoder(self.settings).encode_text)

    @property
    def face_models(self) -> FaceModels | None:
        """The face detector and expression model, or None when missing (CLIP's zero-shot reading stands in)."""
        return factory.face_models(self.settings)

    @property
    def projection(self) -> ProjectionHead | None:
        return factory.projection_head(self.settings)

    def warm_up(self) -> None:
        """Load every model and prompt table now (a server does this before its first request)."""
        factory.captioner(self.settings)
        factory.image_encoder(self.settings)
        _ = self.projection, self.moods, self.mood_map, self.faces, self.face_models

    def for_photo(self, image: Image.Image, options: Options = Options(),
                  on_songs: Callable[[Recommendation], None] | None = None, client: str = "") -> Recommendation:
        """Songs for an RGB photo: CLIP, the faces, BLIP's caption and its CLAP vector on the model lane
        (:mod:`image2mood.models.lane`: side by side they slow each other; CLIP, the caption and its CLAP vector
        batched with other photos' that arrive at the same moment), then fuse and search.

        With a projection head, ``on_songs`` gets the image route's answer (no caption yet) before BLIP
        starts: the first songs. A photo seen recently skips the models, its caption's CLAP vector
        included (:mod:`photo_memo`), when the same ``client`` (the service: its address) sent it.
        """
        with self.lane.request():
            return self._for_photo(image, options, on_songs, client)

    def _for_photo(self, image: Image.Image, options: Options,
                   on_songs: Callable[[Recommendation], None] | None, client: str) -> Recommendation:
        timings: dict[str, float] = {}
        key = photo_key(image, client)
        head, face_models = self.projection, self.face_models
        clip_vector = _timed(timings, "clip", lambda: self.memo.get(
            key, "clip", lambda: self.lane.batch("clip", image, factory.image_encoder(self.settings).encode_images)))
        image_route = None if head is None else _timed(timings, "projection", lambda: self.lane.run(
            lambda: project(head, clip_vector)))
        if face_models is None:
            faces = self._clip_face(clip_vector, timings)
        else:
            faces = _timed(timings, "faces", lambda: self.memo.get(
                key, "faces", lambda: self.lane.run(lambda: face_models.read(image))))
        if on_songs is not None and image_route is not None:
            on_songs(self._image_answer(image_route, faces, image.size, options, timings))
        captioner = factory.captioner(self.settings)
        caption = _timed(timings, "caption", lambda: self.memo.get(
            key, "caption", lambda: self.lane.join("caption", image, captioner.rows)))
        english = caption if captioner.language == ENGLISH else _timed(timings, "caption_to_english", lambda: self.memo.get(
            key, "caption_en", lambda: self._to_english(caption, captioner.language)))
        text_route = _timed(timings, "clap_text", lambda: self.memo.get(
            key, "clap_text", lambda: self.lane.batch("clap_text", english, self.clap.encode_text)))

        alpha = self.settings.alpha if options.alpha is None else options.alpha
        query, route, alpha, note = fuse(text_route, image_route, alpha)
        if captioner.language != ENGLISH:
            translated = f"BLIP's caption ({captioner.language}) was translated into English for CLAP's text tower"
            note = f"{note}; {translated}" if note else translated
        query = face_pull(query, mood_weights(faces, image.size), self.moods)
        if face_models is None:
            missing = ("no face models are installed: CLIP's zero-shot reading of the whole photo stood in for "
                       "faces (`image2mood models faces` fetches them)")  # no path: answers go to browsers
            note = f"{note}; {missing}" if note else missing
        songs = _timed(timings, "search", lambda: self.rank(query, options))
        return Recommendation(route=route, vector=query, moods=self.moods.top(query), songs=songs, caption=caption,
                              captions={language_key(captioner.language): caption, "en": english}, alpha=alpha, note=note, faces=faces, photo_size=image.size, timings_ms=timings,
                              point=self.mood_map.place(query)[0])

    def _to_english(self, caption: str, language: str) -> str:
        """A caption of a captioner that does not write English, in English: CLAP's text tower reads no other."""
        return self.lane.run(lambda: factory.translator(self.settings).translate([caption], language, ENGLISH)[0])

    def add_captions(self, rec: Recommendation, languages: Iterable[str]) -> Recommendation:
        """``rec`` with its caption in each page language of ``languages`` too, translated from the English one on
        the model lane: call it once the songs are ranked (answered), so translating never delays them. Without
        a translator here the answer keeps the captions it has, and ``caption_note`` says why."""
        if rec.caption is None or all(lang in rec.captions for lang in languages):
            return rec
        started = time.perf_counter()
        try:
            captions = self.lane.run(lambda: with_languages(rec.captions, languages,
                                                            factory.translator(self.settings).translate))
        except (ModelNotFoundError, ModelLoadError) as exc:
            log.warning("captions stay in %s: %s", ", ".join(rec.captions), exc)
            return replace(rec, caption_note=f"no caption in {', '.join(sorted(set(languages) - set(rec.captions)))}"
                           ": the NLLB translator is not installed (`image2mood models download --with-translator`)")
        timings = {**rec.timings_ms, "translate": round((time.perf_counter() - started) * 1000, 1)}
        return replace(rec, captions=captions, timings_ms=timings)

    def stream_photo(self, image: Image.Image, options: Options = Options(),
                     client: str = "") -> Iterator[tuple[str, Recommendation]]:
        """A photo's answers as they come: ``("songs", image route)`` first when a projection head is
        configured, then ``("answer", the full answer)`` (the same as :meth:`for_photo`'s)."""
        events: queue.SimpleQueue[tuple[str, Recommendation | BaseException]] = queue.SimpleQueue()

        def answer() -> None:
            try:
                events.put(("answer", self.for_photo(image, options, lambda r: events.put(("songs", r)), client)))
            except BaseException as exc:  # re-raised in the caller's thread
                events.put(("error", exc))

        threading.Thread(target=answer, name="photo-stream", daemon=True).start()
        while True:
            kind, value = events.get()
            if isinstance(value, BaseException):
                raise value
            yield kind, value
            if kind == "answer":
                return

    def _image_answer(self, image_route: np.ndarray, faces: list[Face], size: tuple[int, int], options: Options,
                      timings: dict[str, float]) -> Recommendation:
        """The image route's answer alone (pulled by the faces), before the caption is ready."""
        query = face_pull(image_route, mood_weights(faces, size), self.moods)
        songs = _timed(timings, "first_search", lambda: self.rank(query, options))
        return Recommendation(route="image", vector=query, moods=self.moods.top(query), songs=songs, alpha=1.0,
                              faces=faces, photo_size=size, timings_ms=dict(timings),
                              point=self.mood_map.place(query)[0])

    def _clip_face(self, clip_vector: np.ndarray, timings: dict[str, float]) -> list[Face]:
        """The fallback without face models: CLIP's zero-shot reading of the whole photo, as a box-less face."""
        reading = _timed(timings, "face", lambda: self.lane.run(lambda: self.faces.read(clip_vector)))
        return [] if reading is None else [Face.from_reading(reading)]

    def for_text(self, text: str, options: Options = Options()) -> Recommendation:
        """Songs for a free-text description ("rainy night in the city")."""
        query = self.lane.run(lambda: self.clap.encode_text([text])[0])
        return Recommendation(route="text", vector=query, moods=self.moods.top(query),
                              songs=self.rank(query, options), point=self.mood_map.place(query)[0])

    def similar(self, song_id: str, options: Options = Options()) -> tuple[Song, Recommendation]:
        """Songs like a stored one (the song itself is left out)."""
        found = self.find([song_id], with_vectors=True)
        if not found:
            raise UnknownSongError(f"no song with id {song_id} in the store")
        song = found[0]
        excluded = replace(options.song_filter, exclude_ids=(*options.song_filter.exclude_ids, song.id))
        options = replace(options, song_filter=excluded)
        return song, Recommendation(route="song", vector=song.vector, moods=self.moods.top(song.vector),
                                    songs=self.rank(song.vector, options), point=self.mood_map.place(song.vector)[0])

    def find(self, ids: list[str], with_vectors: bool = False) -> list[Song]:
        """Stored songs by id; ids that are not song ids at all are simply not found."""
        valid = []
        for song_id in ids:
            try:
                valid.append(canonical_id(song_id))
            except StoreError:  # not an id the store could hold
                continue
        return self.store.get(valid, with_vectors=with_vectors)

    def rank(self, query: np.ndarray, options: Options) -> list[RankedSong]:
        """The stored songs nearest to a query vector (see :func:`image2mood.ranking.rank`)."""
        return rank(self.store, query, options, self.moods, self.mood_map, self.settings.highlight_seconds)


def _timed(timings: dict[str, float], name: str, work):
    started = time.perf_counter()
    result = work()
    timings[name] = round((time.perf_counter() - started) * 1000, 1)
    return result
