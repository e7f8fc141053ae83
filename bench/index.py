"""Indexing speed: songs/min and peak RSS for 12 four-minute MP3s, counted from process start, against a
one-window-at-a-time loop; full coverage (``--windows all``); and a rerun over 1,000 unchanged songs.

Run by hand (never in CI): ``.venv/bin/python bench/index.py [--models DIR] [--music DIR] [--baseline REV]``.

CLAP is full-size HTSAT-tiny with random weights (bench/full_models.py). The songs are synthesised
(chords, a beat and noise; 44.1 kHz stereo, 128 kbit/s MP3 via Debian's ffmpeg) once into ``--music``.
Each run is a fresh process (``image2mood index`` for the project, this script's ``--naive-loop`` for the
naive loop: decode the same six windows, embed them one call each, no decoding ahead, no batching); its
wall time includes the interpreter, the imports and the model load, and its peak RSS is the kernel's.
The rerun: 1,000 paths (hard links to the 12 songs, so real sizes on no extra disk) in a store filled as
``index`` leaves it, then ``image2mood index`` again, from process start; beside it, the old way's cost of
hashing every file. On a shared machine compare the ratios; the load average is printed.

``--baseline REV`` times ``index`` (default windows and ``--windows all``) of the working tree against the
same command of revision REV (a git worktree, bench/baseline.py), alternating candidate and baseline
``--rounds`` times, and prints each side's best songs/min and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "image2mood"
SONGS, SECONDS, RERUN = 12, 240, 1000
TARGET_SONGS_MIN, TARGET_ALL_SONGS_MIN, TARGET_RERUN_S = 40, 30, 5.0


def synth_song(path: Path, seed: int) -> None:
    """Four minutes of chords, a kick on every beat and a little noise, as an MP3."""
    import soundfile as sf

    rate, rng = 44100, np.random.default_rng(seed)
    t = np.arange(SECONDS * rate) / rate
    roots = 110 * 2 ** (rng.integers(0, 12, 8) / 12)
    chord = roots[(t // 4).astype(int) % 8]
    signal = sum(np.sin(2 * np.pi * chord * ratio * t) for ratio in (1, 1.25, 1.5)) / 6
    beat = np.exp(-30 * ((t * (100 + 10 * seed) / 60) % 1)) * np.sin(2 * np.pi * 55 * t)
    mono = (signal + 0.4 * beat + 0.03 * rng.standard_normal(len(t))).astype(np.float32)
    wav = path.with_suffix(".wav")
    sf.write(wav, np.stack([mono, np.roll(mono, 300)], axis=1), rate)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(path)], check=True)
    wav.unlink()


def music(folder: Path, songs: int = SONGS) -> list[Path]:
    """``songs`` synthesised songs in ``folder``, made once (a later run finds them there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"song{i:02d}.mp3" for i in range(songs)]
    for i, path in enumerate(paths):
        if not path.exists():
            synth_song(path, i)
    return paths


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds from start to exit, peak RSS (GB) and the last output line of ``args``, run under a helper
    process of its own (:func:`measure`), so that RUSAGE_CHILDREN is this run's alone."""
    wall, rss, _, last = run_measured_cpu(args, env)
    return wall, rss, last


def run_measured_cpu(args: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """:func:`run_measured` with the run's CPU seconds (user + system) third: on a crowded machine the wall
    time mostly measures the neighbours, the CPU time the run's own work."""
    helper = [sys.executable, __file__, "--measure", "--", *args]
    out = subprocess.run(helper, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    wall, rss, cpu, last = out.stdout.strip().split("\t", 3)
    return float(wall), float(rss), float(cpu), last


def measure(args: list[str]) -> None:
    import resource

    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_gb, cpu = usage.ru_maxrss / 1024 / 1024, usage.ru_utime + usage.ru_stime
    print(f"{wall}\t{rss_gb}\t{cpu}\t{(proc.stdout.strip().splitlines() or [''])[-1]}")


def naive_loop(folder: Path) -> None:
    """The naive loop, in this process: decode six windows of each file, embed them one call each."""
    from image2mood.audio import decode_windows
    from image2mood.config import Settings
    from image2mood.models.factory import clap_encoder
    from image2mood.vectors import l2_normalise

    encoder = clap_encoder(Settings())
    for path in sorted(folder.glob("*.mp3")):
        audio = decode_windows(path, sample_rate=encoder.sample_rate, max_windows=6)
        l2_normalise(np.mean([encoder.encode_windows([w])[0] for w in audio.windows], axis=0))
    print(f"embedded {SONGS} songs")


def rerun_library(songs: list[Path], work: Path, env: dict[str, str]) -> tuple[Path, Path, float]:
    """1,000 paths to the songs in ``work``/library and a store that holds them as ``index`` left it; and the
    seconds it took to hash them all (what a rerun cost when every file was hashed)."""
    os.environ.update(env)
    from image2mood.config import Settings
    from image2mood.library import file_facts, store_info
    from image2mood.models.factory import clap_encoder
    from image2mood.store import open_store
    from image2mood.store.base import Song

    library, store_path = work / "library", work / "rerun-store"
    library.mkdir()
    for i in range(RERUN):
        os.link(songs[i % len(songs)], library / f"{i:04d}.mp3")
    settings = Settings(_env_file=None, store=str(store_path))
    encoder = clap_encoder(settings)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    facts = [file_facts(path) for path in sorted(library.iterdir())]
    hashing = time.perf_counter() - started
    with open_store(str(store_path), info=store_info(encoder, settings)) as store:
        vectors = rng.standard_normal((RERUN, encoder.dim)).astype(np.float32)
        store.upsert([Song(id=f.id, path=str(f.path), content_hash=f.content_hash, title=Path(f.path).stem,
                           duration=float(SECONDS), size=f.size, mtime_ns=f.mtime_ns, vector=v / np.linalg.norm(v))
                      for f, v in zip(facts, vectors, strict=True)])
    return library, store_path, hashing


def rerun_in_process(library: Path, store_path: Path) -> tuple[float, str]:
    """The rerun's own work, with the model already loaded: seconds and the summary line."""
    from image2mood.config import Settings
    from image2mood.library import store_info
    from image2mood.models.factory import clap_encoder
    from image2mood.store import open_store
    from indexer.pipeline import Indexer

    settings = Settings(_env_file=None, store=str(store_path))
    encoder = clap_encoder(settings)
    started = time.perf_counter()
    with open_store(str(store_path), info=store_info(encoder, settings)) as store:
        report = Indexer(store, encoder, settings, warn=lambda line: None).run([library])
    return time.perf_counter() - started, report.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-full-models")
    parser.add_argument("--music", type=Path, default=Path(tempfile.gettempdir()) / "image2mood-bench-music")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: default,all,naive,rerun")
    parser.add_argument("--baseline", metavar="REV", help="time index against git revision REV instead")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: candidate/baseline pairs per part")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from full_models import full_size_set

    models = full_size_set(args.models)
    songs = music(args.music)
    # Not niced (IMAGE2MOOD_INDEX_NICE): on a shared machine a niced run would time the neighbours' work.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMAGE2MOOD_MODELS": str(models), "PYTHONPATH": str(ROOT),
           "IMAGE2MOOD_INDEX_NICE": "0"}
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    skip = set(args.skip.split(","))
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; {SONGS} songs of {SECONDS} s")
    if args.baseline:
        against_revision(args, env, work, skip)
        print(f"load average after: {os.getloadavg()}")
        return

    rows = []
    if "default" not in skip:
        wall, rss, last = run_measured([str(CLI), "index", str(args.music), "--store", str(work / "s1")], env)
        rows.append(("index (6 windows, decoded ahead, one batch a song)", wall, rss, last, TARGET_SONGS_MIN))
    if "naive" not in skip:
        wall, rss, last = run_measured([sys.executable, __file__, "--naive-loop", str(args.music)], env)
        rows.append(("naive loop (6 windows, one window a call)", wall, rss, last, None))
    if "all" not in skip:
        wall, rss, last = run_measured([str(CLI), "index", str(args.music), "--store", str(work / "s2"),
                                        "--windows", "all"], env)
        rows.append(("index --windows all (every 10-s window)", wall, rss, last, TARGET_ALL_SONGS_MIN))
    for name, wall, rss, last, target in rows:
        goal = f"   (target >= {target})" if target else ""
        print(f"  {name:<52} {wall:6.1f} s  {SONGS / wall * 60:6.1f} songs/min  peak RSS {rss:.2f} GB{goal}  [{last}]")
    if len(rows) >= 2 and "default" not in skip and "naive" not in skip:
        print(f"  speed-up over the naive loop: {rows[1][1] / rows[0][1]:.2f}x")

    if "rerun" not in skip:
        library, store_path, hashing = rerun_library(songs, work, env)
        wall, rss, last = run_measured([str(CLI), "index", str(library), "--store", str(store_path)], env)
        print(f"  rerun over {RERUN} unchanged songs: {wall:.2f} s from process start, peak RSS {rss:.2f} GB "
              f"(target <= {TARGET_RERUN_S} s)  [{last}]")
        work_s, summary = rerun_in_process(library, store_path)
        print(f"  the same rerun's own work, in-process (open the store, walk, stat, compare): {work_s:.2f} s  [{summary}]")
        print(f"  hashing every one of them instead (the old rerun's reading, in-process, page cache hot: "
              f"{len(songs)} distinct files): {hashing:.2f} s")
    print(f"load average after: {os.getloadavg()}")


def against_revision(args: argparse.Namespace, env: dict[str, str], work: Path, skip: set[str]) -> None:
    """``index`` of this tree against ``args.baseline``'s, alternating, from process start: songs/min."""
    from baseline import code_env, revision_tree, side_by_side

    parts = [(name, extra) for name, extra in (("default", []), ("all", ["--windows", "all"])) if name not in skip]
    with revision_tree(args.baseline) as tree:
        rows = []
        for name, extra in parts:
            best = {side: [0.0, 0.0] for side in ("candidate", "baseline")}  # songs/min, songs per CPU minute
            for round_ in range(args.rounds):
                for side, code in (("candidate", ROOT), ("baseline", tree)):
                    store = work / f"{name}-{side}-{round_}"
                    wall, rss, cpu, last = run_measured_cpu(
                        [str(CLI), "index", str(args.music), "--store", str(store), *extra], code_env(code, env))
                    print(f"  {name:<8} {side:<9} {wall:6.1f} s  {SONGS / wall * 60:6.1f} songs/min  CPU {cpu:6.1f} s  "
                          f"peak RSS {rss:.2f} GB  load {os.getloadavg()[0]:.1f}  [{last}]")
                    best[side] = [max(best[side][0], SONGS / wall * 60), max(best[side][1], SONGS / cpu * 60)]
            label = f"index {' '.join(extra) or '(6 windows)'}"
            rows += [(f"{label}: songs/min, best", best["candidate"][0], best["baseline"][0]),
                     (f"{label}: songs per CPU minute, best", best["candidate"][1], best["baseline"][1])]
        print(f"\nindex against {args.baseline}:")
        side_by_side(rows, "", higher_is_better=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[3:])
    elif sys.argv[1:2] == ["--naive-loop"]:
        naive_loop(Path(sys.argv[2]))
    else:
        main()
