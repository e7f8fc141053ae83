"""Kept answers in the Qdrant server that holds the songs, so that any service replica serves any answer.

The collection ``<songs collection>-answers`` sits beside the songs, reached through the song store's own
client (local mode allows one client per folder, and a server needs no second connection). One point per
answer, with no vector: its payload is the answer's JSON (:meth:`SavedResult.to_json`; the photo never, its
thumbnail only when the person shared it) plus ``kept`` (false while held) and ``bytes`` (the JSON's size).
The point id is a UUID made from the result id.

Held answers go to the server too, as ``kept: false``, so the share page or playlist that keeps one may be
asked of any replica; the last ``held`` of them are kept, across all replicas (a flood of searches cannot
grow the collection past that). Keeping one rewrites it with ``kept: true``. The lifetime and caps are those
of the results folder (:class:`image2mood.results.ResultStore`): an expired answer is never served, and each
keep sweeps the expired ones away by a range filter on ``created``, then the oldest kept ones while over
``max_count`` answers or ``max_bytes`` bytes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient, models

from image2mood.results import HELD_ANSWERS, ResultStoreError, SavedResult, valid_id

SUFFIX = "-answers"
_NAMESPACE = uuid.UUID("6f0d3f51-55d4-4d7c-9a53-6b4f0f2c9a1e")
_KEPT, _HELD = (models.Filter(must=[models.FieldCondition(key="kept", match=models.MatchValue(value=v))])
                for v in (True, False))
_PAGE = 1000


def point_id(result_id: str) -> str:
    """The answer's point id: a UUID derived from its result id."""
    return str(uuid.uuid5(_NAMESPACE, result_id))


class QdrantResults:
    """Kept and held answers in one vectorless collection of a Qdrant server (see the module's doc)."""

    def __init__(self, client: QdrantClient, collection: str, ttl_hours: float, max_count: int = 10_000,
                 max_bytes: int = 500 << 20, held: int = HELD_ANSWERS, layout: dict[str, int] | None = None) -> None:
        """``layout``: create_collection's shard_number, replication_factor and write_consistency_factor."""
        self.client, self.collection, self.ttl_s = client, collection, ttl_hours * 3600
        self.max_count, self.max_bytes, self.held = max_count, max_bytes, held
        self._lock = threading.Lock()  # one sweep at a time in this replica
        with self._errors():
            if not client.collection_exists(collection):
                self._create(layout or {})

    def hold(self, result: SavedResult) -> SavedResult:
        """Put ``result`` on the server as held (the oldest held ones go past ``held``), to be kept on demand;
        an answer held again under its id (its captions added) stays kept if it was."""
        with self._errors():
            again = self.client.retrieve(self.collection, [point_id(result.id)], with_payload=["kept"])
        self._put(result, kept=bool(again) and (again[0].payload or {}).get("kept") is True)
        with self._errors():
            excess = self.client.count(self.collection, count_filter=_HELD, exact=True).count - self.held
            if excess > 0:
                oldest, _ = self.client.scroll(self.collection, scroll_filter=_HELD, limit=excess, with_payload=False,
                                               order_by=models.OrderBy(key="created", direction=models.Direction.ASC))
                self._delete([record.id for record in oldest])
        return result

    def keep(self, result_id: str) -> SavedResult | None:
        """The kept answer with this id, a held one kept now; None when the id is malformed, unknown, expired
        or its stored payload is not an answer."""
        found = self._read(result_id)
        if found is None:
            return None
        result, kept = found
        if not kept:
            self.save(result)
        return result

    def save(self, result: SavedResult) -> SavedResult:
        """Keep ``result`` now, then sweep the collection back within its lifetime and caps."""
        self._put(result, kept=True)
        self.sweep(keep=result.id)
        return result

    def get(self, result_id: str) -> SavedResult | None:
        """The kept answer with this id, or None (malformed, unknown, only held, unreadable or expired)."""
        found = self._read(result_id)
        return found[0] if found is not None and found[1] else None

    def sweep(self, keep: str | None = None) -> int:
        """Delete the expired answers (held or kept), then the oldest kept ones while over ``max_count`` or
        ``max_bytes``, never the answer ``keep``; how many went."""
        with self._lock, self._errors():
            expired = models.Filter(must=[models.FieldCondition(key="created",
                                                                range=models.Range(lt=time.time() - self.ttl_s))])
            removed = self.client.count(self.collection, count_filter=expired, exact=True).count
            if removed:
                self.client.delete(self.collection, points_selector=models.FilterSelector(filter=expired), wait=True)
            kept = sorted(self._kept_sizes())  # (created, bytes, id), the oldest first
            count, size = len(kept), sum(k[1] for k in kept)
            protected = point_id(keep) if keep else None
            over: list[str] = []
            for _, bytes_, pid in kept:
                if count <= self.max_count and size <= self.max_bytes:
                    break
                if pid != protected:
                    over.append(pid)
                    count, size = count - 1, size - bytes_
            self._delete(over)
        return removed + len(over)

    def _create(self, layout: dict[str, int]) -> None:
        try:
            self.client.create_collection(self.collection, vectors_config={}, **layout)
        except Exception:
            if not self.client.collection_exists(self.collection):  # else another replica made it just now
                raise
        for name, schema in (("created", models.PayloadSchemaType.FLOAT), ("kept", models.PayloadSchemaType.BOOL)):
            self.client.create_payload_index(self.collection, name, field_schema=schema, wait=True)

    def _put(self, result: SavedResult, kept: bool) -> None:
        body = result.to_json()
        payload = {**body, "kept": kept, "bytes": len(json.dumps(body, ensure_ascii=False).encode())}
        with self._errors():
            self.client.upsert(self.collection, points=[models.PointStruct(id=point_id(result.id), vector={},
                                                                           payload=payload)], wait=True)

    def _read(self, result_id: str) -> tuple[SavedResult, bool] | None:
        """The answer and whether it is kept, or None (see :meth:`keep`)."""
        if not valid_id(result_id):
            return None
        with self._errors():
            records = self.client.retrieve(self.collection, [point_id(result_id)], with_payload=True)
        if not records:
            return None
        payload = dict(records[0].payload or {})
        kept = payload.pop("kept", None)
        payload.pop("bytes", None)
        try:
            result = SavedResult.from_json(payload)
            fresh = time.time() - float(result.created) <= self.ttl_s
        except (ValueError, TypeError):
            return None
        return (result, kept is True) if fresh and result.id == result_id else None

    def _kept_sizes(self) -> Iterator[tuple[float, int, str]]:
        offset: Any = None
        while True:
            records, offset = self.client.scroll(self.collection, scroll_filter=_KEPT, limit=_PAGE, offset=offset,
                                                 with_payload=["created", "bytes"])
            for r in records:  # a payload that is not ours counts as the oldest, and small
                created, bytes_ = (r.payload or {}).get("created"), (r.payload or {}).get("bytes")
                yield (float(created) if isinstance(created, (int, float)) else 0.0,
                       bytes_ if isinstance(bytes_, int) else 0, str(r.id))
            if offset is None:
                return

    def _delete(self, ids: list[Any]) -> None:
        if ids:
            with self._errors():
                self.client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A failure of the server is a ResultStoreError that names the collection."""
        try:
            yield
        except ResultStoreError:
            raise
        except Exception as exc:  # httpx, grpc and local-mode errors alike
            raise ResultStoreError(f"cannot keep answers in the Qdrant collection {self.collection!r}: {exc}") from exc
