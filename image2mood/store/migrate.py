"""Copy every song of one store into another (embedded folder ⇄ Qdrant server), resumably, and check the copy.

A migration is idempotent: it first reads what the target already holds (ids and payloads, no
vectors) and then writes only the songs that are missing there or differ, in batches that are
durable when written. A rerun after an interruption therefore copies only what is still missing.
It ends by comparing the counts and a random sample of songs, vectors included.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from image2mood.errors import Image2MoodError, StoreError, StoreMismatchError
from image2mood.store import Song, SongStore, open_store
from image2mood.store.identity import weights_fingerprint

BATCH = 1024
"""Songs read from the source and written to the target per step (an embedded target flushes each: 0.25 s here)."""
SAMPLE = 32
"""Songs compared vector by vector when the copy is verified."""
VECTOR_TOLERANCE = 1e-6
"""Largest difference allowed per vector component (a server renormalises cosine vectors)."""


@dataclass
class MigrationReport:
    """What one migration did."""

    copied: int = 0
    unchanged: int = 0
    """Songs the target already held with the same payload (a resumed or repeated run)."""
    removed: int = 0
    """Songs removed from the target because the source lacks them (only with ``prune``)."""
    verified: int = 0
    """Songs compared payload and vector at the end."""


@dataclass(frozen=True)
class MigrationPlan:
    """What the target lacks: source ids to copy, how many it holds already, and its songs the source lacks."""

    source_ids: list[str]
    to_copy: list[str]
    extra: list[Song]


def open_target(location: str, source: SongStore, *, api_key: str | None = None,
                collection: str = "songs", **layout: int) -> SongStore:
    """Open, or make, the store at ``location`` to receive ``source``'s songs; it records the same StoreInfo,
    with the fingerprint of the weights where an old source lacks it and its model's name finds them here.

    Refuses the source itself, and a target whose vectors were built another way (by other weights, or
    windowed otherwise). ``layout``: :func:`open_store`'s shards, replication and write_consistency for a new
    server collection.
    """
    if source.kind == "embedded" and Path(location).expanduser().resolve() == Path(source.location).resolve():
        raise _into_itself(source)
    info = source.info
    with suppress(Image2MoodError, OSError):  # not found here: the target keeps the name only, as the source
        info = replace(info, clap_fingerprint=weights_fingerprint(info))
    try:
        return open_store(location, info=info, api_key=api_key, collection=collection, access="write", **layout)
    except StoreMismatchError:
        with open_store(location, info=None, api_key=api_key, collection=collection, create=False) as other:
            raise StoreMismatchError(
                f"cannot migrate {source.location} into {other.location}: the target was built with "
                f"{other.info.describe()}, the source with {source.info.describe()}, and a store holds the "
                "vectors of one model only. Migrate into a new folder or collection (`--to NEW_DIR` or "
                "`--to-collection NEW`)."
            ) from None


def plan_migration(source: SongStore, target: SongStore) -> MigrationPlan:
    """Compare the two stores by id and payload (vectors are not read)."""
    if source.location == target.location and source.location != ":memory:":
        raise _into_itself(source)
    held = {song.id: song for song in target.scroll()}
    source_ids: list[str] = []
    to_copy: list[str] = []
    for song in source.scroll():
        source_ids.append(song.id)
        if held.pop(song.id, None) != song:
            to_copy.append(song.id)
    return MigrationPlan(source_ids, to_copy, list(held.values()))


def migrate(source: SongStore, target: SongStore, *, prune: bool = False, batch: int = BATCH,
            sample: int = SAMPLE, on_batch: Callable[[int], None] | None = None) -> MigrationReport:
    """Make ``target`` hold exactly ``source``'s songs, then verify it (StoreError when it does not).

    ``prune`` removes target songs the source lacks (otherwise they are refused); ``on_batch`` is
    called with the number of songs copied so far after each durable batch.
    """
    if batch < 1:
        raise StoreError(f"the migration batch must be at least 1 song, got {batch}")
    plan = plan_migration(source, target)
    if plan.extra and not prune:
        raise StoreError(
            f"the target at {target.location} holds {len(plan.extra)} songs the source at {source.location} "
            f"does not (e.g. {plan.extra[0].path}); migrate into an empty store, or pass --prune to remove them"
        )
    report = MigrationReport(unchanged=len(plan.source_ids) - len(plan.to_copy))
    with tqdm(total=len(plan.to_copy), unit="song", dynamic_ncols=True, mininterval=0.5,
              disable=not plan.to_copy) as bar:
        for start in range(0, len(plan.to_copy), batch):
            songs = source.get(plan.to_copy[start:start + batch], with_vectors=True, with_windows=True)
            target.upsert(songs)
            report.copied += len(songs)
            bar.update(len(songs))
            if on_batch is not None:
                on_batch(report.copied)
    if plan.extra:
        target.delete([song.id for song in plan.extra])
        report.removed = len(plan.extra)
    if report.copied or report.removed:
        target.optimize()
    report.verified = verify(source, target, plan.source_ids, sample)
    return report


def verify(source: SongStore, target: SongStore, ids: list[str], sample: int = SAMPLE) -> int:
    """Check equal counts and, for ``sample`` random ``ids``, equal payloads and vectors; returns how many were compared."""
    have, want = target.count(), source.count()
    if have != want:
        raise StoreError(
            f"the copy is incomplete: the target at {target.location} holds {have} songs, the source at "
            f"{source.location} {want} (was the source changed during the migration?); run the migration again"
        )
    picked = random.sample(ids, min(sample, len(ids)))
    copies = {song.id: song for song in target.get(picked, with_vectors=True)}
    for song in source.get(picked, with_vectors=True):
        copy = copies.get(song.id)
        if copy is None:
            raise StoreError(f"{song.path} (id {song.id}) is missing from the target at {target.location}")
        if copy != song:
            raise StoreError(f"{song.path} (id {song.id}) differs in the target at {target.location}: "
                             f"{copy.to_payload()} instead of {song.to_payload()}")
        assert song.vector is not None and copy.vector is not None  # both read with vectors
        drift = float(np.max(np.abs(copy.vector - song.vector)))
        if drift > VECTOR_TOLERANCE:
            raise StoreError(f"{song.path} (id {song.id}) has another vector in the target at {target.location} "
                             f"(differs by up to {drift:.2e}); remove the target, or choose another, and migrate again")
    return len(picked)


def _into_itself(source: SongStore) -> StoreError:
    return StoreError(f"the source and the target are the same store ({source.location}); "
                      "name another folder, server or collection with --to / --to-collection")
