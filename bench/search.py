"""Search at scale through the project's own SongStore: latency, recall@10 against exact search, build cost.

Run by hand (never in CI): ``.venv/bin/python bench/search.py --sizes 10000,100000``.

For each size and each vector distribution it fills a fresh embedded store (Qdrant Edge) with
random 512-d songs, runs the indexer's ``optimize()`` (which builds the 4-bit codes above the
exact-search limit), then times 200 queries with the production search settings and, side by side,
the naive full scan of every float32 vector and the codes alone without rescoring. Recall@10 is
measured against numpy's exact top 10.

Distributions: ``random`` (isotropic unit vectors, HNSW's worst case) and ``clustered`` (64 clusters
around a shared direction, mean pairwise cosine about 0.35, as CLAP libraries show). 1M songs take
about 5 minutes and 6 GB: ``--sizes 1000000``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from image2mood.store import open_store
from image2mood.store.base import VECTOR_NAME, Song, StoreInfo

DIM = 512
QUERIES = 200
CODES_ONLY = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=False))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vectors(n: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` library vectors and the queries for them."""
    if kind == "random":
        return unit(rng.standard_normal((n, DIM))), unit(rng.standard_normal((QUERIES, DIM)))
    shared, centres = unit(rng.standard_normal((1, DIM))), unit(rng.standard_normal((64, DIM)))

    def draw(k: int) -> np.ndarray:
        return unit(0.55 * shared + 0.6 * centres[rng.integers(0, 64, k)] + 0.02 * rng.standard_normal((k, DIM)))

    return draw(n), draw(QUERIES)


def fill(folder: Path, library: np.ndarray) -> tuple[object, float, float]:
    """A store holding ``library``; returns it with upsert and optimize seconds."""
    store = open_store(str(folder), info=StoreInfo("bench", "bench", DIM, "bench", "bench"))
    started = time.perf_counter()
    for first in range(0, len(library), 1000):
        store.upsert([Song(id=str(uuid.UUID(int=i + 1)), path=f"/music/{i}.mp3", content_hash=str(i),
                           title=f"song {i}", duration=200.0, vector=library[i])
                      for i in range(first, min(first + 1000, len(library)))])
    upserted = time.perf_counter() - started
    started = time.perf_counter()
    store.optimize()
    return store, upserted, time.perf_counter() - started


def timed(search, queries: np.ndarray, truth: list[set[int]]) -> tuple[float, float, float]:
    """p50 ms, p95 ms and mean recall@10 of ``search`` over the queries."""
    latencies, recalls = [], []
    for query, relevant in zip(queries, truth, strict=True):
        started = time.perf_counter()
        ids = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({uuid.UUID(i).int - 1 for i in ids} & relevant) / 10)
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)), float(np.mean(recalls))


def raw_ids(store, query: np.ndarray, params: qe.SearchParams | None) -> list[str]:
    """Qdrant Edge's own query on the store's shard, with ``params`` as given."""
    request = qe.QueryRequest(limit=10, query=qe.Query.Nearest(query, using=VECTOR_NAME), params=params)
    return [str(p.id) for p in store._shard.query(request)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dists", default="random,clustered")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'songs':>8} {'vectors':>9} | {'upsert/s':>8} {'optimize s':>10} | "
          f"{'image2mood p50/p95 ms':>21} {'recall':>6} | {'codes only p50/p95':>18} {'recall':>6} | "
          f"{'full scan p50/p95':>17} | {'RSS MB':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.dists.split(","):
            library, queries = vectors(size, kind, rng)
            truth = [set(np.argsort(-(library @ q))[:10].tolist()) for q in queries]
            folder = Path(tempfile.mkdtemp(prefix="bench-search-"))
            try:
                store, upserted, optimized = fill(folder / "store", library)
                ours = timed(lambda q: [h.song.id for h in store.search(q, 10)], queries, truth)
                codes = timed(lambda q: raw_ids(store, q, CODES_ONLY), queries, truth)
                exact = timed(lambda q: raw_ids(store, q, qe.SearchParams(exact=True)), queries, truth)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"{size:>8} {kind:>9} | {size / upserted:>8.0f} {optimized:>10.1f} | "
                      f"{ours[0]:>9.1f} / {ours[1]:>9.1f} {ours[2]:>6.3f} | "
                      f"{codes[0]:>8.1f} / {codes[1]:>7.1f} {codes[2]:>6.3f} | "
                      f"{exact[0]:>7.1f} / {exact[1]:>7.1f} | {rss:>6.0f}", flush=True)
                store.close()
            finally:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
