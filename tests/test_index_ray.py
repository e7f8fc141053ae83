"""`image2mood index ray` on a local Ray cluster started by the tests: the stages, the failures file, the same
vectors as `index`, reruns, faults (a killed worker, a killed driver), manifests and prefixes."""

from __future__ import annotations

import json
import signal
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from image2mood.config import Settings
from image2mood.store import open_store
from indexer.ray_index import RayOptions, failures_file
from indexer.ray_run import run
from tests.conftest import CLI, run_cli
from tests.media import write_tone

GOOD, BROKEN = 40, 3
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ray_session():
    """One local cluster for the in-process tests (2 CPUs, a small object store)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 << 20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 short songs in two folders and 3 broken files (text named .mp3, an empty .flac, a truncated .wav)."""
    root = tmp_path_factory.mktemp("catalogue")
    for disc in ("disc0", "disc1"):
        (root / disc).mkdir()
    for i in range(GOOD):
        write_tone(root / f"disc{i % 2}" / f"song{i:02d}.flac", seconds=3, freq=180 + 37 * i)
    (root / "disc0" / "notes.mp3").write_text("not music at all\n" * 50)
    (root / "disc1" / "empty.flac").write_bytes(b"")
    wav = write_tone(root / "disc1" / "cut.wav", seconds=2)
    wav.write_bytes(wav.read_bytes()[:30])
    return root


def stored(location: str) -> dict[str, object]:
    with open_store(location, info=None, create=False) as store:
        return {song.id: song for song in store.scroll(with_vectors=True)}


def summary(text: str) -> tuple[int, int, int, int]:
    found = re.search(r"indexed (\d+), unchanged (\d+), removed (\d+), failed (\d+)", text)
    assert found, text
    return tuple(map(int, found.groups()))


def test_ray_stores_every_good_song_once_reports_the_broken_and_reruns_as_a_no_op(
        ray_session, library: Path, tiny_models: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "ray-store"), windows_per_song=2)
    report = run([str(library)], settings, RayOptions(workers=1, batch_size=4), run_dir=tmp_path / "run")
    assert (report.indexed, report.unchanged, report.removed, report.failed) == (GOOD, 0, 0, BROKEN)
    failures = [json.loads(line) for line in failures_file(tmp_path / "run").read_text().splitlines()]
    assert sorted(Path(f["path"]).name for f in failures) == ["cut.wav", "empty.flac", "notes.mp3"]
    assert all(f["reason"] and f["path"] in f["reason"] for f in failures)
    by_ray = stored(settings.store)
    assert len(by_ray) == GOOD

    # the single-process indexer, same files, same settings: the same ids and vectors
    single = run_cli(["index", str(library), "--store", str(tmp_path / "single"), "--windows", "2"], cli_env, tmp_path)
    assert summary(single.stdout) == (GOOD, 0, 0, BROKEN), single.stderr
    by_index = stored(str(tmp_path / "single"))
    assert by_index.keys() == by_ray.keys()
    assert max(float(np.abs(by_ray[i].vector - by_index[i].vector).max()) for i in by_ray) <= 1e-5
    assert {(s.path, s.title, s.content_hash) for s in by_ray.values()} == \
        {(s.path, s.title, s.content_hash) for s in by_index.values()}

    again = run([str(library)], settings, RayOptions(), run_dir=tmp_path / "rerun")
    assert (again.indexed, again.unchanged, again.failed) == (0, GOOD, BROKEN)  # as `index`: tried again, reported again


def test_a_manifest_and_a_file_prefix_give_the_same_store_as_the_folder(
        ray_session, library: Path, tiny_models: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings = Settings(_env_file=None, models=tiny_models, windows_per_song=1)
    files = sorted(p for p in library.rglob("*") if p.is_file())
    manifest = tmp_path / "songs.parquet"
    pq.write_table(pa.table({"path": [str(p.relative_to(library)) for p in files]}), tmp_path / "rel.parquet")
    pq.write_table(pa.table({"path": [str(p) for p in files]}), manifest)
    (library / "songs-rel.parquet").write_bytes((tmp_path / "rel.parquet").read_bytes())  # paths relative to it
    try:
        results = {}
        for name, source in {"folder": str(library), "manifest": str(manifest),
                             "relative manifest": str(library / "songs-rel.parquet"),
                             "prefix": library.as_uri()}.items():
            where = tmp_path / name.replace(" ", "-")
            report = run([source], settings.model_copy(update={"store": str(where)}), RayOptions(batch_size=16),
                         run_dir=tmp_path / f"run-{where.name}")
            assert (report.indexed, report.failed) == (GOOD, BROKEN), name
            results[name] = {i: (s.path, s.title, s.vector.tobytes()) for i, s in stored(str(where)).items()}
    finally:
        (library / "songs-rel.parquet").unlink()
    assert results["manifest"] == results["folder"] == results["prefix"] == results["relative manifest"]


def test_manifest_ids_and_tags_win_and_the_server_store_takes_the_same_run(
        ray_session, library: Path, tiny_models: Path, tmp_path: Path) -> None:
    """A manifest's song_id and tags are what is stored; the run writes a Qdrant server store (qdrant-client's
    in-memory mode stands in for a server here: no Qdrant server installs on these machines)."""
    from image2mood.library import store_info
    from image2mood.models.clap_facts import read_clap_facts
    from image2mood.models.resolve import resolve_model
    from image2mood.store.base import canonical_id

    songs = sorted(library.rglob("song*.flac"))[:6]
    manifest = tmp_path / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(p), "song_id": f"CAT-{i}", "artist": "Ana", "title": f"T{i}"})
                                + "\n" for i, p in enumerate(songs)))
    settings = Settings(_env_file=None, models=tiny_models, store=":memory:", windows_per_song=1)
    info = store_info(read_clap_facts(resolve_model("clap", settings.model_spec("clap"))), settings)
    with open_store(":memory:", info=info) as server:
        report = run([str(manifest)], settings, RayOptions(), run_dir=tmp_path / "run", store=server)
        assert (report.indexed, report.failed) == (6, 0)
        kept = {s.id: s for s in server.scroll()}
        again = run([str(manifest)], settings, RayOptions(), run_dir=tmp_path / "rerun", store=server)
        assert (again.indexed, again.unchanged) == (0, 6)
    assert sorted((s.artist, s.title) for s in kept.values()) == [("Ana", f"T{i}") for i in range(6)]
    assert "CAT-0" not in kept and canonical_id(next(iter(kept))) == next(iter(kept))  # a UUID made from it


def test_the_sink_writes_in_acknowledged_batches_retries_and_reports_failures(
        library: Path, tiny_models: Path, tmp_path: Path) -> None:
    """The Datasink's write (as a Ray write task runs it) against a server store: batches of upsert_batch,
    a failed upsert retried after a back-off, failures returned to the driver."""
    import pyarrow as pa

    from image2mood.library import store_info
    from image2mood.models.clap_facts import read_clap_facts
    from image2mood.models.factory import clap_encoder
    from image2mood.models.resolve import resolve_model
    from indexer.ray_index import Embedder, QdrantSink, decode
    from indexer.ray_sources import list_sources

    settings = Settings(_env_file=None, models=tiny_models, store=":memory:", windows_per_song=1, upsert_batch=4)
    info = store_info(read_clap_facts(resolve_model("clap", settings.model_spec("clap"))), settings)
    items = list_sources([str(library / "disc1")])  # 20 songs and 2 broken files
    rate = clap_encoder(settings).sample_rate
    embedded = Embedder(settings)({"payload": [decode({"item": i}, settings, rate)["payload"] for i in items]})
    blocks = [pa.table({"payload": embedded["payload"][:9]}), pa.table({"payload": embedded["payload"][9:]})]

    with open_store(":memory:", info=info) as server:
        calls, naps = [], []
        real_upsert = server.upsert

        def flaky(songs):
            calls.append(len(songs))
            if len(calls) == 2:
                raise ConnectionError("the server went away for a moment")
            real_upsert(songs)

        server.upsert, server.close = flaky, lambda: None  # the sink closes what it opened; this one is ours
        result = QdrantSink(settings, info, opener=lambda s, i: server, sleep=naps.append).write(blocks, ctx=None)
        assert result["stored"] == 20 == server.count()
        assert sorted(Path(path).name for path, _ in result["failures"]) == ["cut.wav", "empty.flac"]
    assert calls[:3] == [4, 4, 4] and naps == [0.5]  # the second batch failed once, waited, went again


def _index_ray(library: Path, store: Path, run_dir: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """`image2mood index ray` on its own local cluster, printing `stored:` as each song becomes durable."""
    return subprocess.Popen([CLI, "index", "ray", str(library), "--store", str(store), "--windows", "1", "-v",
                             "--run-dir", str(run_dir)], env={**env, "IMAGE2MOOD_UPSERT_BATCH": "1"}, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _after_stored(proc: subprocess.Popen, count: int) -> list[str]:
    """Read the run's stdout until ``count`` songs are stored durably; the lines read so far."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if sum(x.startswith("stored:") for x in lines) >= count:
                done.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout=300), "".join(lines) + proc.stderr.read()
    return lines


def _finish(proc: subprocess.Popen, lines: list[str]) -> str:
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return "".join(lines) + out


def test_a_killed_worker_is_replaced_and_nothing_is_lost_or_duplicated(
        library: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    import psutil

    proc = _index_ray(library, tmp_path / "store", tmp_path / "run", cli_env, tmp_path)
    lines = _after_stored(proc, 2)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if "MapWorker" in " ".join(p.cmdline())]
    assert workers, [" ".join(p.cmdline())[:80] for p in psutil.Process(proc.pid).children(recursive=True)]
    os.kill(workers[0].pid, signal.SIGKILL)  # the CLAP actor, mid-run
    assert summary(_finish(proc, lines)) == (GOOD, 0, 0, BROKEN)
    songs = stored(str(tmp_path / "store"))
    assert len(songs) == GOOD == len({s.path for s in songs.values()})


def test_a_killed_driver_loses_at_most_its_batch_and_a_rerun_finishes_without_duplicates(
        library: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _index_ray(library, tmp_path / "store", tmp_path / "run", cli_env, tmp_path)
    _after_stored(proc, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the cluster it started, whatever Ray left of it
    except ProcessLookupError:
        pass
    kept = stored(str(tmp_path / "store"))
    assert 3 <= len(kept) < GOOD
    rerun = _index_ray(library, tmp_path / "store", tmp_path / "rerun", cli_env, tmp_path)
    indexed, unchanged, removed, failed = summary(_finish(rerun, []))
    assert (indexed + unchanged, unchanged, failed) == (GOOD, len(kept), BROKEN)
    songs = stored(str(tmp_path / "store"))
    assert len(songs) == GOOD == len({s.path for s in songs.values()})
    assert {s.vector.tobytes() for i, s in songs.items() if i in kept} == {s.vector.tobytes() for s in kept.values()}
