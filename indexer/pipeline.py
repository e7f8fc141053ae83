"""Index a music library: walk, skip unchanged files, decode ahead of the model, write in batches.

Decoding (and hashing) of the next files runs in a worker thread while the model embeds, and, given a
:class:`PendingEncoder`, while the model loads. Songs are embedded :func:`embed_workers` at a time, each on
its own share of the cores (one torch thread a song on a CPU): torch's OpenMP threads wait for each other at
every operation, so one song on 2 threads ran CLAP's audio tower at 0.75 of the speed of 2 songs on one
thread each, and the decoding thread, taking a core from one of them, made it 4.5× slower still.

Songs reach the store in batches; each batch is durable when written, so an interrupted run loses at most
the batch in hand, and a rerun finishes the job (ids are stable, so no duplicates).
A bad entry (not a regular file, undecodable, unnamable) is reported with its reason and skipped.
Pruning follows :mod:`indexer.prune`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tqdm import tqdm

from image2mood.config import Settings
from image2mood.decoder_notes import separate_stderr
from image2mood.errors import Image2MoodError, ModelLoadError
from image2mood.files import iter_audio_files
from image2mood.library import FileFacts, PreparedSong, embed, file_facts, prepare
from image2mood.models.clap_facts import ClapFacts
from image2mood.paths import local_path, stored_path
from image2mood.store.base import Song, SongStore
from image2mood.tags import read_tags
from image2mood.text import printable
from indexer.prune import prune_plan, prune_roots

if TYPE_CHECKING:
    from image2mood.models.clap import ClapEncoder

T = TypeVar("T")
R = TypeVar("R")
LOOKAHEAD = 3  # files decoded ahead of the model: enough to hide decoding, bounded memory
AUTO_WORKERS = 4  # the most songs embedded at once by default: each holds its windows' activations


@dataclass
class IndexReport:
    """What one run did; ``summary`` is the line the CLI ends with."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    failures: list[tuple[Path | str, str]] = field(default_factory=list)  # a file, or a server song's URI

    def summary(self) -> str:
        return (f"indexed {self.indexed}, unchanged {self.unchanged}, "
                f"removed {self.removed}, failed {self.failed}")


@dataclass(frozen=True)
class _Unchanged:
    facts: FileFacts
    restat: bool = False  # same content, but the stored size/mtime are not the file's: store the new ones


@dataclass(frozen=True)
class _Failed:
    path: Path | str
    reason: str


@dataclass(frozen=True)
class _Embedded:
    prepared: PreparedSong
    song: Song | None  # None: the model refused the audio (``error`` says why)
    error: str = ""


def _ahead(pool: ThreadPoolExecutor, work: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[R]:
    """``map(work, items)`` in order, with up to ``depth`` items being worked on ahead."""
    queue: deque[Future[R]] = deque()
    for item in items:
        queue.append(pool.submit(work, item))
        if len(queue) > depth:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


def _cores() -> int:
    """The cores this process may run on (all of them where the OS cannot say, as on macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def embed_workers(settings: Settings) -> int:
    """How many songs ``index`` embeds at once: ``IMAGE2MOOD_INDEX_WORKERS``, else one per core (at most
    :data:`AUTO_WORKERS`) on a CPU, one on a GPU."""
    if settings.index_workers:
        return settings.index_workers
    if settings.device != "cpu":
        return 1
    return max(1, min(_cores(), AUTO_WORKERS))


def worker_threads(settings: Settings) -> Settings:
    """``settings`` with torch's threads a core's share per embedding worker, unless IMAGE2MOOD_THREADS says."""
    if settings.threads:
        return settings
    return settings.model_copy(update={"threads": max(1, _cores() // embed_workers(settings))})


def all_unchanged(store: SongStore, paths: Iterable[Path]) -> IndexReport | None:
    """The report of a run with nothing to do, when every audio file under ``paths`` is stored with its
    size and mtime as they are now (nothing is read, no model is needed); else None."""
    files = list(iter_audio_files(paths))
    known = {song.id: song for song in store.scroll()}
    for path in files:
        try:
            facts = file_facts(path, hashed=False)
        except (Image2MoodError, OSError):
            return None
        stored = known.get(facts.id)
        if stored is None or not facts.same_file(stored):
            return None
    return IndexReport(unchanged=len(files))


class PendingEncoder:
    """The CLAP encoder before it loads: its sample rate read from the model's files, so that songs decode
    while torch imports and the audio tower loads (about 1.2 s). :meth:`start` begins the load on a thread of its
    own: on a first run (an empty store) as the first file starts decoding, else once a song has decoded, so that
    a run with nothing new, or nothing decodable, never loads it; :meth:`loaded` waits for it."""

    def __init__(self, facts: ClapFacts, load: Callable[[], ClapEncoder]) -> None:
        self.facts, self._load = facts, load
        self._encoder: Future[ClapEncoder] | None = None
        self._lock = threading.Lock()  # the decoding and the embedding threads may ask at once: one loads

    @property
    def sample_rate(self) -> int:
        return self.facts.sample_rate

    def start(self) -> Future[ClapEncoder]:
        """The load, begun on the first call."""
        with self._lock:
            if self._encoder is None:
                self._encoder = Future()
                threading.Thread(target=self._load_into, args=(self._encoder,), name="load-clap").start()
            return self._encoder

    def loaded(self) -> ClapEncoder:
        return self.start().result()

    def _load_into(self, future: Future[ClapEncoder]) -> None:
        try:
            encoder = self._load()
            if (encoder.sample_rate, encoder.dim) != (self.facts.sample_rate, self.facts.dim):
                raise ModelLoadError(f"CLAP model {self.facts.name} takes {encoder.sample_rate} Hz audio and makes "
                                     f"{encoder.dim}-d vectors, but its files said {self.facts.sample_rate} Hz and "
                                     f"{self.facts.dim}-d; fetch the model again")
        except BaseException as exc:  # handed to every caller of loaded()
            future.set_exception(exc)
        else:
            future.set_result(encoder)


def _say(line: str) -> None:
    tqdm.write(printable(line), file=sys.stderr)


class Indexer:
    """Adds new and changed songs to a store, skips unchanged ones, optionally prunes vanished ones.

    ``warn`` gets each line about a skipped file, a decoder note or a removal; ``on_stored`` gets
    each batch of songs once the store has it durably. ``rewindow``: songs stored without window vectors
    (copied from a store made before they were kept) are embedded again, unchanged or not.
    """

    def __init__(self, store: SongStore, encoder: ClapEncoder | PendingEncoder, settings: Settings,
                 warn: Callable[[str], None] = _say,
                 on_stored: Callable[[Sequence[Song]], None] | None = None, rewindow: bool = False) -> None:
        self.store, self.encoder, self.settings, self.warn = store, encoder, settings, warn
        self.on_stored, self.rewindow = on_stored, rewindow
        self.known: dict[str, Song] = {}
        self.by_hash: dict[str, str] = {}
        self.restat: list[FileFacts] = []

    def run(self, paths: Iterable[Path], prune: bool = False) -> IndexReport:
        """Index every audio file under ``paths``; the report counts what happened.

        With ``prune``, songs under ``paths`` whose files are gone are removed afterwards; a missing
        or empty folder among ``paths`` refuses the whole run before anything is written (see
        :mod:`indexer.prune`).
        """
        paths = [Path(p) for p in paths]
        roots = prune_roots(paths) if prune else []
        with separate_stderr():  # decoding diverts fd 2 to catch its notes; our lines must not go there
            report = self._index(paths)
            if prune:
                report.removed = self._prune(roots)
            if report.indexed or report.removed:
                self.warn("updating the search index ...")
                self.store.optimize()  # (re)build the search index once per run, not per batch
        return report

    def _index(self, paths: list[Path]) -> IndexReport:
        return self.index_items(list(iter_audio_files(paths)), self._look_at)

    def index_items(self, items: Sequence[T],
                    look_at: Callable[[T], PreparedSong | FileFacts | _Unchanged | _Failed]) -> IndexReport:
        """Store what ``look_at`` (run in a worker thread, ahead of the model) makes of each item, in batches.

        ``self.known`` holds the stored songs by id meanwhile, for ``look_at`` to tell unchanged ones.
        """
        report = IndexReport()
        self.known = {song.id: song for song in self.store.scroll()}
        self.by_hash = {song.content_hash: song.id for song in self.known.values()}
        pending: list[Song] = []
        workers = embed_workers(self.settings)
        with tqdm(total=len(items), unit="song", dynamic_ncols=True, mininterval=0.5) as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoding, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed") as embedding:
            try:
                looked_at = _ahead(decoding, look_at, items, LOOKAHEAD)
                for item in _ahead(embedding, self._embedded, looked_at, workers):
                    self._take(item, pending, report)
                    if len(pending) >= self.settings.upsert_batch:
                        self._flush(pending, report)
                    bar.update()
                    bar.set_postfix(new=report.indexed + len(pending), same=report.unchanged,
                                    failed=report.failed, refresh=False)
            finally:
                self._flush(pending, report)  # what was embedded before an interruption is kept
                self._store_restat()
        return report

    def _look_at(self, path: Path) -> PreparedSong | _Unchanged | _Failed:
        """Worker-thread part: a file whose size and mtime are as stored is not read; others are hashed and
        compared with the store, and decoded when the model is needed."""
        try:
            facts = file_facts(path, hashed=False)
            stored = self.known.get(facts.id)
            if stored is not None and self.lacks_windows(stored):
                stored = None  # embedded again, as if new
            if stored is not None and facts.same_file(stored):
                return _Unchanged(facts)
            facts = facts.hashed()
            if stored is not None and stored.content_hash == facts.content_hash:
                return _Unchanged(facts, restat=True)
            known = self.by_hash.get(facts.content_hash)
            if known is not None and not self.lacks_windows(self.known[known]):
                return facts  # same content stored under another path: reuse its vectors
            if not self.known and isinstance(self.encoder, PendingEncoder):
                self.encoder.start()  # a first run, where nearly every file is new: load while this one decodes
            return prepare(facts, self.settings, self.encoder.sample_rate)
        except (Image2MoodError, OSError) as exc:
            return _Failed(path, str(exc))
        except Exception as exc:  # a decoder library's own failure: still one file, not the run
            return _Failed(path, f"cannot index {path}: {type(exc).__name__}: {exc}")

    def _embedded(self, item: T) -> T | _Embedded:
        """Embedding-worker part: a prepared song's vectors (the model loads here the first time)."""
        if not isinstance(item, PreparedSong):
            return item
        encoder = self.encoder.loaded() if isinstance(self.encoder, PendingEncoder) else self.encoder
        try:
            return _Embedded(item, embed(item, encoder))
        except (Image2MoodError, ValueError, RuntimeError) as exc:  # the model's refusal of odd audio
            return _Embedded(item, None, f"cannot embed {item.facts.path}: {exc}")

    def lacks_windows(self, stored: Song) -> bool:
        """Whether ``stored`` is to be embedded again for its window vectors (``rewindow``)."""
        return self.rewindow and stored.window_starts is None

    def _take(self, item: _Embedded | FileFacts | _Unchanged | _Failed,
              pending: list[Song], report: IndexReport) -> None:
        """Main-thread part: keep an embedded song, or copy a known vector, or count."""
        if isinstance(item, _Unchanged):
            report.unchanged += 1
            if item.restat:
                self.restat.append(item.facts)
        elif isinstance(item, _Failed):
            self._fail(item.path, item.reason, report)
        elif isinstance(item, FileFacts):
            pending.append(self._moved(item))
        else:
            facts, audio = item.prepared.facts, item.prepared.audio
            for note in audio.notes:
                self.warn(f"note: {facts.path}: the decoder said: {note}")
            if audio.silent:
                self.warn(f"note: {facts.path} is silent where it was sampled; indexed anyway")
            if item.song is None:
                self._fail(facts.path, item.error, report)
            else:
                pending.append(item.song)

    def _fail(self, path: Path | str, reason: str, report: IndexReport) -> None:
        report.failed += 1
        report.failures.append((path, reason))
        self.warn(f"failed: {reason}")

    def _moved(self, facts: FileFacts) -> Song:
        original = self.store.get([self.by_hash[facts.content_hash]], with_vectors=True, with_windows=True)[0]
        tags = read_tags(facts.path)
        return dataclasses.replace(
            original, id=facts.id, path=stored_path(facts.path), title=tags.title, artist=tags.artist,
            album=tags.album, genre=tags.genre, size=facts.size, mtime_ns=facts.mtime_ns,
        )

    def _store_restat(self) -> None:
        """Record the size and mtime of unchanged songs whose store entry lacks them (a store from before they
        were kept) or whose file was touched, so that the next run need not read them."""
        for start in range(0, len(self.restat), self.settings.upsert_batch):
            chunk = {facts.id: facts for facts in self.restat[start:start + self.settings.upsert_batch]}
            stored = self.store.get(list(chunk), with_vectors=True, with_windows=True)
            self.store.upsert([dataclasses.replace(song, size=chunk[song.id].size, mtime_ns=chunk[song.id].mtime_ns)
                               for song in stored])
        self.restat.clear()

    def _flush(self, pending: list[Song], report: IndexReport) -> None:
        if pending:
            self.store.upsert(pending)
            report.indexed += len(pending)
            if self.on_stored is not None:
                self.on_stored(pending)
            pending.clear()

    def _prune(self, roots: Sequence[Path]) -> int:
        """Delete the songs under ``roots``, as the store held them when the run began, whose files are gone
        (those of an empty folder are kept, with a warning: see :mod:`indexer.prune`)."""
        plan = prune_plan(self.known.values(), roots)
        for line in plan.warnings():
            self.warn(f"warning: {line}")
        for song in plan.remove:
            self.warn(f"removing: {local_path(song.path)} (its file is gone)")
        if plan.remove:
            self.store.delete([song.id for song in plan.remove])
        return len(plan.remove)
