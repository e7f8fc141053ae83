"""Strict durability: twenty SIGKILLs at random moments, and no song reported stored is ever lost.

`image2mood index -v` prints "stored: PATH" for each song only after the store's write of its batch
has returned. After each kill the store is opened and must hold every song so reported (in this or
an earlier round); then a random half of the stored songs is deleted, so the next round has work to
be killed in. A last, uninterrupted run must end with each song stored exactly once.

Qdrant Edge's write-ahead log alone survives SIGKILL (its pages are the kernel's once written), so
the store is also opened from a copy without its log: the songs must be in the flushed segments,
which is what the embedded store's flush after each write guarantees (and what survives power loss).
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import CLI, run_cli
from image2mood.store import open_store
from image2mood.store.embedded import SHARD_DIR
from media import write_tone

ROUNDS = 20
SONGS = 24


def stored_paths(store: Path) -> dict[str, str]:
    """Path → id of every song in the store (opened after the indexer died, so its lock is free)."""
    with open_store(str(store), info=None, create=False) as s:
        return {song.path: song.id for song in s.scroll()}


def flushed_paths(store: Path, scratch: Path) -> set[str]:
    """The songs in the store's flushed segments: a copy of it, opened without its write-ahead log."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(store, scratch)
    for entry in (scratch / SHARD_DIR / "wal").iterdir():  # Qdrant Edge's log, replayed on load
        if entry.is_dir():  # a half-done atomic write the kill left behind (the store itself ignores it)
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return set(stored_paths(scratch))


def index_until_killed(args: list[str], env: dict[str, str], cwd: Path, rng: random.Random,
                       to_store: int) -> tuple[int, list[str]]:
    """Run `image2mood index -v`; SIGKILL it at a random moment. Returns its exit status and the songs it
    reported stored. Most kills land mid-run: 0-50 ms after a random one of the first ``to_store - 1``
    songs is reported (whatever the machine's speed); some at a random moment of the start-up (store
    opened, songs decoding, model loading)."""
    proc = subprocess.Popen([CLI, *args, "-v"], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    lines: list[str] = []
    wanted = rng.randint(1, max(1, to_store - 1))
    reached = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if raw.endswith(b"\n"):
                lines.append(raw.decode().rstrip("\n"))
                if len(lines) >= wanted:
                    reached.set()
        reached.set()  # the run ended first

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, 4.0))
    else:
        reached.wait(timeout=240)
        time.sleep(rng.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    status = proc.wait(timeout=60)
    reader.join(timeout=60)
    return status, [line.removeprefix("stored: ") for line in lines if line.startswith("stored: ")]


def test_twenty_kills_never_lose_a_song_reported_stored(tmp_path: Path, cli_env: dict[str, str]) -> None:
    library, store = tmp_path / "music", tmp_path / "store"
    library.mkdir()
    paths = {str(write_tone(library / f"song{i:02d}.wav", 2, 200 + 37 * i).resolve()) for i in range(SONGS)}
    env = {**cli_env, "IMAGE2MOOD_UPSERT_BATCH": "2", "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}
    args = ["index", str(library), "--store", str(store)]
    rng = random.Random(20)
    durable: set[str] = set()  # every song the store must hold now
    killed_mid_run = 0
    for _ in range(ROUNDS):
        status, reported = index_until_killed(args, env, tmp_path, rng, SONGS - len(durable))
        killed_mid_run += status == -signal.SIGKILL and bool(reported)
        durable |= set(reported)
        if not store.exists():
            assert not durable
            continue
        flushed = flushed_paths(store, tmp_path / "flushed")  # first: opening the store replays and flushes its log
        assert durable <= flushed, f"reported stored but not flushed: {sorted(durable - flushed)}"
        now = stored_paths(store)
        assert durable <= set(now), f"lost after a kill: {sorted(durable - set(now))}"
        assert set(now) <= paths
        gone = rng.sample(sorted(now), len(now) // 2)
        with open_store(str(store), info=None, create=False) as s:
            s.delete([now[path] for path in gone])
        durable = set(now) - set(gone)
    assert killed_mid_run >= ROUNDS // 2  # most kills landed while songs were being stored

    final = run_cli(args, env, tmp_path)
    assert final.returncode == 0, final.stderr
    with open_store(str(store), info=None, create=False) as s:
        songs = list(s.scroll())
    assert sorted(song.path for song in songs) == sorted(paths)  # each song once
    assert len({song.id for song in songs}) == SONGS
