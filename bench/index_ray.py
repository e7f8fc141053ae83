"""`index ray` against `index`: songs/min on the same 48 four-minute MP3s, in one run, from process start.

Run by hand (never in CI): ``.venv/bin/python bench/index_ray.py [--models DIR] [--music DIR] [--workers N]``.

CLAP is full-size HTSAT-tiny with random weights (bench/full_models.py); the songs are bench/index.py's.
`index ray --address local` starts its own Ray cluster on this machine, so its time includes Ray's start
(about 7 s here) and the engine's overhead (tasks, the object store, the actor pool): on one machine that
overhead is all it adds, since both use the same cores. The ratio is the figure to read; the load average
is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from index import CLI, ROOT, SECONDS, music, run_measured  # noqa: E402

SONGS = 48
TARGET_RATIO = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--music", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-bench-music-48")
    parser.add_argument("--workers", type=int, default=1, help="CLAP actors of `index ray`")
    args = parser.parse_args()
    from full_models import full_size_set

    models = full_size_set(args.models)
    music(args.music, SONGS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMAGE2MOOD_MODELS": str(models), "PYTHONPATH": str(ROOT)}
    work = Path(tempfile.mkdtemp(prefix="bench-index-ray-"))
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; {SONGS} songs of {SECONDS} s")
    single = run_measured([str(CLI), "index", str(args.music), "--store", str(work / "single")], env)
    ray = run_measured([str(CLI), "index", "ray", str(args.music), "--store", str(work / "ray"), "--address", "local",
                        "--workers", str(args.workers), "--run-dir", str(work / "run")], env)
    for name, (wall, rss, last) in (("index", single), (f"index ray ({args.workers} CLAP actor(s))", ray)):
        print(f"  {name:<28} {wall:6.1f} s  {SONGS / wall * 60:6.1f} songs/min  peak RSS {rss:.2f} GB  [{last}]")
    print(f"  index ray / index: {single[0] / ray[0]:.2f}x of index's songs/min (target >= {TARGET_RATIO})")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
