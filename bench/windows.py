"""What keeping every song's window vectors costs: disk, the resident memory of a process that searches and reads
an answer's windows, and the time of that read, per storage layout of the "windows" multivector.

Run by hand (never in CI): ``.venv/bin/python bench/windows.py --songs 10000 --windows 24``.

Each layout gets a fresh Qdrant Edge shard of ``--songs`` random 512-d songs, each with ``--windows`` window
vectors (24: a 4-minute song indexed with ``--windows all``, 10-s windows; the cap is 64). A fresh process then
loads the shard, runs 200 searches on the pooled vector (as every answer does) and 200 reads of ten songs' window
vectors (as every answer's highlights do), and reports the searches' and reads' times and its resident memory:
RssAnon (its own) and RssFile (pages of the on-disk vectors it has read, dropped under pressure). Layouts:
``none`` (the pooled vector alone, the baseline), ``float16-cold`` (what image2mood makes: float16, on disk,
paged in when read), ``float32-cold`` and ``float16-cached`` (kept in RAM). Disk scales with songs × windows
(the 100k column scales the measured size); the extra RssAnon of the windows did not (about 400 MB at 3k and 100k).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from image2mood.store.base import VECTOR_NAME, WINDOWS_NAME
from image2mood.store.embedded import _QUANTISED, _edge_config

DIM = 512
READS = 200
LAYOUTS = {  # name: (datatype, memory) of the windows vector; None: no windows vector
    "none": None,
    "float16-cold": "store",
    "float32-cold": (qe.VectorStorageDatatype.Float32, qe.Memory.Cold),
    "float16-cached": (qe.VectorStorageDatatype.Float16, qe.Memory.Cached),
}


def config(layout: str) -> qe.EdgeConfig:
    """The shard configuration: image2mood's own for ``none`` and ``float16-cold``, else with the windows changed."""
    spec = LAYOUTS[layout]
    if spec is None or spec == "store":
        return _edge_config(DIM, windows=spec == "store")
    datatype, memory = spec
    base = _edge_config(DIM, windows=False)
    vectors = {VECTOR_NAME: base.vectors[VECTOR_NAME], WINDOWS_NAME: qe.EdgeVectorParams(
        size=DIM, distance=qe.Distance.Cosine, datatype=datatype, memory=memory,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim))}
    return qe.EdgeConfig(vectors=vectors, hnsw_config=base.hnsw_config)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def build(path: Path, layout: str, songs: int, windows: int) -> float:
    """Fill a shard; returns the seconds it took."""
    rng = np.random.default_rng(0)
    shard = qe.EdgeShard.create(str(path), config(layout))
    started = time.perf_counter()
    for first in range(0, songs, 500):
        count = min(500, songs - first)
        pooled = unit(rng.standard_normal((count, DIM)))
        points = []
        for i in range(count):
            vectors: dict = {VECTOR_NAME: pooled[i]}
            if LAYOUTS[layout] is not None:
                vectors[WINDOWS_NAME] = unit(rng.standard_normal((windows, DIM)))
            points.append(qe.Point(str(uuid.UUID(int=first + i + 1)), vectors, {"title": str(first + i)}))
        shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    shard.close()
    return time.perf_counter() - started


def measure(path: Path, layout: str, songs: int) -> dict:
    """In this (fresh) process: load, search, read windows; resident memory and timings."""
    shard = qe.EdgeShard.load(str(path), config(layout))
    rng = np.random.default_rng(1)
    searches = []
    for _ in range(READS):  # as the store searches above the exact-search limit: codes, then rescoring
        started = time.perf_counter()
        shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(unit(rng.standard_normal(DIM)), using=VECTOR_NAME),
                                    with_payload=True, with_vector=[VECTOR_NAME], params=_QUANTISED))
        searches.append((time.perf_counter() - started) * 1000)
    search_rss = rss_mb()
    times = []
    if LAYOUTS[layout] is not None:
        for _ in range(READS):
            ids = [str(uuid.UUID(int=int(i) + 1)) for i in rng.choice(songs, 10, replace=False)]
            started = time.perf_counter()
            shard.retrieve(ids, with_payload=True, with_vector=[WINDOWS_NAME])
            times.append((time.perf_counter() - started) * 1000)
    after_reads, file_pages = rss_mb(), rss_mb("RssFile")
    shard.close()
    return {"search_ms_p50": float(np.percentile(searches, 50)), "search_ms_p95": float(np.percentile(searches, 95)),
            "search_rss_mb": search_rss, "rss_after_reads_mb": after_reads, "file_mb": file_pages,
            "read_ms_p50": float(np.percentile(times, 50)) if times else None,
            "read_ms_p95": float(np.percentile(times, 95)) if times else None}


def rss_mb(kind: str = "RssAnon") -> float:
    """This process's resident memory of one kind (/proc/self/status): RssAnon is its own (heap, copies in RAM);
    RssFile is pages of mapped files (the on-disk vectors it has read), which the kernel drops under pressure."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {kind}")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--measure", nargs=2, metavar=("PATH", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1], args.songs)))
        return
    scale = 100_000 / args.songs
    print(f"{args.songs} songs × {args.windows} windows of {DIM}-d; 100k figures scaled ×{scale:g}")
    print("| layout | build s | disk MB | search p50 / p95 ms | RssAnon after searches MB | RssAnon after window reads MB "
          "| RssFile MB | read 10 songs' windows p50 / p95 ms | disk per 100k songs GB | RssAnon over `none` MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    baseline = None
    for layout in args.layouts.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"windows-{layout}-"))
        try:
            seconds = build(folder / "shard", layout, args.songs, args.windows)
            run = subprocess.run([sys.executable, __file__, "--songs", str(args.songs), "--measure",
                                  str(folder / "shard"), layout], capture_output=True, text=True, check=True)
            got = json.loads(run.stdout)
            disk = disk_mb(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        baseline = got["rss_after_reads_mb"] if baseline is None and layout == "none" else baseline
        extra = "" if baseline is None else f"{got['rss_after_reads_mb'] - baseline:.0f}"
        reads = "–" if got["read_ms_p50"] is None else f"{got['read_ms_p50']:.2f} / {got['read_ms_p95']:.2f}"
        print(f"| {layout} | {seconds:.1f} | {disk:.0f} | {got['search_ms_p50']:.2f} / {got['search_ms_p95']:.2f} "
              f"| {got['search_rss_mb']:.0f} | {got['rss_after_reads_mb']:.0f} | {got['file_mb']:.0f} | {reads} "
              f"| {disk * scale / 1024:.2f} | {extra} |", flush=True)


if __name__ == "__main__":
    main()
