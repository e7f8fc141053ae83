"""`image2mood index ray`: the indexer's stages as Ray Data operators, for catalogues beyond one process.

1. **list** (driver): the SOURCEs' songs (:mod:`indexer.ray_sources`);
2. **skip** (driver): what the store holds with the same size and modification time, read from the store
   once per run;
3. **decode** (Ray tasks): :func:`image2mood.library.prepare` (or, for an object-store song,
   :func:`image2mood.audio.decode_stream` on its bytes): the windows and the tags;
4. **embed** (an actor pool): :func:`image2mood.library.embed` with the configured CLAP, loaded once per
   actor through the model factory (on a GPU when the actor has one, with the indexer's precision rules);
5. **write**: a Qdrant server is written by a Ray ``Datasink`` (batches upserted with ``wait=True``,
   retried with back-off); an embedded store (or the in-process stand-in) by the driver, batch by batch.

The same core functions as `index`, so a song's vector does not depend on how it was indexed. Point ids come
from the song's path (or the manifest's ``song_id``), so a retried task or a rerun never duplicates a song.
A bad file is a reported skip: its path and reason go to ``failures.jsonl`` in the run's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image2mood.audio import decode_stream
from image2mood.config import Settings
from image2mood.errors import Image2MoodError
from image2mood.library import FileFacts, PreparedSong, embed, file_facts, prepare, song_id, window_limit
from image2mood.store import open_configured_store
from image2mood.store.base import Song, SongStore, StoreInfo
from image2mood.tags import Tags
from indexer.pipeline import IndexReport
from indexer.ray_sources import Item

RETRIES = 5  # attempts of one batch's upsert to a Qdrant server before the write task fails (Ray retries it)


@dataclass(frozen=True)
class RayOptions:
    """How the pipeline runs on the cluster."""

    workers: int = 1  # CLAP actors
    gpus_per_worker: float = 0.0
    batch_size: int = 8  # songs per call of an actor
    decode_cpus: float = 1.0


def is_server(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def item_id(item: Item) -> str:
    """The point id of an item: the manifest's, else the one `index` gives the same file (its path)."""
    if item.song_id:
        return item.song_id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, item.location)) if item.remote else song_id(Path(item.location))


def to_do(items: Sequence[Item], known: dict[str, Song]) -> tuple[list[dict], int]:
    """The items whose stored song is missing or was made from another size or modification time, as rows
    for Ray, and how many are unchanged. Local files are stat-ed (nothing is read); objects carry theirs."""
    rows, unchanged = [], 0
    for item in items:
        if not item.remote:
            try:
                stat = Path(item.location).stat()
                item = dataclasses.replace(item, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            except OSError:
                pass  # the decode stage says what is wrong with it
        stored = known.get(item_id(item))
        if stored is not None and item.size is not None and (stored.size, stored.mtime_ns) == (item.size, item.mtime_ns):
            unchanged += 1
        else:
            rows.append({"item": item})
    return rows, unchanged


def decode(row: dict, settings: Settings, sample_rate: int) -> dict:
    """Stage 3: an item's windows and tags (a PreparedSong), or why it cannot be indexed."""
    item: Item = row["item"]
    try:
        prepared = _prepare_remote(item, settings, sample_rate) if item.remote else \
            prepare(file_facts(Path(item.location)), settings, sample_rate)
        if item.song_id:
            prepared = dataclasses.replace(prepared, facts=dataclasses.replace(prepared.facts, id=item.song_id))
        return _row(item, prepared, "")
    except (Image2MoodError, OSError) as exc:
        return _row(item, None, str(exc))
    except Exception as exc:  # a decoder library's own failure: still one file, not the job
        return _row(item, None, f"cannot index {item.location}: {type(exc).__name__}: {exc}")


def _row(item: Item, value: PreparedSong | Song | None, failure: str) -> dict:
    """A row between stages: one pickled (item, value, failure), so every block has the same Arrow schema
    whatever its songs hold (a column of Nones and objects would not)."""
    return {"payload": pickle.dumps((item, value, failure), protocol=5)}


def unpack(payload: bytes) -> tuple[Item, PreparedSong | Song | None, str]:
    return pickle.loads(payload)


def _prepare_remote(item: Item, settings: Settings, sample_rate: int) -> PreparedSong:
    """An object-store song, read once into memory: hashed, decoded there (never written to disk); its title
    is its name (tags come from the manifest)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(item.location)
    with fs.open_input_stream(path) as stream:
        data = stream.readall()
    facts = FileFacts(path=item.location, id=item_id(item), content_hash=hashlib.sha256(data).hexdigest(),
                      size=item.size if item.size is not None else len(data), mtime_ns=item.mtime_ns)
    audio = decode_stream([data], item.location, sample_rate=sample_rate, window_seconds=settings.window_seconds,
                          max_windows=window_limit(settings))
    return PreparedSong(facts=facts, tags=Tags(title=Path(path).stem, artist=None, album=None, genre=None),
                        audio=audio)


class Embedder:
    """Stage 4, one per actor: the configured CLAP, loaded once, embeds each decoded song of a batch."""

    def __init__(self, settings: Settings) -> None:
        import image2mood.models._torchvision  # noqa: F401  (before anything imports torchvision)
        from image2mood.models.factory import clap_encoder

        self.encoder = clap_encoder(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = []
        for payload in batch["payload"]:
            item, prepared, failure = unpack(payload)
            song = None
            if prepared is not None:
                try:
                    song = _with_manifest_tags(embed(prepared, self.encoder), item)
                except (Image2MoodError, ValueError, RuntimeError) as exc:  # the model's refusal of odd audio
                    failure = f"cannot embed {item.location}: {exc}"
            rows.append(_row(item, song, failure)["payload"])
        return {"payload": rows}


def _with_manifest_tags(song: Song, item: Item) -> Song:
    tags = {name: getattr(item, name) for name in ("artist", "title", "album") if getattr(item, name)}
    return dataclasses.replace(song, **tags) if tags else song


def upsert_with_retry(store: SongStore, songs: Sequence[Song], sleep: Callable[[float], None] = time.sleep) -> None:
    """Upsert one batch, retrying a failed attempt after 0.5, 1, 2, 4 s; the last failure is raised."""
    for attempt in range(RETRIES):
        try:
            store.upsert(songs)
            return
        except Exception:
            if attempt == RETRIES - 1:
                raise
            sleep(0.5 * 2 ** attempt)


def _ray_sink_base():
    from ray.data import Datasink

    return Datasink


class QdrantSink(_ray_sink_base()):  # type: ignore[misc]
    """Stage 5 for a Qdrant server: each write task opens the collection, upserts its blocks' songs in
    batches (acknowledged: ``wait=True``) with retries, and returns what it stored and what failed."""

    def __init__(self, settings: Settings, info: StoreInfo,
                 opener: Callable[[Settings, StoreInfo], SongStore] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.info, self.sleep = settings, info, sleep
        self.opener = opener or (lambda s, i: open_configured_store(s, i, create=False))
        self.results: list[dict] = []

    def write(self, blocks: Iterable, ctx) -> dict:
        from ray.data.block import BlockAccessor

        pending: list[Song] = []
        failures: list[tuple[str, str]] = []
        stored = 0
        with self.opener(self.settings, self.info) as store:
            for block in blocks:
                for row in BlockAccessor.for_block(block).iter_rows(public_row_format=False):
                    _collect(row["payload"], pending, failures)
                    if len(pending) >= self.settings.upsert_batch:
                        upsert_with_retry(store, pending, self.sleep)
                        stored += len(pending)
                        pending.clear()
            if pending:
                upsert_with_retry(store, pending, self.sleep)
                stored += len(pending)
        return {"stored": stored, "failures": failures}

    def on_write_complete(self, write_result) -> None:
        self.results = list(write_result.write_returns)


def _collect(payload: bytes, stored: list[Song], failures: list[tuple[str, str]]) -> None:
    item, song, failure = unpack(payload)
    if song is not None:
        stored.append(song)
    else:
        failures.append((item.location, failure))


def write_from_driver(dataset, store: SongStore, batch: int, on_stored: Callable[[Sequence[Song]], None],
                      on_failure: Callable[[str, str], None]) -> None:
    """Stage 5 for an embedded store: the driver upserts each batch as it arrives (durable when written)."""
    for rows in dataset.iter_batches(batch_size=batch, batch_format="numpy"):
        songs: list[Song] = []
        failures: list[tuple[str, str]] = []
        for payload in rows["payload"]:
            _collect(payload, songs, failures)
        if songs:
            store.upsert(songs)
            on_stored(songs)
        for location, reason in failures:
            on_failure(location, reason)


def failures_file(run_dir: Path) -> Path:
    return run_dir / "failures.jsonl"


def record_failure(run_dir: Path, report: IndexReport, location: str, reason: str) -> None:
    """Count a failure and append it to the run's failures file (one JSON object a line)."""
    report.failed += 1
    report.failures.append((location, reason))
    with failures_file(run_dir).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"path": location, "reason": reason}, ensure_ascii=False) + "\n")
