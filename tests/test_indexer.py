"""The indexer end to end with the tiny model set: tags, failures, reruns, changes, prune, kill -9."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CLI, run_cli
from image2mood.config import Settings
from image2mood.errors import ModelLoadError
from image2mood.library import embed, file_facts, prepare, song_id, store_info
from image2mood.models.clap import ClapEncoder
from image2mood.models.clap_facts import read_clap_facts
from image2mood.models.factory import clap_encoder
from image2mood.models.resolve import resolve_model
from image2mood.paths import stored_path
from image2mood.store import StoreInfo, open_store
from image2mood_cli.main import cli
from indexer import pipeline
from indexer.pipeline import Indexer, PendingEncoder
from media import write_damaged_mp3, write_tone

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


def test_bad_entries_are_reported_and_the_run_goes_on(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A symlink loop, a dangling symlink and a named pipe are each a reported skip (a pipe is never opened:
    opening one waits for a writer forever); a folder named like a song is walked, a non-UTF-8 name indexed
    (tests/test_names.py has the rest of that story)."""
    library, store = tmp_path / "music", tmp_path / "store"
    (library / "album.mp3").mkdir(parents=True)
    good = [write_tone(library / "a.flac", 3, 300), write_tone(library / "album.mp3" / "inner.wav", 3, 500)]
    (library / "loop.mp3").symlink_to(library / "loop.mp3")
    (library / "dangling.ogg").symlink_to(library / "nowhere.ogg")
    os.mkfifo(library / "pipe.mp3")
    latin1 = os.fsencode(library) + b"/caf\xe9.wav"
    os.rename(write_tone(tmp_path / "latin1.wav", 3, 700), latin1)
    good.append(Path(os.fsdecode(latin1)))
    result = run_cli(["index", str(library), "--store", str(store)], cli_env, tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == (3, 0, 0, 3)
    failed = [line for line in result.stderr.splitlines() if line.lstrip().startswith("failed:")]
    for name, reason in [("loop.mp3", "a symlink loop"), ("dangling.ogg", "a symlink that points nowhere"),
                         ("pipe.mp3", "a named pipe (FIFO), not a file")]:
        assert sum(str(library / name) in line and reason in line for line in failed) == 1, (name, failed)
    assert sorted(stored(store)) == sorted(stored_path(p.resolve()) for p in good)


_INDEX_AND_REPORT = """
import json, sys
from pathlib import Path
from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models.factory import clap_encoder
from image2mood.store import open_store
from indexer.pipeline import Indexer

settings = Settings(_env_file=None, models=sys.argv[1], store=sys.argv[2])
encoder = clap_encoder(settings)
with open_store(settings.store, info=store_info(encoder, settings)) as s:
    report = Indexer(s, encoder, settings, warn=lambda line: None).run([Path(sys.argv[3])])
    stored = [song.path for song in s.scroll()]
print(json.dumps({"indexed": report.indexed, "failed": report.failed, "stored": stored,
                  "failures": [[str(path), why] for path, why in report.failures]}))
"""
# Root reads a file whatever its mode, through these two capabilities: without them it obeys the mode.
AS_ROOT_WITHOUT_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                       "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_file_is_a_reported_skip(tmp_path: Path, settings: Settings, tiny_models: Path) -> None:
    """Run as root too (CI is root): the indexer then runs without root's power to read any file."""
    library = tmp_path / "music"
    library.mkdir()
    good = write_tone(library / "good.flac", 3, 300)
    locked = write_tone(library / "locked.flac", 3, 400)
    locked.chmod(0)
    prefix = AS_ROOT_WITHOUT_DAC if os.geteuid() == 0 else []
    run = subprocess.run([*prefix, sys.executable, "-c", _INDEX_AND_REPORT, str(tiny_models), settings.store,
                          str(library)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "IMAGE2MOOD_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["stored"] == [str(good.resolve())]
    assert (report["indexed"], report["failed"]) == (1, 1)
    assert report["failures"] == [[str(locked), f"cannot decode {locked}: permission denied"]]


def test_prune_touches_only_the_folders_of_the_run_and_refuses_an_empty_or_missing_one(
        tmp_path: Path, env: dict[str, str], cli_env: dict[str, str]) -> None:
    home, drive, store = tmp_path / "home", tmp_path / "drive", tmp_path / "store"
    cli_env = {**cli_env, **env}
    home.mkdir()
    drive.mkdir()
    for i in range(2):
        write_tone(home / f"h{i}.flac", 3, 300 + 100 * i)
        write_tone(drive / f"d{i}.flac", 3, 600 + 100 * i)
    invoke(["index", str(home), str(drive), "--store", str(store)], env)
    everything = sorted(stored(store))
    assert len(everything) == 4
    shutil.rmtree(drive)
    drive.mkdir()  # the drive is unmounted: its mount point is an empty folder
    (home / "h1.flac").unlink()

    for args in ([str(home), str(drive)], [str(home), str(tmp_path / "gone")]):
        refused = run_cli(["index", *args, "--store", str(store), "--prune"], cli_env, tmp_path)
        assert refused.returncode != 0
        assert "refusing to prune" in refused.stderr or "does not exist" in refused.stderr, refused.stderr
        assert sorted(stored(store)) == everything  # nothing removed
    assert "an empty folder" in run_cli(["index", str(home), str(drive), "--store", str(store), "--prune"],
                                        cli_env, tmp_path).stderr

    dry = invoke(["index", str(home), "--store", str(store), "--prune", "--dry-run"], env)
    assert f"would remove: {(home / 'h1.flac').resolve()}" in dry and "d0.flac" not in dry
    assert sorted(stored(store)) == everything

    out = invoke(["index", str(home), "--store", str(store), "--prune"], env)
    assert summary(out) == (0, 1, 1, 0)
    assert f"removing: {(home / 'h1.flac').resolve()}" in out
    assert sorted(stored(store)) == sorted(p for p in everything if not p.endswith("h1.flac"))  # the drive's stay


def test_a_locked_or_mismatched_store_fails_before_clap_loads(
        tmp_path: Path, tiny_models: Path, cli_env: dict[str, str]) -> None:
    library, store = tmp_path / "music", tmp_path / "store"
    library.mkdir()
    write_tone(library / "a.flac", 2, 440)
    info = StoreInfo(clap_model=str(tiny_models / "clap"), clap_fingerprint=None, dim=8, windowing="6x10.0s",
                     preprocessing="any")
    with open_store(str(store), info=info):  # held here: flock conflicts across open files, as across processes
        locked = run_cli(["index", str(library), "--store", str(store)], cli_env, tmp_path)
    assert locked.returncode == 1
    assert "is open in another image2mood process" in locked.stderr
    assert "loading CLAP" not in locked.stderr

    other = run_cli(["index", str(library), "--store", str(store)],
                    {**cli_env, "IMAGE2MOOD_WINDOWS_PER_SONG": "2"}, tmp_path)
    assert other.returncode == 1
    assert "cannot be mixed" in other.stderr and "windowing 2x10.0s" in other.stderr
    assert "loading CLAP" not in other.stderr


def test_decoder_notes_are_reported_once_with_the_file(
        tmp_path: Path, settings: Settings, capfd: pytest.CaptureFixture[str]) -> None:
    """mpg123 prints its resync notes to fd 2 from C; they belong in the report, with the file's path."""
    library = tmp_path / "music"
    library.mkdir()
    damaged = write_damaged_mp3(library / "damaged.mp3")
    good = write_tone(library / "good.flac", 3, 300)
    encoder, lines = clap_encoder(settings), []
    with open_store(settings.store, info=store_info(encoder, settings)) as s:
        report = Indexer(s, encoder, settings, warn=lines.append).run([library])
        assert [song.path for song in s.scroll()] == [str(good.resolve())]
    noted = [line for line in lines if "Illegal Audio-MPEG-Header" in line]
    assert len(noted) == 1 and str(damaged) in noted[0], lines
    assert noted[0].count("Trying to resync") == 1
    assert report.failed == 1
    assert "Illegal Audio-MPEG-Header" not in capfd.readouterr().err


def _pending(settings: Settings, on_load: Callable[[], None]) -> PendingEncoder:
    facts = read_clap_facts(resolve_model("clap", settings.model_spec("clap")))

    def load() -> ClapEncoder:
        on_load()
        return clap_encoder(settings)

    return PendingEncoder(facts, load)


def test_clap_facts_read_without_torch_match_the_loaded_model(settings: Settings) -> None:
    facts = read_clap_facts(resolve_model("clap", settings.model_spec("clap")))
    encoder = clap_encoder(settings)
    assert (facts.name, facts.dim, facts.sample_rate) == (encoder.name, encoder.dim, encoder.sample_rate)
    assert store_info(facts, settings) == store_info(encoder, settings)
    probe = "import sys, image2mood.models.clap_facts, indexer.pipeline; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_a_first_run_loads_the_model_as_songs_decode_and_a_run_without_new_songs_never_loads_it(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    library = make_library(tmp_path / "music")
    decoded: list[Path] = []
    monkeypatch.setattr(pipeline, "prepare", lambda facts, *a: (prepare(facts, *a), decoded.append(facts.path))[0])
    started: list[int] = []
    start = PendingEncoder.start
    monkeypatch.setattr(PendingEncoder, "start", lambda self: started.append(len(decoded)) or start(self))
    loads: list[int] = []
    encoder = _pending(settings, lambda: time.sleep(0.3) or loads.append(len(decoded)))  # a slow load
    with open_store(settings.store, info=store_info(encoder.facts, settings)) as s:
        assert Indexer(s, encoder, settings, warn=lambda line: None).run([library]).indexed == GOOD
        assert started[0] == 0  # an empty store: asked for before the first song had decoded
        assert len(loads) == 1 and loads[0] >= 1  # songs decoded while it loaded
        shutil.copy(library / "plain song.wav", library / "copy of plain song.wav")  # new path, known content
        loads.clear()
        again = Indexer(s, _pending(settings, lambda: loads.append(0)), settings, warn=lambda line: None).run([library])
    assert (again.indexed, again.unchanged, loads) == (1, GOOD, [])  # the copy took the stored vector


@pytest.mark.parametrize("misstated", [{"sample_rate": 24_000}, {"dim": 3}])
def test_a_model_whose_files_misstate_it_is_refused(tmp_path: Path, settings: Settings,
                                                    misstated: dict[str, int]) -> None:
    library = make_library(tmp_path / "music")
    encoder = _pending(settings, lambda: None)
    encoder.facts = dataclasses.replace(encoder.facts, **misstated)
    with open_store(settings.store, info=store_info(encoder.facts, settings)) as s, \
            pytest.raises(ModelLoadError, match="fetch the model again"):
        Indexer(s, encoder, settings, warn=lambda line: None).run([library])


def test_several_embedding_workers_store_what_one_does_and_the_model_loads_once(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Songs embedded side by side (IMAGE2MOOD_INDEX_WORKERS) are the songs one worker stores, failures
    included; the workers that ask for the model while it loads wait for that one load."""
    import time

    library = make_library(tmp_path / "music")
    threads: set[str] = set()
    monkeypatch.setattr(pipeline, "embed", lambda *a: threads.add(threading.current_thread().name) or embed(*a))
    runs = {}
    for workers in (1, 3):
        loads: list[int] = []
        chosen = settings.model_copy(update={"index_workers": workers, "store": str(tmp_path / f"store{workers}")})
        encoder = _pending(chosen, lambda: loads.append(0) or time.sleep(0.3))  # a slow load: the others ask meanwhile
        with open_store(chosen.store, info=store_info(encoder.facts, chosen)) as s:
            report = Indexer(s, encoder, chosen, warn=lambda line: None).run([library])
            runs[workers] = {song.path: song for song in s.scroll(with_vectors=True, with_windows=True)}
        assert (report.indexed, report.failed, len(loads)) == (GOOD, 2, 1)
    assert len(threads) > 1  # the three workers did embed side by side
    assert runs[1].keys() == runs[3].keys()
    for path, song in runs[1].items():
        other = runs[3][path]
        assert (song.id, song.title, song.window_starts) == (other.id, other.title, other.window_starts)
        np.testing.assert_allclose(song.vector, other.vector, atol=1e-6)
        np.testing.assert_allclose(song.windows, other.windows, atol=1e-6)


def test_embedding_workers_and_their_torch_threads_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    auto = Settings(_env_file=None)
    assert pipeline.embed_workers(auto) == min(cores, pipeline.AUTO_WORKERS)
    assert pipeline.worker_threads(auto).threads == max(1, cores // min(cores, pipeline.AUTO_WORKERS))
    with monkeypatch.context() as mac:  # macOS has no sched_getaffinity: the CPU count stands in
        mac.delattr(os, "sched_getaffinity")
        mac.setattr(os, "cpu_count", lambda: 3)
        assert (pipeline.embed_workers(auto), pipeline.worker_threads(auto).threads) == (3, 1)
    assert pipeline.embed_workers(Settings(_env_file=None, device="cuda")) == 1
    assert pipeline.embed_workers(Settings(_env_file=None, index_workers=7)) == 7
    assert pipeline.worker_threads(Settings(_env_file=None, index_workers=7)).threads == 1
    assert pipeline.worker_threads(Settings(_env_file=None, threads=3)).threads == 3
