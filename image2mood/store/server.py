"""The server store: a collection in a Qdrant server, reached with qdrant-client.

``QdrantClient(location=":memory:")`` stands in for a server in tests. The StoreInfo lives in the
collection's own metadata (key ``image2mood``, Qdrant ≥ 1.16), so it travels with the collection
through snapshots and cannot drift from it; a collection without it was not made by image2mood and
is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from image2mood.errors import StoreError
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

METADATA_KEY = "image2mood"
_NO_GRAPH = models.HnswConfigDiff(m=0)
_CODES = models.TurboQuantization(turbo=models.TurboQuantQuantizationConfig(
    bits=models.TurboQuantBitSize.BITS4, always_ram=True))
"""The embedded store's search plan (see EXACT_SEARCH_LIMIT): no HNSW graph, 4-bit TurboQuant codes in
RAM (Qdrant 1.18 or later), full vectors for rescoring; the server builds the codes by itself."""
_QUANTISED = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING))


def _windows_params(dim: int) -> models.VectorParams:
    """The window vectors (read for an answer's songs, never searched): a MaxSim multivector, float16, on disk.
    A named vector takes the collection's codes (4-bit, in RAM) unless it names its own, and "none" cannot be
    named, so these get the smallest codes, 1-bit, on disk."""
    return models.VectorParams(
        size=dim, distance=models.Distance.COSINE, datatype=models.Datatype.FLOAT16, on_disk=True,
        multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        quantization_config=models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=False)))


@dataclass(frozen=True)
class Layout:
    """How a collection made on a Qdrant cluster is spread: ``shards`` shards, ``replication`` copies of each,
    ``write_consistency`` copies that must take a write (IMAGE2MOOD_QDRANT_SHARDS, _REPLICATION,
    _WRITE_CONSISTENCY). A single server keeps one copy whatever is asked."""

    shards: int = 1
    replication: int = 1
    write_consistency: int = 1

    def __post_init__(self) -> None:
        if self.write_consistency > self.replication:
            raise StoreError(f"IMAGE2MOOD_QDRANT_WRITE_CONSISTENCY ({self.write_consistency}) cannot exceed "
                             f"IMAGE2MOOD_QDRANT_REPLICATION ({self.replication}): a write would wait for copies "
                             "that do not exist")

    def arguments(self) -> dict[str, int]:
        """create_collection's keywords for this layout."""
        return {"shard_number": self.shards, "replication_factor": self.replication,
                "write_consistency_factor": self.write_consistency}


class ServerStore(SongStore):
    """Songs in one collection of a Qdrant server; writes wait until the server has applied them."""

    kind = "server"

    def __init__(
        self,
        location: str,
        *,
        info: StoreInfo | None,
        api_key: str | None = None,
        collection: str = "songs",
        create: bool = True,
        access: Access = "write",
        client: QdrantClient | None = None,
        layout: Layout | None = None,
    ) -> None:
        """``client``: an existing client to share (then ``location`` only names it and close() leaves it open).
        ``layout``: the shards and copies of a collection made here (an existing one keeps its own)."""
        self.layout = layout or Layout()
        self.location = location if location == ":memory:" else f"{location.rstrip('/')}/collections/{collection}"
        self._collection = collection
        self._owns_client = client is None
        try:
            if client is not None:
                self._client = client
            elif location == ":memory:":
                self._client = QdrantClient(location=":memory:")
            else:
                self._client = QdrantClient(url=location, api_key=api_key)
        except Exception as e:  # a malformed URL
            raise StoreError(f"cannot open the store at {self.location}: {e}") from e
        try:
            with self._errors():
                self._open(info, create, access)
        except BaseException:
            self._close()
            raise

    def _open(self, info: StoreInfo | None, create: bool, access: Access) -> None:
        """Make the collection, or read its record and check it (``self.info`` is set either way)."""
        if not self._client.collection_exists(self._collection):
            if not (create and info is not None):
                raise StoreError(f"no store at {self.location}; run `image2mood index MUSIC_DIR` first")
            self._create(info)
            self.info, self.has_windows = info, True
            return
        config = self._client.get_collection(self._collection).config
        metadata = config.metadata or {}
        if METADATA_KEY not in metadata:
            raise StoreError(
                f"the collection at {self.location} was not created by image2mood (no {METADATA_KEY!r} "
                "metadata); choose another name with IMAGE2MOOD_COLLECTION"
            )
        self.info = StoreInfo.from_dict(metadata[METADATA_KEY])
        self.has_windows = isinstance(config.params.vectors, dict) and WINDOWS_NAME in config.params.vectors
        if info is not None:
            self.check(info, access)
        if not isinstance(config.quantization_config, models.TurboQuantization) or config.hnsw_config.m != 0:
            # made by an older image2mood (HNSW, no codes): the server rebuilds it in the background
            self._client.update_collection(self._collection, hnsw_config=_NO_GRAPH, quantization_config=_CODES)

    def _create(self, info: StoreInfo) -> None:
        self._client.create_collection(
            self._collection,
            vectors_config={VECTOR_NAME: models.VectorParams(size=info.dim, distance=models.Distance.COSINE),
                            WINDOWS_NAME: _windows_params(info.dim)},
            metadata={METADATA_KEY: info.to_dict()},
            hnsw_config=_NO_GRAPH,
            quantization_config=_CODES,
            **self.layout.arguments(),
        )
        schemas = {name: models.PayloadSchemaType.KEYWORD for name in KEYWORD_FIELDS}
        schemas |= {name: models.PayloadSchemaType.FLOAT for name in FLOAT_FIELDS}
        for name, schema in schemas.items():
            self._client.create_payload_index(self._collection, name, field_schema=schema, wait=True)

    @property
    def client(self) -> QdrantClient:
        """The client this store talks through (kept answers share it: see image2mood.results_qdrant)."""
        return self._client

    @property
    def collection(self) -> str:
        return self._collection

    def _upsert(self, songs: Sequence[Song], vectors: np.ndarray) -> None:
        points = [models.PointStruct(id=s.id, payload=s.to_payload(), vector={
            VECTOR_NAME: v.tolist(), **({} if s.windows is None else {WINDOWS_NAME: s.windows.tolist()})})
            for s, v in zip(songs, vectors, strict=True)]
        self._client.upsert(self._collection, points=points, wait=True)

    def _delete(self, ids: list[str]) -> None:
        self._client.delete(self._collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def _get(self, ids: list[str], names: list[str]) -> list[Song]:
        records = self._client.retrieve(self._collection, ids, with_payload=True, with_vectors=names or False)
        return [Song.from_payload(r.id, r.payload, r.vector) for r in records]

    def _scroll_page(self, offset: Any, limit: int, names: list[str]) -> tuple[list[Song], Any]:
        records, next_offset = self._client.scroll(
            self._collection, limit=limit, offset=offset, with_payload=True, with_vectors=names or False
        )
        return [Song.from_payload(r.id, r.payload, r.vector) for r in records], next_offset

    def _search(self, vector: np.ndarray, limit: int, song_filter: SongFilter | None,
                with_vectors: bool, exact: bool, using: str) -> list[Hit]:
        response = self._client.query_points(
            self._collection,
            query=vector if using == VECTOR_NAME else [vector.tolist()],
            using=using,
            query_filter=_client_filter(song_filter) if song_filter else None,
            limit=limit,
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
            search_params=models.SearchParams(exact=True) if exact else _QUANTISED,
        )
        return [Hit(Song.from_payload(p.id, p.payload, p.vector), p.score) for p in response.points]

    def _count(self) -> int:
        return self._client.count(self._collection, exact=True).count

    def _optimize(self) -> None:
        """Nothing to do: a Qdrant server runs its optimizers by itself."""

    def _record_info(self, info: StoreInfo) -> None:
        self._client.update_collection(self._collection, metadata={METADATA_KEY: info.to_dict()})

    def _close(self) -> None:
        if self._owns_client:
            self._client.close()


def _client_filter(f: SongFilter) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in f.matches().items()
    ]
    if f.has_duration_range():
        must.append(models.FieldCondition(key="duration", range=models.Range(gte=f.min_duration, lte=f.max_duration)))
    must_not: list[models.Condition] = [models.HasIdCondition(has_id=list(f.exclude_ids))] if f.exclude_ids else []
    return models.Filter(must=must or None, must_not=must_not or None)
