"""The embedded store: a Qdrant Edge shard in a local folder, used in-process by one image2mood process.

Layout of the store folder ``DIR``::

    DIR/store.json   what built the vectors (StoreInfo), written before the shard exists
    DIR/store.lock   held (flock) by the process that has the store open
    DIR/shard/       the Qdrant Edge shard (segments and write-ahead log)

The lock is taken before Qdrant Edge touches the shard: a second, failing ``EdgeShard.load`` of a
folder in use breaks the first handle's later flushes (seen with qdrant-edge-py 0.9), so another
process must never get that far.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import qdrant_edge as qe

from image2mood.errors import StoreError, StoreLockedError
from image2mood.store.base import (
    FLOAT_FIELDS,
    KEYWORD_FIELDS,
    OVERSAMPLING,
    VECTOR_NAME,
    WINDOWS_NAME,
    Hit,
    Song,
    SongFilter,
    SongStore,
)
from image2mood.store.identity import Access, StoreInfo

INFO_FILE = "store.json"
LOCK_FILE = "store.lock"
SHARD_DIR = "shard"


class EmbeddedStore(SongStore):
    """Songs in a Qdrant Edge shard under a local folder; every write is flushed before it returns."""

    kind = "embedded"

    def __init__(self, folder: str | os.PathLike[str], *, info: StoreInfo | None, create: bool = True,
                 access: Access = "write") -> None:
        root = Path(folder).expanduser()
        self.location = str(root)
        self._info_path = info_path = root / INFO_FILE
        if not info_path.is_file() and not (create and info is not None):
            raise StoreError(f"no store at {root}; run `image2mood index MUSIC_DIR` first")
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._lock = _acquire_lock(root)
        except OSError as e:
            raise StoreError(f"cannot open the store folder {root}: {e}") from e
        try:
            self._shard = self._open(root, info, access)
        except BaseException:
            self._lock.close()
            raise

    def _open(self, root: Path, info: StoreInfo | None, access: Access) -> qe.EdgeShard:
        """Read (or write) the record, check it, then load (or make) the shard."""
        shard_path = root / SHARD_DIR
        recorded = _read_info(self._info_path)
        if recorded is None:
            assert info is not None  # the constructor refused to create without info
            _write_info(self._info_path, info)
            recorded = info
        self.info = recorded
        if info is not None:
            self.check(info, access)
        try:
            if (shard_path / "edge_config.json").is_file():
                self.has_windows = _has_windows(shard_path)
                return qe.EdgeShard.load(str(shard_path), _edge_config(self.info.dim, self.has_windows))
            self.has_windows = True
            return _create_shard(shard_path, self.info.dim)
        except Exception as e:
            if "WouldBlock" in str(e):
                raise _locked(root) from e
            raise StoreError(f"cannot open the store at {root}: {e}") from e

    def _upsert(self, songs: Sequence[Song], vectors: np.ndarray) -> None:
        points = [
            qe.Point(s.id, {VECTOR_NAME: v, **({} if s.windows is None else {WINDOWS_NAME: s.windows})},
                     s.to_payload())
            for s, v in zip(songs, vectors, strict=True)
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(points))
        self._shard.flush()

    def _delete(self, ids: list[str]) -> None:
        self._shard.update(qe.UpdateOperation.delete_points(ids))
        self._shard.flush()

    def _get(self, ids: list[str], names: list[str]) -> list[Song]:
        records = self._shard.retrieve(ids, with_payload=True, with_vector=names or False)
        return [Song.from_payload(r.id, r.payload, r.vector) for r in records]

    def _scroll_page(self, offset: Any, limit: int, names: list[str]) -> tuple[list[Song], Any]:
        request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=names or False)
        records, next_offset = self._shard.scroll(request)
        return [Song.from_payload(r.id, r.payload, r.vector) for r in records], next_offset

    def _search(self, vector: np.ndarray, limit: int, song_filter: SongFilter | None,
                with_vectors: bool, exact: bool, using: str) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector if using == VECTOR_NAME else [vector.tolist()], using=using),
            filter=_edge_filter(song_filter) if song_filter else None,
            with_payload=True,
            with_vector=[VECTOR_NAME] if with_vectors else False,
            params=qe.SearchParams(exact=True) if exact else _QUANTISED,
        )
        return [Hit(Song.from_payload(p.id, p.payload, p.vector), p.score) for p in self._shard.query(request)]

    def _count(self) -> int:
        return self._shard.count(qe.CountRequest(exact=True))

    def _optimize(self) -> None:
        """Qdrant Edge's optimisers, only for libraries large enough to be searched through the codes."""
        if self._size() > self.exact_limit:
            self._shard.optimize()
            self._shard.flush()

    def _record_info(self, info: StoreInfo) -> None:
        _write_info(self._info_path, info)

    def _close(self) -> None:
        if self._lock.closed:
            return
        try:
            self._shard.close()
        finally:
            self._lock.close()


def _acquire_lock(root: Path) -> IO[str]:
    handle = open(root / LOCK_FILE, "a")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise _locked(root) from None
    return handle


def _locked(root: Path) -> StoreLockedError:
    return StoreLockedError(
        f"the store at {root} is open in another image2mood process (an indexer or the service); "
        "wait for it to finish or stop it, then try again"
    )


def _read_info(path: Path) -> StoreInfo | None:
    if not path.is_file():
        return None
    try:
        return StoreInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"cannot read {path} (the store's record of its CLAP model): {e}") from e


def _write_info(path: Path, info: StoreInfo) -> None:
    """Write atomically: a crash leaves either no file or a whole one."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info.to_dict(), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_QUANTISED = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING))


def _edge_config(dim: int, windows: bool = True) -> qe.EdgeConfig:
    """The shard's configuration, given at creation and again at each load (older stores, made with
    HNSW settings, take these on at their next load and get codes at their next ``optimize``).

    ``m=0`` builds no HNSW graph; every segment keeps 4-bit TurboQuant codes in RAM beside the float32
    vectors used for rescoring (appendable ones as songs are written). ``windows``: the shard also holds
    the window vectors (a MaxSim multivector, float16, on disk, no codes: never searched); a shard made
    without them must be loaded without them (Qdrant Edge refuses a vector its segments lack)."""
    vectors = {VECTOR_NAME: qe.EdgeVectorParams(
        size=dim, distance=qe.Distance.Cosine,
        quantization_config=qe.TurboQuantQuantizationConfig(bits=qe.TurboQuantBitSize.Bits4, memory=qe.Memory.Pinned),
    )}
    if windows:
        vectors[WINDOWS_NAME] = qe.EdgeVectorParams(
            size=dim, distance=qe.Distance.Cosine, datatype=qe.VectorStorageDatatype.Float16, memory=qe.Memory.Cold,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim))
    return qe.EdgeConfig(vectors=vectors,
                         hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000))


def _has_windows(shard_path: Path) -> bool:
    """Whether the shard was made with window vectors (its own record of its configuration says)."""
    try:
        config = json.loads((shard_path / "edge_config.json").read_text(encoding="utf-8"))
        return WINDOWS_NAME in config["vectors"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"cannot read {shard_path / 'edge_config.json'} (the shard's configuration): {e}") from e


def _create_shard(path: Path, dim: int) -> qe.EdgeShard:
    shard = qe.EdgeShard.create(str(path), _edge_config(dim))
    for name in KEYWORD_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    for name in FLOAT_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Float))
    shard.flush()
    return shard


def _edge_filter(f: SongFilter) -> qe.Filter:
    must: list[Any] = [qe.FieldCondition(key=k, match=qe.MatchValue(v)) for k, v in f.matches().items()]
    if f.has_duration_range():
        must.append(qe.FieldCondition(key="duration", range=qe.RangeFloat(gte=f.min_duration, lte=f.max_duration)))
    must_not: list[Any] = [qe.HasIdCondition(set(f.exclude_ids))] if f.exclude_ids else []
    return qe.Filter(must=must or None, must_not=must_not or None)
