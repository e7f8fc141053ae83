"""The song store interface and the logic both adapters share (the value types are in :mod:`.song`).

Adapters implement the underscore methods on already-validated input; the public methods here
validate ids and vectors, keep results in a stable order and turn backend errors into
:class:`~image2mood.errors.StoreError` naming the store.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import numpy as np

from image2mood.config import Settings
from image2mood.errors import StoreError
from image2mood.store.identity import (  # re-exported (``X as X``): other modules import these from here
    LEGACY_PREPROCESSING as LEGACY_PREPROCESSING,
    StoreInfo as StoreInfo,
    windowing_label as windowing_label,
    Access,
    check_info,
)
from image2mood.store.song import (  # re-exported (``X as X``): other modules import these from here
    VECTOR_NAME as VECTOR_NAME,
    WINDOWS_NAME as WINDOWS_NAME,
    Hit as Hit,
    Song as Song,
    SongFilter as SongFilter,
    canonical_id as canonical_id,
)

NO_WINDOWS_LAYOUT = (
    "this store was made before image2mood kept each song's window vectors, so its answers have no highlights "
    "(each song's best part), and its layout cannot gain them in place: copy it into a new store with "
    "`image2mood store migrate --to NEW_STORE`, then run `image2mood index MUSIC_DIR --rewindow --store NEW_STORE` "
    "and use NEW_STORE (IMAGE2MOOD_STORE)")
"""Why an old store's answers have no highlights, and how to get them."""
NO_WINDOWS_SONGS = (
    "some songs were stored without window vectors (copied from an older store), so they have no highlight; "
    "`image2mood index MUSIC_DIR --rewindow` embeds them again with their windows")
"""Why songs of a store that holds window vectors may lack a highlight, and how to get them."""
EXACT_SEARCH_LIMIT: int = Settings.model_fields["exact_search_limit"].default
"""IMAGE2MOOD_EXACT_SEARCH_LIMIT's default. Libraries up to this size are searched by comparing every full
vector (about 2.5 ms at 20k songs on two cores). Larger ones are scanned through the 4-bit TurboQuant codes every song gets as it is written
(an eighth of the float32 bytes), and the best :data:`OVERSAMPLING` × limit are rescored with their full
vectors: recall@10 1.000 at 100k and 1M songs on random and clustered vectors, p95 3 ms and 19 ms
(bench/search.py). HNSW is never built: on random vectors it kept 0.10–0.34 of the true top 10 at 100k."""
OVERSAMPLING = 8.0
"""How many times ``limit`` candidates the quantised scan hands to the full-vector rescoring."""
COUNT_TTL_S = 60.0

KEYWORD_FIELDS = ("artist", "genre")
"""Payload fields with a keyword index (exact-match filters)."""
FLOAT_FIELDS = ("duration",)
"""Payload fields with a float index (range filters)."""


class SongStore(ABC):
    """Songs with their CLAP audio vectors, searchable by cosine similarity (a context manager)."""

    kind: str
    location: str
    info: StoreInfo
    """What the store records as having built its vectors (always known for an open store)."""
    has_windows: bool = False
    """Whether the store's layout holds window vectors (stores made before they were kept do not, and
    cannot gain them in place: see :data:`NO_WINDOWS_LAYOUT`)."""
    exact_limit: int = EXACT_SEARCH_LIMIT
    """Up to this many songs every search compares full vectors; above it, quantised codes first, then
    rescoring (see :data:`EXACT_SEARCH_LIMIT`). ``open_configured_store`` sets it from
    IMAGE2MOOD_EXACT_SEARCH_LIMIT."""
    _counted: tuple[int, float] | None = None

    def upsert(self, songs: Sequence[Song]) -> None:
        """Insert or replace a batch of songs (every vector given; window vectors where the song has them and
        the store's layout holds them, else the song is stored without them); durable when it returns."""
        if not songs:
            return
        for song in songs:
            canonical_id(song.id)
            if song.vector is None:
                raise StoreError(f"song {song.path} has no vector; the store needs one for every song")
        vectors = np.stack([self._check_vector(s.vector, f"song {s.path}") for s in songs])
        songs = [self._checked_windows(s) for s in songs]
        with self._errors():
            self._upsert(songs, vectors)
        self._counted = None

    def delete(self, ids: Sequence[str]) -> None:
        """Remove songs by id (unknown ids are ignored); durable when it returns."""
        if ids:
            keys = [canonical_id(i) for i in ids]
            with self._errors():
                self._delete(keys)
            self._counted = None

    def get(self, ids: Sequence[str], with_vectors: bool = True, with_windows: bool = False) -> list[Song]:
        """The songs with these ids, in the order asked; missing ids are simply absent. ``with_windows``:
        their window vectors too (a copy that must keep them)."""
        keys = list(dict.fromkeys(canonical_id(i) for i in ids))
        if not keys:
            return []
        with self._errors():
            found = {s.id: s for s in self._get(keys, self._names(with_vectors, with_windows))}
        return [found[k] for k in keys if k in found]

    def window_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The window vectors of the songs with these ids (one read), by id; songs without them are absent."""
        if not self.has_windows or not ids:
            return {}
        return {song.id: song.windows for song in self.get(ids, with_vectors=False, with_windows=True)
                if song.windows is not None and song.window_starts is not None}

    def scroll(self, with_vectors: bool = False, batch: int = 256, with_windows: bool = False) -> Iterator[Song]:
        """Every song, fetched ``batch`` at a time."""
        offset: Any = None
        names = self._names(with_vectors, with_windows)
        while True:
            with self._errors():
                songs, offset = self._scroll_page(offset, batch, names)
            yield from songs
            if offset is None:
                return

    def search(self, vector: np.ndarray, limit: int = 10, song_filter: SongFilter | None = None,
               with_vectors: bool = False, maxsim: bool = False) -> list[Hit]:
        """The ``limit`` songs nearest to ``vector`` by cosine similarity, best first. ``maxsim``: by their best
        window instead (MaxSim over the window vectors, every one compared: the tuning tool's knob; songs
        without window vectors are not found)."""
        if limit < 1:
            raise StoreError(f"search limit must be at least 1, got {limit}")
        if maxsim and not self.has_windows:
            raise StoreError(f"the store at {self.location} cannot be searched by MaxSim: {NO_WINDOWS_LAYOUT}")
        query = self._check_vector(vector, "query vector")
        flt = song_filter if song_filter is not None and song_filter != SongFilter() else None
        if flt is not None:
            flt = replace(flt, exclude_ids=tuple(canonical_id(i) for i in flt.exclude_ids))
        exact = maxsim or self._size() <= self.exact_limit
        with self._errors():
            return self._search(query, limit, flt, with_vectors, exact, WINDOWS_NAME if maxsim else VECTOR_NAME)

    def _size(self) -> int:
        """The song count that picks exact or quantised search: recounted after this process writes, and at
        least every :data:`COUNT_TTL_S` seconds (another process may write to a server)."""
        now = time.monotonic()
        if self._counted is None or now - self._counted[1] > COUNT_TTL_S:
            self._counted = (self.count(), now)
        return self._counted[0]

    def check(self, wanted: StoreInfo, access: Access) -> None:
        """Refuse (StoreMismatchError) to ``access`` the store with what ``wanted`` describes unless its
        vectors can be mixed with the store's (:func:`check_info`); a writer also records the fingerprint
        of the weights in a record that lacks it."""
        kept = check_info(self.location, self.info, wanted, access)
        if kept != self.info:
            with self._errors():
                self._record_info(kept)
            self.info = kept

    def count(self) -> int:
        """How many songs the store holds."""
        with self._errors():
            return self._count()

    def optimize(self) -> None:
        """Tidy the store after a bulk write, for libraries above the exact-search limit: merge segments,
        drop deleted songs, give codes to segments without them (stores made by earlier versions).
        Blocks until done (about 3 s at 100k songs, 37 s at 1M); searches stay correct without it."""
        with self._errors():
            self._optimize()

    def close(self) -> None:
        """Release the store (idempotent)."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

    def _names(self, with_vectors: bool, with_windows: bool) -> list[str]:
        """The named vectors a read returns: the pooled one, the windows (where the layout has them), both, none."""
        return [name for name, wanted in ((VECTOR_NAME, with_vectors), (WINDOWS_NAME, with_windows and self.has_windows))
                if wanted]

    def _checked_windows(self, song: Song) -> Song:
        """The song as this store keeps it: its window vectors checked (finite, ``dim`` wide, one per start),
        or, in a store whose layout has none, without them and their starts."""
        if song.windows is None and song.window_starts is None:
            return song
        if not self.has_windows:
            return replace(song, windows=None, window_starts=None, window_seconds=None)
        windows = None if song.windows is None else np.asarray(song.windows, dtype=np.float32)
        starts = song.window_starts or ()
        if windows is None or windows.shape != (len(starts), self.info.dim) or not starts or not song.window_seconds:
            raise StoreError(f"song {song.path}: {len(starts)} window starts and window vectors of shape "
                             f"{None if windows is None else windows.shape} (window length {song.window_seconds}); "
                             f"the store at {self.location} needs one {self.info.dim}-d vector per start")
        if not np.isfinite(windows).all():
            raise StoreError(f"song {song.path} has NaN or infinite values in its window vectors")
        return replace(song, windows=windows)

    def _check_vector(self, vector: Any, what: str) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.info.dim,):
            raise StoreError(f"{what} has shape {v.shape}; the store at {self.location} holds {self.info.dim}-d vectors")
        if not np.isfinite(v).all():
            raise StoreError(f"{what} has NaN or infinite values")
        return v

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn a backend failure into a StoreError that names the store."""
        try:
            yield
        except StoreError:
            raise
        except Exception as e:  # backends raise bare Exception, httpx and grpc errors
            raise StoreError(f"the store at {self.location} failed: {e}") from e

    @abstractmethod
    def _upsert(self, songs: Sequence[Song], vectors: np.ndarray) -> None:
        """Write the songs with their pooled ``vectors`` and, where a song has them, its ``windows``."""

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _get(self, ids: list[str], names: list[str]) -> list[Song]:
        """The songs with these ids, with the named vectors in ``names``."""

    @abstractmethod
    def _scroll_page(self, offset: Any, limit: int, names: list[str]) -> tuple[list[Song], Any]:
        """One page of songs (with the named vectors in ``names``) and the offset of the next page (None after the last)."""

    @abstractmethod
    def _search(self, vector: np.ndarray, limit: int, song_filter: SongFilter | None,
                with_vectors: bool, exact: bool, using: str) -> list[Hit]:
        """The nearest songs by the named vector ``using`` (the windows: ``vector`` as a one-vector multivector):
        every full vector compared when ``exact``, else the quantised scan with rescoring (segments without codes
        yet are scanned in full either way)."""

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _record_info(self, info: StoreInfo) -> None:
        """Replace the store's record of what built its vectors, durably."""

    @abstractmethod
    def _optimize(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...
