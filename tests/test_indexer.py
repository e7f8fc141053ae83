"""The indexer end to end with the tiny model set: tags, failures, reruns, changes, prune, kill -9."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CLI, run_cli
from image2mood.config import Settings
from image2mood.library import embed, file_facts, prepare, song_id
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from image2mood_cli.main import cli
from media import write_tone

TAGGED = {
    "flac/one.flac": {"title": "Rain Song", "artist": "Ana", "album": "Weather", "genre": "Ambient"},
    "ogg/two.ogg": {"title": "Party Night", "artist": "Ben", "album": "Lights", "genre": "Dance"},
    "mp3/three.mp3": {"title": "Sunset Drive", "artist": "Ana", "album": "Weather", "genre": "Pop"},
}
GOOD = len(TAGGED) + 1  # plus one untagged WAV


def make_library(root: Path) -> Path:
    """Three tagged songs in three formats, one untagged WAV, a corrupt FLAC and a text file named .mp3."""
    for i, (name, tags) in enumerate(TAGGED.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(root / name, seconds=4 + 3 * i, freq=220 * (i + 1), tags=tags)
    write_tone(root / "plain song.wav", seconds=12.5, freq=330)
    corrupt = root / "flac" / "corrupt.flac"
    corrupt.write_bytes((root / "flac" / "one.flac").read_bytes()[:200] + b"\x00garbage" * 500)
    (root / "notes.mp3").write_text("this is not music\n")
    return root


def invoke(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI in this process; returns stdout and stderr together."""
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def summary(output: str) -> tuple[int, int, int, int]:
    match = re.search(r"indexed (\d+), unchanged (\d+), removed (\d+), failed (\d+)", output)
    assert match, output
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def stored(store: Path) -> dict[str, object]:
    with open_store(str(store), info=None, create=False) as s:
        return {song.path: song for song in s.scroll(with_vectors=True)}


@pytest.fixture
def env(tiny_models: Path) -> dict[str, str]:
    return {"IMAGE2MOOD_MODELS": str(tiny_models), "IMAGE2MOOD_WINDOWS_PER_SONG": "2"}


def test_index_reports_bad_files_stores_tags_and_skips_unchanged(tmp_path: Path, env: dict[str, str]) -> None:
    library, store = make_library(tmp_path / "music"), tmp_path / "store"
    out = invoke(["index", str(library), "--store", str(store)], env)
    assert summary(out) == (GOOD, 0, 0, 2)
    assert "corrupt.flac" in out and "notes.mp3" in out

    songs = stored(store)
    assert len(songs) == GOOD
    for name, tags in TAGGED.items():
        song = songs[str((library / name).resolve())]
        assert (song.title, song.artist, song.album, song.genre) == tuple(tags.values())
        assert song.id == song_id(library / name)
        assert song.vector.dtype == np.float32 and abs(np.linalg.norm(song.vector) - 1) < 1e-5
    plain = songs[str((library / "plain song.wav").resolve())]
    assert plain.title == "plain song" and plain.artist is None
    assert abs(plain.duration - 12.5) < 0.1

    listing = invoke(["songs", "--store", str(store), "--json"], env)
    assert sorted(json.loads(line)["title"] for line in listing.splitlines() if line.startswith("{")) == sorted(
        s.title for s in songs.values())

    assert summary(invoke(["index", str(library), "--store", str(store)], env)) == (0, GOOD, 0, 2)


def test_same_file_gives_the_same_vector_bit_for_bit(tmp_path: Path, settings: Settings) -> None:
    path = write_tone(tmp_path / "song.flac", seconds=23, freq=440)
    encoder = clap_encoder(settings)
    first = embed(prepare(file_facts(path), settings, encoder.sample_rate), encoder).vector
    second = embed(prepare(file_facts(path), settings, encoder.sample_rate), encoder).vector
    assert np.array_equal(first, second)


def test_changed_file_is_reembedded_moved_file_reuses_its_vector_and_prune_removes(
        tmp_path: Path, env: dict[str, str]) -> None:
    library, store = make_library(tmp_path / "music"), tmp_path / "store"
    invoke(["index", str(library), "--store", str(store)], env)
    before = stored(store)

    changed = library / "ogg" / "two.ogg"
    write_tone(changed, seconds=9, freq=1500, tags=TAGGED["ogg/two.ogg"])
    moved_from, moved_to = library / "plain song.wav", library / "moved" / "plain song.wav"
    moved_to.parent.mkdir()
    shutil.move(moved_from, moved_to)

    assert summary(invoke(["index", str(library), "--store", str(store)], env)) == (2, GOOD - 2, 0, 2)
    after = stored(store)
    key = str(changed.resolve())
    assert after[key].content_hash != before[key].content_hash
    assert not np.allclose(after[key].vector, before[key].vector)
    assert np.array_equal(after[str(moved_to.resolve())].vector, before[str(moved_from.resolve())].vector)
    assert str(moved_from.resolve()) in after  # without --prune the vanished file stays

    assert summary(invoke(["index", str(library), "--store", str(store), "--prune"], env)) == (0, GOOD, 1, 2)
    assert sorted(stored(store)) == sorted(k for k in after if k != str(moved_from.resolve()))


def test_kill_9_mid_run_then_rerun_stores_every_song_exactly_once(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    library, store = tmp_path / "music", tmp_path / "store"
    total = 40  # long enough a run that the kill lands mid-way even when progress prints lag
    library.mkdir()
    for i in range(total):
        write_tone(library / f"song{i:02d}.flac", seconds=6, freq=200 + 40 * i)
    env = {**cli_env, "IMAGE2MOOD_UPSERT_BATCH": "1", "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}
    proc = subprocess.Popen([CLI, "index", str(library), "--store", str(store)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()
    progressed = threading.Event()

    def watch() -> None:
        while chunk := proc.stderr.read1(256):
            seen.extend(chunk)
            done = [int(n) for n in re.findall(rb"(\d+)/%d" % total, bytes(seen))]
            if done and max(done) >= 3:
                progressed.set()

    threading.Thread(target=watch, daemon=True).start()
    assert progressed.wait(timeout=240), seen.decode(errors="replace")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    committed = stored(store)
    assert 2 <= len(committed) < total  # batches written before the kill survived; the run was cut short

    rerun = run_cli(["index", str(library), "--store", str(store)], env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    indexed, unchanged, removed, failed = summary(rerun.stdout)
    assert (indexed + unchanged, removed, failed) == (total, 0, 0)
    assert unchanged == len(committed)  # every song written before the kill was kept, none redone
    with open_store(str(store), info=None, create=False) as s:
        songs = list(s.scroll())
    assert len(songs) == total == len({song.id for song in songs}) == len({song.path for song in songs})
