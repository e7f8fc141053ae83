"""Sweeps: every combination of the knobs, each scored on the evaluation set with the core's own query path.

Query-side knobs (alpha, projection checkpoint, mood vocabulary and prompt templates, per-artist cap,
MMR, face weight) reuse the cached query vectors: BLIP and CLIP run once per photo. Song-side knobs
(windows per song, window length, pooling) change the songs' vectors, so each such variant is
re-embedded by the core's indexing functions into a separate store under ``OUT/stores/``; the
configured store is never written to. Pooling ``maxsim`` scores each song by its best window (MaxSim over the
window vectors the store keeps) instead of its mean-pooled vector: it searches the mean variant's store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from image2mood.config import Settings
from image2mood.errors import Image2MoodError
from image2mood.library import embed, file_facts, prepare, store_info
from image2mood.models import factory
from image2mood.models.clap import ClapEncoder
from image2mood.models.projection import ProjectionHead, load_projection
from image2mood.models.resolve import resolve_model
from image2mood.moods import MOODS, Mood, MoodSpace
from image2mood.paths import local_path
from image2mood.query import face_pull, fuse, project
from image2mood.ranking import Options, RankedSong, rank
from image2mood.store import open_configured_store, open_store
from image2mood.store.base import Song, SongStore
from tuning import metrics
from tuning.cache import QueryCache
from tuning.evalset import Query, labels_from_tags
from tuning.knobs import Knobs, SongVectors, SweepSpec

MAXSIM = "maxsim"
POOLINGS = ("mean", "max", MAXSIM)
MOOD_K = 3  # moods shown per query, as the product shows them
Say = Callable[[str], None]


@dataclass
class QueryVectors:
    """What a query contributes before any knob: its routes into CLAP space."""

    query: Query
    text_route: np.ndarray
    clip: np.ndarray | None = None
    caption: str | None = None
    face_moods: dict[str, float] = field(default_factory=dict)  # mood → pull of the photo's faces


@dataclass
class ConfigResult:
    knobs: Knobs
    per_query: dict[str, list[float | None]]  # metric → value per query (None: undefined there)
    rankings: list[list[RankedSong]]
    query_moods: list[list[str]]
    health: metrics.Health
    name: str = ""

    def summary(self) -> dict[str, metrics.Interval]:
        return {name: metrics.bootstrap([v for v in values if v is not None])
                for name, values in self.per_query.items()}


@dataclass
class SweepResult:
    queries: list[QueryVectors]
    configs: list[ConfigResult]
    stores: dict[str, dict[str, object]]
    song_labels: dict[str, frozenset[str]]
    cache: dict[str, dict[str, int]]
    notes: list[str]
    k: int
    baseline: int  # index of the setting the others are compared with

    @property
    def primary(self) -> str:
        return f"ndcg@{self.k}"


def query_vectors(queries: Sequence[Query], cache: QueryCache, say: Say) -> list[QueryVectors]:
    """Every query's routes, from the cache where it can; a photo that cannot be read is left out."""
    out = []
    for query in tqdm(queries, unit="query", desc="query vectors", dynamic_ncols=True, mininterval=0.5):
        if query.text is not None:
            out.append(QueryVectors(query, cache.clap_text([query.text])[0]))
            continue
        try:
            photo = cache.photo(query.photo)
        except (Image2MoodError, OSError) as exc:
            say(f"skipped query {query.id}: {exc}")
            continue
        out.append(QueryVectors(query, cache.clap_text([photo.caption])[0], photo.clip, photo.caption,
                                photo.face_moods))
    return out


def query_vector(qv: QueryVectors, knobs: Knobs, head: ProjectionHead | None, moods: MoodSpace) -> np.ndarray:
    """A query's vector under ``knobs``, by the product's own fusion and face pull."""
    if qv.clip is None:
        return qv.text_route
    image_route = None if head is None else project(head, qv.clip)
    query, *_ = fuse(qv.text_route, image_route, knobs.alpha)
    return face_pull(query, qv.face_moods, moods, knobs.face_weight)


def reembed(songs: Sequence[Song], variant: SongVectors, settings: Settings, encoder: ClapEncoder,
            folder: Path, say: Say) -> SongStore:
    """The library's songs embedded the ``variant`` way into their own store at ``folder`` (resumable)."""
    variant_settings = settings.model_copy(update={"windows_per_song": variant.windows,
                                                   "window_seconds": variant.seconds})
    base = store_info(encoder, variant_settings)
    info = base if variant.pooling == "mean" else dataclasses.replace(
        base, windowing=f"{base.windowing}-{variant.pooling}")
    store = open_store(str(folder), info=info)
    done = {s.id: s.content_hash for s in store.scroll()}
    todo = [s for s in songs if done.get(s.id) != s.content_hash]
    say(f"re-embedding {len(todo)} of {len(songs)} songs with {variant.label} into a separate store {folder} "
        f"(the configured store is not changed)")
    pending: list[Song] = []
    for song in tqdm(todo, unit="song", desc=variant.label, dynamic_ncols=True, mininterval=0.5):
        try:
            prepared = prepare(file_facts(local_path(song.path)), variant_settings, encoder.sample_rate)
        except (Image2MoodError, OSError) as exc:
            say(f"skipped {song.path}: {exc}")
            continue
        pending.append(embed(prepared, encoder, variant.pooling))
        if len(pending) >= settings.upsert_batch:
            store.upsert(pending)
            pending.clear()
    store.upsert(pending)
    return store


def _relevance(query: Query, song_ids: set[str], song_labels: dict[str, frozenset[str]]) -> set[str]:
    if query.relevant:
        return set(query.relevant) & song_ids
    return {sid for sid in song_ids if song_labels.get(sid, frozenset()) & query.labels}


def score_query(ranked: Sequence[RankedSong], relevant: set[str], query_labels: frozenset[str],
                song_labels: dict[str, frozenset[str]], query_moods: Sequence[str], mood_words: frozenset[str],
                k: int) -> dict[str, float | None]:
    """Every metric for one query's ranked songs; mood precision where its labels include mood words."""
    ids = [r.song.id for r in ranked]
    scores = [r.score for r in ranked]
    hits = [sid in relevant for sid in ids]
    values: dict[str, float | None] = {
        f"p@{k}": metrics.precision_at_k(hits, scores, k),
        f"r@{k}": metrics.recall_at_k(hits, scores, k, len(relevant)),
        "mrr": metrics.reciprocal_rank(hits, scores) if relevant else None,
        f"ndcg@{k}": metrics.ndcg_at_k(hits, scores, k, len(relevant)),
        f"label_p@{k}": None,
        f"mood_p@{MOOD_K}": None,
    }
    if query_labels and song_labels:
        label_hits = [bool(song_labels.get(sid, frozenset()) & query_labels) for sid in ids]
        values[f"label_p@{k}"] = metrics.precision_at_k(label_hits, scores, k)
    if query_labels & mood_words:
        values[f"mood_p@{MOOD_K}"] = sum(m in query_labels for m in query_moods) / MOOD_K
    return values


class Sweep:
    """Runs a :class:`SweepSpec` over an evaluation set against the configured store."""

    def __init__(self, settings: Settings, out: Path, cache: QueryCache, say: Say) -> None:
        self.settings, self.out, self.cache, self.say = settings, out, cache, say
        self.encoder = factory.clap_encoder(settings)
        self._heads: dict[Path, ProjectionHead] = {}
        self._spaces: dict[tuple, MoodSpace] = {}

    def head(self, path: Path | None) -> ProjectionHead | None:
        if path is None:
            return None
        if path not in self._heads:
            self._heads[path] = load_projection(path, resolve_model("clip", self.settings.model_spec("clip")),
                                                resolve_model("clap", self.settings.model_spec("clap")))
        return self._heads[path]

    def space(self, vocabulary: tuple[Mood, ...], templates: tuple[str, ...]) -> MoodSpace:
        if (vocabulary, templates) not in self._spaces:
            self._spaces[(vocabulary, templates)] = MoodSpace(self.cache.clap_text, vocabulary, templates)
        return self._spaces[(vocabulary, templates)]

    def run(self, queries: Sequence[Query], spec: SweepSpec,
            song_labels: dict[str, frozenset[str]] | None) -> SweepResult:
        configured = SongVectors(self.settings.windows_per_song, self.settings.window_seconds)
        notes: list[str] = []
        base_store = open_configured_store(self.settings, store_info(self.encoder, self.settings), create=False)
        stores: dict[SongVectors, SongStore] = {configured: base_store}
        try:
            songs = list(base_store.scroll(with_vectors=True))
            if not songs:
                raise Image2MoodError(f"the store at {base_store.location} holds no songs; "
                                      "run `image2mood index MUSIC_DIR` first")
            if song_labels is None:
                song_labels = labels_from_tags(songs)
                notes.append(f"song labels from the genre tags in the store ({len(song_labels)} songs tagged)")
            vectors = query_vectors(queries, self.cache, self.say)
            if not vectors:
                raise Image2MoodError("no query of the set could be used; see the messages above")
            used = {qv.query.id for qv in vectors}
            if left_out := [q.id for q in queries if q.id not in used]:
                notes.append(f"left out {len(left_out)} of {len(queries)} queries, whose photos could not be "
                             f"read: {', '.join(left_out)}")
            self._check_relevant(vectors, {s.id for s in songs}, notes)
            for variant in dict.fromkeys(map(_stored_as, spec.song_vectors)):
                if variant != configured:
                    stores[variant] = reembed(songs, variant, self.settings, self.encoder,
                                              self.out / "stores" / variant.label, self.say)
                    notes.append(f"{variant.label}: songs re-embedded into a separate store "
                                 f"{self.out / 'stores' / variant.label}")
            libraries = {v: list(s.scroll(with_vectors=True)) for v, s in stores.items()}
            mood_words = frozenset(m.key for v in (MOODS, *spec.vocabularies) for m in v)
            configs = [self._evaluate(knobs, vectors, stores[_stored_as(knobs.songs)],
                                      libraries[_stored_as(knobs.songs)], song_labels, mood_words, spec.k)
                       for knobs in tqdm(spec.grid(configured), unit="setting", desc="settings", dynamic_ncols=True)]
            store_facts = {v.label: {"location": s.location, "songs": len(libraries[v]),
                                     "re-embedded": v != configured, "windowing": s.info.windowing}
                           for v, s in stores.items()}
        finally:
            for store in stores.values():
                store.close()
        _name(configs)
        configured_knobs = spec.baseline(self.settings)
        baseline = next((i for i, c in enumerate(configs) if c.knobs == configured_knobs), 0)
        if configs[baseline].knobs != configured_knobs:
            notes.append(f"the configured setting is not among those tried; compared with {configs[0].name}")
        return SweepResult(vectors, configs, store_facts, song_labels,
                           {"hits": self.cache.stats.hits, "computed": self.cache.stats.computed}, notes, spec.k,
                           baseline)

    def _check_relevant(self, vectors: list[QueryVectors], song_ids: set[str], notes: list[str]) -> None:
        missing = sum(len(v.query.relevant - song_ids) for v in vectors)
        if missing:
            notes.append(f"{missing} songs named as relevant are not in the store and cannot be found")
            self.say(f"note: {notes[-1]}")

    def _evaluate(self, knobs: Knobs, vectors: list[QueryVectors], store: SongStore, library: list[Song],
                  song_labels: dict[str, frozenset[str]], mood_words: frozenset[str], k: int) -> ConfigResult:
        vocabulary = self.space(knobs.vocabulary, knobs.templates)  # the mood words the answers show
        pull_space = self.space(MOODS, knobs.templates)  # the moods faces pull towards: always all of them
        options = Options(top=2 * k, max_per_artist=knobs.max_per_artist, mmr=knobs.mmr,  # 2k: ties past k
                          maxsim=knobs.songs.pooling == MAXSIM)
        head = self.head(knobs.projection)
        song_ids = {s.id for s in library}
        per_query: dict[str, list[float | None]] = {}
        rankings, moods, query_matrix = [], [], []
        for qv in vectors:
            query = query_vector(qv, knobs, head, pull_space)
            ranked = rank(store, query, options, vocabulary)
            query_moods = [m.mood.key for m in vocabulary.top(query, MOOD_K)]
            relevant = _relevance(qv.query, song_ids, song_labels)
            scored = score_query(ranked, relevant, qv.query.labels, song_labels, query_moods, mood_words, k)
            for name, value in scored.items():
                per_query.setdefault(name, []).append(value)
            rankings.append(ranked)
            moods.append(query_moods)
            query_matrix.append(query)
        health = metrics.library_health(
            np.stack([s.vector for s in library]), np.stack(query_matrix),
            [[r.song.id for r in ranked] for ranked in rankings], [[r.score for r in ranked] for ranked in rankings],
            {s.id: s.artist for s in library}, [s.id for s in library], k)
        return ConfigResult(knobs, per_query, rankings, moods, health)


def _stored_as(variant: SongVectors) -> SongVectors:
    """The store a variant's songs are in: MaxSim reads the windows of the mean-pooled one."""
    return dataclasses.replace(variant, pooling="mean") if variant.pooling == MAXSIM else variant


def _name(configs: list[ConfigResult]) -> None:
    """Name each setting by the knobs that vary across the sweep ("alpha=0.25 mmr=0.7")."""
    rows = [c.knobs.to_json() for c in configs]
    varying = [key for key in rows[0] if len({str(r[key]) for r in rows}) > 1]
    for config, row in zip(configs, rows):
        parts = []
        for key in varying:
            value = row[key]
            if key == "projection":
                value = Path(value).name if value else "none"
            elif isinstance(value, list):
                value = "+".join(value) if key == "vocabulary" else ";".join(value)
            parts.append(f"{key}={value}")
        config.name = " ".join(parts) or "configured"
