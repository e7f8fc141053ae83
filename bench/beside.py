"""Answers while `index` runs beside the service: ``POST /api/recommend`` p50/p95 idle, during an indexing run
not niced (what the code did before IMAGE2MOOD_INDEX_NICE), and during one at the default nice level.

Run by hand (never in CI): ``.venv/bin/python bench/beside.py [--requests 12] [--models DIR] [--music DIR]``.

The service is `image2mood serve` (waitress) in its own process over a store of 1,000 random songs, with the
full-size random models (bench/full_models.py); the indexing run is `image2mood index --windows all` over
bench/index.py's 12 synthesised songs into a store of its own, from process start. Each request is a new
photo (the photo memo never answers). Idle is measured before and after the indexing runs, and pooled. On
a shared machine compare the ratios; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from index import music
from query import fill_store, full_models, photo
from service_load import CLI, recommend_s, serve

from image2mood.config import Settings

TARGET_RATIO = 1.5  # answer p95 while indexing, against idle


def _during_index(port: int, photos: list[bytes], index_args: list[str], env: dict[str, str]) -> list[float]:
    """Answer seconds while ``index`` runs (from 5 s after its start, its imports done), up to len(photos)."""
    proc = subprocess.Popen(index_args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)
    seconds = []
    try:
        for body in photos:
            if proc.poll() is not None:
                break
            seconds.append(recommend_s(port, body))
    finally:
        proc.kill()
        proc.wait()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12, help="answers timed in each phase")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--music", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-bench-music")
    parser.add_argument("--nice", type=int, default=Settings.model_fields["index_nice"].default)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    models, work = full_models(args.models), Path(tempfile.mkdtemp(prefix="bench-beside-"))
    music(args.music)
    settings = Settings(_env_file=None, models=models, store=str(work / "store"))
    fill_store(settings, 1000)
    env = {**os.environ, "IMAGE2MOOD_MODELS": str(models)}
    n = args.requests
    photos = iter([photo(20_000 + i) for i in range(5 * n + 2)])
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores")
    with serve(work / "store", env, work / "serve.log") as port:
        for _ in range(2):
            recommend_s(port, next(photos))  # warm
        phases: dict[str, list[float]] = {"idle": [recommend_s(port, next(photos)) for _ in range(n)]}
        for nice in (0, args.nice):
            index_args = [str(CLI), "index", str(args.music), "--store", str(work / f"index-{nice}"), "--windows", "all"]
            phases[f"during index, nice {nice}"] = _during_index(
                port, [next(photos) for _ in range(n)], index_args, {**env, "IMAGE2MOOD_INDEX_NICE": str(nice)})
            print(f"  {nice=}: {len(phases[f'during index, nice {nice}'])} answers; load {os.getloadavg()[0]:.1f}")
        phases["idle"] += [recommend_s(port, next(photos)) for _ in range(n)]
    idle_p95 = float(np.percentile(phases["idle"], 95))
    print(f"\nPOST /api/recommend beside `index --windows all` ({n} answers a phase, idle pooled before/after):")
    for name, seconds in phases.items():
        p50, p95 = np.percentile(seconds, 50), np.percentile(seconds, 95)
        print(f"  {name:<24} p50 {p50:.3f} s  p95 {p95:.3f} s  p95/idle {p95 / idle_p95:.2f}x"
              + ("" if name == "idle" else f"   (target <= {TARGET_RATIO}x)"))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
