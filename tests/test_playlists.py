"""Playlists out (M3U8 and XSPF, from the core and from `image2mood recommend --playlist`) and the
library's mood map (`image2mood songs --map`).

Each playlist is read back by a parser, not by string matching: M3U8 with the `m3u8` package (ffprobe
cannot open a music M3U8: its only playlist reader is the HLS demuxer, which takes media segments, not
FLAC or WAV files), XSPF with ElementTree against the schema's required shape. Every entry of a
playlist written by the CLI then opens in ffprobe, in the answer's order.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import m3u8
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from image2mood.playlists import XSPF_NS, PlaylistError, entries, m3u8 as write_m3u8, render, xspf
from image2mood.store.base import Song
from media import write_tone
from media_images import write_photo

NS = {"x": XSPF_NS}
HOSTILE = Song(id="6f1c1f4e-0000-4000-8000-000000000001", path="/music/odd\nname #EXTINF.flac", content_hash="h",
               title='Évil </title><script>alert("x")</script> & \x01\x1b[31m\n#EXTINF:9,fake\n/etc/passwd',
               artist="Ana & <Ben>", album=None, genre=None, duration=183.6)
PLAIN = Song(id="6f1c1f4e-0000-4000-8000-000000000002", path="/music/비 오는 거리.flac", content_hash="h",
             title="비 오는 거리", artist=None, duration=0.0)


def parse_xspf(text: str) -> list[dict[str, str | None]]:
    """The tracks of an XSPF playlist, after checking the elements XSPF 1 requires."""
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == f"{{{XSPF_NS}}}playlist" and root.get("version") == "1"
    track_list = root.find("x:trackList", NS)
    assert track_list is not None, "XSPF requires a trackList"
    tracks = []
    for track in track_list.findall("x:track", NS):
        assert len(track.findall("x:location", NS)) == 1
        tracks.append({name: (track.findtext(f"x:{name}", namespaces=NS))
                       for name in ("location", "title", "creator", "duration")})
    return tracks


def test_m3u8_of_hostile_tags_has_one_entry_per_song() -> None:
    text = write_m3u8(entries([HOSTILE, PLAIN]), title="a\nb")
    assert text.startswith("#EXTM3U\n")
    parsed = m3u8.loads(text)
    assert [s.uri for s in parsed.segments] == ["file:///music/odd%0Aname%20%23EXTINF.flac", "/music/비 오는 거리.flac"]
    assert [s.duration for s in parsed.segments] == [184, -1]
    assert parsed.segments[0].title.startswith("Ana & <Ben> - Évil </title>")
    assert "\n" not in parsed.segments[0].title and "\x1b" not in parsed.segments[0].title
    assert parsed.segments[1].title == "비 오는 거리"
    assert "/etc/passwd" not in [s.uri for s in parsed.segments]


def test_xspf_is_valid_xml_whatever_the_tags() -> None:
    text = xspf(entries([HOSTILE, PLAIN]), title="<b>caption</b> & \x00more")
    root = ET.fromstring(text.encode("utf-8"))
    assert root.findtext("x:title", namespaces=NS) == "<b>caption</b> & more"
    assert root.findtext("x:creator", namespaces=NS) == "image2mood"
    first, second = parse_xspf(text)
    assert first == {"location": "file:///music/odd%0Aname%20%23EXTINF.flac", "title": HOSTILE.title.replace("\x01", "")
                     .replace("\x1b", ""), "creator": "Ana & <Ben>", "duration": "183600"}
    assert second == {"location": "file:///music/%EB%B9%84%20%EC%98%A4%EB%8A%94%20%EA%B1%B0%EB%A6%AC.flac",
                      "title": "비 오는 거리", "creator": None, "duration": None}
    assert "<script>" not in text  # escaped, not markup


def test_urls_instead_of_paths() -> None:
    tracks = entries([HOSTILE, PLAIN], base_url="https://music.example.org/mood/")
    assert [t.location for t in tracks] == [f"https://music.example.org/mood/audio/{HOSTILE.id}",
                                            f"https://music.example.org/mood/audio/{PLAIN.id}"]
    assert [t["location"] for t in parse_xspf(xspf(tracks))] == [t.location for t in tracks]


def test_the_suffix_chooses_the_format() -> None:
    assert render(".XSPF", entries([PLAIN])).startswith("<?xml")
    assert render(".m3u", entries([PLAIN])).startswith("#EXTM3U")
    with pytest.raises(PlaylistError, match=r"\.m3u8, \.m3u, \.xspf; got '\.txt'"):
        render(".txt", entries([PLAIN]))


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def library(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """Four tagged songs indexed with `image2mood index`: (work folder, store, song id → path)."""
    from conftest import cli_environment

    work = tmp_path_factory.mktemp("playlists")
    music = work / "music & more"
    music.mkdir()
    for n, (title, artist) in enumerate([("Rain", "Ana"), ("Party <Night>", "Ben & Co"), ("Sunset", None),
                                         ("비 오는 거리", "민지")]):
        tags = {"title": title, **({"artist": artist} if artist else {})}
        write_tone(music / f"{n} {title}.flac", 3.0 + n, 220.0 * (n + 1), tags=tags)
    store = work / "store"
    env = cli_environment(tiny_models)
    done = run_cli(["index", str(music), "--store", str(store)], env, work)
    assert done.returncode == 0, done.stderr
    listed = run_cli(["songs", "--json", "--store", str(store)], env, work)
    paths = {song["id"]: song["path"] for song in map(json.loads, listed.stdout.splitlines())}
    assert len(paths) == 4, listed.stdout + listed.stderr
    return work, store, paths


def test_recommend_writes_an_m3u8_of_its_songs_that_ffprobe_plays(library, cli_env: dict[str, str]) -> None:
    work, store, paths = library
    photo = write_photo(work / "photo.jpg")
    out = work / "out" / "answer.m3u8"
    out.parent.mkdir()
    done = run_cli(["recommend", str(photo), "--json", "--top", "4", "--store", str(store), "--playlist", str(out)],
                   cli_env, work)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert f"playlist of 4 songs written to {out}" in done.stderr
    parsed = m3u8.load(str(out))
    assert [s.uri for s in parsed.segments] == [paths[song["id"]] for song in answer["songs"]]
    assert [s.title for s in parsed.segments] == [
        f"{song['artist']} - {song['title']}" if song["artist"] else song["title"] for song in answer["songs"]]
    assert [s.duration for s in parsed.segments] == [round(song["duration"]) for song in answer["songs"]]
    for segment in parsed.segments:  # every entry is a file a player opens
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json",
                                segment.uri], capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert abs(float(json.loads(probe.stdout)["format"]["duration"]) - segment.duration) <= 0.5


def test_recommend_writes_an_xspf_of_urls(library, cli_env: dict[str, str]) -> None:
    work, store, paths = library
    photo = write_photo(work / "blue.png", color=(30, 60, 200))
    out = work / "answer.xspf"
    done = run_cli(["recommend", str(photo), "--json", "--top", "3", "--store", str(store), "--playlist", str(out),
                    "--playlist-urls", "http://192.168.1.5:8000"], cli_env, work)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    tracks = parse_xspf(out.read_text(encoding="utf-8"))
    assert [t["location"] for t in tracks] == [f"http://192.168.1.5:8000{song['audio_url']}" for song in answer["songs"]]
    assert [t["title"] for t in tracks] == [song["title"] for song in answer["songs"]]
    assert [t["duration"] for t in tracks] == [str(round(song["duration"] * 1000)) for song in answer["songs"]]
    assert len(tracks) == 3


def test_a_playlist_with_an_unknown_suffix_is_refused_before_the_models_load(library, cli_env) -> None:
    work, store, _ = library
    photo = write_photo(work / "red.jpg")
    done = run_cli(["recommend", str(photo), "--store", str(store), "--playlist", str(work / "answer.txt")],
                   cli_env, work)
    assert done.returncode == 2, done.stderr
    assert "--playlist" in done.stderr and ".m3u8, .m3u, .xspf" in done.stderr
    assert not (work / "answer.txt").exists()


# ---------------------------------------------------------------- songs --map


def test_songs_map_writes_a_png_of_the_library(library, cli_env: dict[str, str]) -> None:
    work, store, paths = library
    out = work / "map.png"
    done = run_cli(["songs", "--store", str(store), "--map", str(out)], cli_env, work)
    assert done.returncode == 0, done.stderr
    assert f"mood map of {len(paths)} songs written to {out}" in done.stderr
    assert done.stdout.count("\n") == len(paths)  # the listing is still printed
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (800, 800)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    blue = ((pixels[:, 2] - pixels[:, 0] > 60) & (pixels[:, 2] > 150)).sum()  # the songs' dots (tab:blue)
    assert blue > 20, blue  # at least one dot (tiny models put songs in the corners, where they can overlap)


def test_songs_map_must_be_a_png(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """Refused before the store is opened or a model loads."""
    done = run_cli(["songs", "--store", str(tmp_path / "store"), "--map", str(tmp_path / "map.jpg")], cli_env, tmp_path)
    assert done.returncode == 2
    assert "--map" in done.stderr and "name it something.png" in done.stderr


def test_the_formats_literal_shapes_found_by_mutation_testing() -> None:
    """Spelled out, not read from the module: XSPF 1's namespace and M3U8's playlist title line."""
    text = xspf(entries([PLAIN]), title="Rain")
    assert ET.fromstring(text.encode()).tag == "{http://xspf.org/ns/0/}playlist"
    assert write_m3u8(entries([PLAIN]), title="Rain\nnight").splitlines()[:2] == ["#EXTM3U", "#PLAYLIST:Rain night"]
    short = entries([dataclasses.replace(PLAIN, duration=0.6)])  # under a second is still a known length
    assert write_m3u8(short).splitlines()[1] == "#EXTINF:1,비 오는 거리"
    assert parse_xspf(xspf(short))[0]["duration"] == "600"
