"""The driver of `image2mood index ray`: connect to (or start) a Ray cluster, list, skip, run the stages of
:mod:`indexer.ray_index`, write, prune, and report in `index`'s own closing line."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.clap_facts import read_clap_facts
from image2mood.models.resolve import resolve_model
from image2mood.paths import local_path
from image2mood.store import open_configured_store
from image2mood.store.base import Song, SongStore
from indexer.pipeline import IndexReport
from indexer.prune import prune_plan, prune_roots
from indexer.ray_index import (Embedder, QdrantSink, RayOptions, decode, failures_file, is_server, record_failure,
                               to_do, write_from_driver)
from indexer.ray_sources import list_sources, local_roots

LOCAL = "local"


def default_run_dir() -> Path:
    """Where a run keeps its log and failures: ./image2mood-runs/ray-<UTC time>."""
    return Path("image2mood-runs") / dt.datetime.now(dt.timezone.utc).strftime("ray-%Y%m%d-%H%M%S")


OBJECT_STORE_BYTES = 1 << 30  # a local cluster's shared memory for decoded songs in flight; Ray spills past it


@contextlib.contextmanager
def ray_cluster(address: str):
    """Ray, connected: ``local`` starts a private cluster on this machine's cores (stopped at the end),
    ``auto`` joins the running one (RAY_ADDRESS or the local head), ``ray://HOST:10001`` a remote one through
    Ray Client. A Ray this process already started is used as it is, and left running."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    if address == LOCAL:
        ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=OBJECT_STORE_BYTES)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def run(sources: Sequence[str], settings: Settings, options: RayOptions, *, address: str = LOCAL,
        prune: bool = False, run_dir: Path | None = None, say: Callable[[str], None] = print,
        on_stored: Callable[[Sequence[Song]], None] = lambda songs: None,
        store: SongStore | None = None) -> IndexReport:
    """Index the SOURCEs into the configured store (or ``store``, an open one the caller keeps) on Ray; the
    report counts what happened."""
    roots = prune_roots(local_roots(sources)) if prune else []  # refuse before anything slow happens
    run_dir = run_dir or default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    failures_file(run_dir).write_text("", encoding="utf-8")
    facts = read_clap_facts(resolve_model("clap", settings.model_spec("clap")))
    info = store_info(facts, settings)
    items = list_sources(sources)
    report = IndexReport()
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(open_configured_store(settings, info))
        else:
            store.check(info, "write")
        known = {song.id: song for song in store.scroll()}
        rows, report.unchanged = to_do(items, known)
        say(f"{len(items)} songs listed: {report.unchanged} unchanged, {len(rows)} to index (run folder {run_dir})")
        if rows:
            with ray_cluster(address) as ray:
                dataset = _pipeline(ray, rows, settings, options, facts.sample_rate)
                _write(dataset, store, settings, info, run_dir, report, on_stored)
        if prune:
            report.removed = _prune(store, known.values(), roots, say)
        if report.indexed or report.removed:
            store.optimize()
    return report


def _pipeline(ray, rows: list[dict], settings: Settings, options: RayOptions, sample_rate: int):
    """list → decode (tasks) → embed (an actor pool), lazily: nothing runs until the write pulls it."""
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 200)))
    dataset = dataset.map(decode, fn_kwargs={"settings": settings, "sample_rate": sample_rate},
                          num_cpus=options.decode_cpus, max_retries=3)
    return dataset.map_batches(
        Embedder, fn_constructor_kwargs={"settings": settings}, batch_size=options.batch_size,
        batch_format="numpy", concurrency=options.workers, num_gpus=options.gpus_per_worker or None,
        max_restarts=-1, max_task_retries=-1)


def _write(dataset, store: SongStore, settings: Settings, info, run_dir: Path, report: IndexReport,
           on_stored: Callable[[Sequence[Song]], None]) -> None:
    def failed(location: str, reason: str) -> None:
        record_failure(run_dir, report, location, reason)

    if is_server(settings.store):
        sink = QdrantSink(settings, info)
        dataset.write_datasink(sink)
        for result in sink.results:
            report.indexed += result["stored"]
            for location, reason in result["failures"]:
                failed(location, reason)
    else:
        def stored(songs: Sequence[Song]) -> None:
            report.indexed += len(songs)
            on_stored(songs)

        write_from_driver(dataset, store, settings.upsert_batch, stored, failed)


def _prune(store: SongStore, known, roots: Sequence[Path], say: Callable[[str], None]) -> int:
    plan = prune_plan(known, roots)
    for line in plan.warnings():
        say(f"warning: {line}")
    for song in plan.remove:
        say(f"removing: {local_path(song.path)} (its file is gone)")
    if plan.remove:
        store.delete([song.id for song in plan.remove])
    return len(plan.remove)
