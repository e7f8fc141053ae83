"""File names that are not UTF-8 (CP949, Latin-1) are indexed, listed readably, played and pruned; names and
tags holding terminal escapes reach no CLI line raw."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import run_cli
from image2mood import playlists
from image2mood.config import Settings
from image2mood.library import song_id
from image2mood.paths import local_path, shown_path, stored_path
from image2mood.store import open_store
from image2mood.text import json_line, printable, readable
from media import write_tone
from service.app import create_app

KOREAN, FOLDER, LATIN, SEA = "사랑 노래", "가요", "Café Müller", "바다"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what must never reach a terminal (tab, newline aside)


def named(path: bytes, seconds: float, freq: float, tags: dict[str, str] | None = None) -> bytes:
    """A tone at the bytes path ``path``: written under a plain name, then moved there (libsndfile opens only
    UTF-8 names, and the test should not lean on the code under test to write its files)."""
    folder, _, name = path.rpartition(b"/")
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        plain = write_tone(Path(staging, "tone." + name.rpartition(b".")[2].decode()), seconds, freq, tags=tags)
        shutil.move(os.fsencode(plain), path)
    return path


def make_library(root: Path) -> dict[str, bytes]:
    """A CP949 name, a Latin-1 name in a CP949 folder beside a UTF-8 name that reads the same, a tagged WAV
    with a Latin-1 name (its RIFF tags read through the open file), and an M4A (decoded by ffmpeg) with a
    CP949 name."""
    music = os.fsencode(root)
    folder = music + b"/" + FOLDER.encode("cp949")
    return {
        "korean": named(music + b"/" + KOREAN.encode("cp949") + b".flac", 3, 300),
        "latin": named(folder + b"/" + LATIN.encode("latin-1") + b".flac", 3, 400),
        "twin": named(folder + b"/" + LATIN.encode("utf-8") + b".flac", 3, 500),
        "tagged": named(music + b"/" + "naïve.wav".encode("latin-1"), 3, 600, {"title": "Naive Tune", "artist": "Zoé"}),
        "sea": named(music + b"/" + SEA.encode("cp949") + b".m4a", 3, 700),
    }


def summary(output: str) -> tuple[int, ...]:
    match = re.search(r"indexed (\d+), unchanged (\d+), removed (\d+), failed (\d+)", output)
    assert match, output
    return tuple(int(g) for g in match.groups())


def listed(store: Path, env: dict[str, str], cwd: Path) -> list[dict]:
    result = run_cli(["songs", "--json", "--store", str(store)], env, cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}


def test_readable_decodes_cp949_then_latin1_per_component_and_printable_escapes_controls() -> None:
    name = os.fsdecode(b"/m/" + FOLDER.encode("cp949") + b"/" + LATIN.encode("latin-1") + b"\x9b.flac")
    assert readable(name) == f"/m/{FOLDER}/{LATIN}\x9b.flac"
    assert printable(name) == f"/m/{FOLDER}/{LATIN}\\x9b.flac"
    assert printable("a\x1b[31mb\x85c\x00\x7f\t\n\u2028\ud800é가") == "a\\x1b[31mb\\x85c\\x00\\x7f\\x09\\x0a\\u2028\\ud800é가"
    assert readable("plain é") == "plain é"
    value = {"title": "\x1b[31mred\x85\u2028가"}
    assert RAW_CONTROLS.search(json_line(value)) is None and "\u2028" not in json_line(value)
    assert json.loads(json_line(value)) == value and "가" in json_line(value)


def test_stored_paths_round_trip_every_name_and_keep_utf8_ones_as_they_are() -> None:
    for raw in (b"/m/" + KOREAN.encode("cp949") + b" 100%.flac", b"/m/" + LATIN.encode("latin-1") + b".flac",
                b"/m/file:%41.flac", b"/m/\xff\xfe\x80.flac"):
        path = Path(os.fsdecode(raw))
        stored = stored_path(path)
        stored.encode("utf-8")  # what the store's JSON payload needs
        assert os.fsencode(local_path(stored)) == raw
    assert stored_path(Path(f"/m/{KOREAN}.flac")) == f"/m/{KOREAN}.flac"
    assert local_path(f"/m/{KOREAN}%41.flac") == Path(f"/m/{KOREAN}%41.flac")
    assert shown_path(stored_path(Path(os.fsdecode(b"/m/" + KOREAN.encode("cp949") + b".flac")))) == f"/m/{KOREAN}.flac"
    assert shown_path("subsonic://host:8790/song-1") == "subsonic://host:8790/song-1"


def test_names_that_are_not_utf8_are_indexed_listed_played_and_pruned(
        tmp_path: Path, env: dict[str, str], tiny_models: Path) -> None:
    music, store = tmp_path / "music", tmp_path / "store"
    files = make_library(music)
    result = run_cli(["index", str(music), "--store", str(store)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == (5, 0, 0, 0), result.stderr

    # Listed with readable names, and each stored path names its file's exact bytes.
    songs = listed(store, env, tmp_path)
    assert sorted(s["title"] for s in songs) == sorted([KOREAN, LATIN, LATIN, "Naive Tune", SEA])
    assert next(s for s in songs if s["title"] == "Naive Tune")["artist"] == "Zoé"
    by_bytes = {os.fsencode(local_path(s["path"])): s for s in songs}
    assert set(by_bytes) == set(files.values())
    for raw, song in by_bytes.items():
        assert song["id"] == song_id(Path(os.fsdecode(raw)))  # from the path: stable, and unique per name
    assert len({s["id"] for s in songs}) == 5
    text = run_cli(["songs", "--store", str(store)], env, tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert sum(line.startswith(f"? - {KOREAN}  ") and line.endswith(f"{music}/{KOREAN}.flac") for line in lines) == 1
    assert sum(line.startswith(f"? - {LATIN}  ") and line.endswith(f"{music}/{FOLDER}/{LATIN}.flac")
               for line in lines) == 2  # the Latin-1 name and the UTF-8 one read alike, and are two songs
    assert sum(line.startswith("Zoé - Naive Tune") and line.endswith(f"{music}/naïve.wav") for line in lines) == 1
    assert sum(line.startswith(f"? - {SEA}  ") and line.endswith(f"{music}/{SEA}.m4a") for line in lines) == 1

    # Played through /audio/<id> (the page's titles and a playlist's are the readable ones too).
    settings = Settings(_env_file=None, models=tiny_models, store=str(store), windows_per_song=1)
    app = create_app(settings)
    try:
        client = app.test_client()
        for raw, song in by_bytes.items():
            body = Path(os.fsdecode(raw)).read_bytes()
            response = client.get(f"/audio/{song['id']}")
            assert response.status_code == 200 and response.data == body, song
            part = client.get(f"/audio/{song['id']}", headers={"Range": "bytes=10-99"})
            assert part.status_code == 206 and part.data == body[10:100]
        korean = by_bytes[files["korean"]]
        assert client.get(f"/api/songs/{korean['id']}/similar").get_json()["song"]["title"] == KOREAN
        with_store = app.extensions["image2mood"]
        stored = with_store.find([s["id"] for s in songs])
    finally:
        app.extensions["image2mood"].store.close()
    playlist = playlists.m3u8(playlists.entries(stored))
    assert f",{KOREAN}\n" in playlist and f",Zoé - Naive Tune\n" in playlist
    locations = [line for line in playlist.splitlines() if not line.startswith("#")]
    assert {os.fsencode(local_path(location)) for location in locations} == set(files.values())

    # A rerun finds every song unchanged (same ids); a prune removes exactly the deleted ones.
    assert summary(run_cli(["index", str(music), "--store", str(store)], env, tmp_path).stdout) == (0, 5, 0, 0)
    os.remove(files["korean"])
    os.remove(files["latin"])  # its UTF-8 twin, which reads the same, stays
    pruned = run_cli(["index", str(music), "--store", str(store), "--prune"], env, tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert summary(pruned.stdout) == (0, 3, 2, 0)
    assert f"removing: {music}/{KOREAN}.flac (its file is gone)" in pruned.stderr
    assert f"removing: {music}/{FOLDER}/{LATIN}.flac (its file is gone)" in pruned.stderr
    left = listed(store, env, tmp_path)
    assert {os.fsencode(local_path(s["path"])) for s in left} == {files["twin"], files["tagged"], files["sea"]}


def test_terminal_escapes_in_names_and_tags_are_shown_escaped(tmp_path: Path, env: dict[str, str]) -> None:
    music, store = tmp_path / "music", tmp_path / "store"
    music.mkdir()
    write_tone(music / "\x1b[31mred\x85.flac", 3, 300)
    write_tone(music / "plain.flac", 3, 400, tags={"title": "\x1b[31mTi\x85tle", "artist": "Art\x1b[0m"})
    named(os.fsencode(music) + b"/csi\x9b31m.flac", 3, 500)  # a raw C1 byte: not UTF-8, read as Latin-1
    (music / "bad\x1b[2J.mp3").write_text("not music\n")

    indexed = run_cli(["index", "-v", str(music), "--store", str(store)], env, tmp_path)
    assert indexed.returncode == 0, indexed.stderr
    assert summary(indexed.stdout) == (3, 0, 0, 1)
    out = indexed.stdout + indexed.stderr
    assert f"stored: {music}/\\x1b[31mred\\x85.flac" in indexed.stdout
    assert f"stored: {music}/csi\\x9b31m.flac" in indexed.stdout
    assert any(line.startswith("failed: ") and f"{music}/bad\\x1b[2J.mp3" in line for line in out.splitlines())

    listing = run_cli(["songs", "--store", str(store)], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "Art\\x1b[0m - \\x1b[31mTi\\x85tle  [-]" in listing.stdout
    assert f"? - \\x1b[31mred\\x85  [-]  0:03  {music}/\\x1b[31mred\\x85.flac" in listing.stdout
    as_json = run_cli(["songs", "--json", "--store", str(store)], env, tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    titles = {json.loads(line)["title"] for line in as_json.stdout.splitlines()}
    assert titles == {"\x1b[31mTi\x85tle", "\x1b[31mred\x85", "csi\x9b31m"}  # the data itself is kept as it is

    os.remove(music / "\x1b[31mred\x85.flac")
    dry = run_cli(["index", str(music), "--store", str(store), "--prune", "--dry-run"], env, tmp_path)
    assert f"would remove: {music}/\\x1b[31mred\\x85.flac" in dry.stdout, dry.stderr
    shutil.rmtree(music)
    (music / ".hidden\x1b[2J").mkdir(parents=True)
    refused = run_cli(["index", str(music), "--store", str(store), "--prune"], env, tmp_path)
    assert refused.returncode == 1 and "error: refusing to prune" in refused.stderr

    for result in (indexed, listing, as_json, dry, refused):
        assert RAW_CONTROLS.search(result.stdout + result.stderr.replace("\r", "")) is None, result
