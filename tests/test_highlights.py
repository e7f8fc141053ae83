"""Highlights: each answered song's best part, from the window vectors the store keeps beside its pooled one.

A known highlight: a 60-s song of noise with a distinctive 10-s passage at 30-40 s, and a 10-s song that is
the passage alone, indexed with every window (``windows_per_song=0``) by the tiny random CLAP. Its window
vectors tell the passage from the noise only a little (cosine 0.99998 against 0.992 for the noise windows),
but the passage's window is the same audio in both files, so "more like this" from the short song must put
the long song's highlight on it. Every song of photo, text and similar answers gets a highlight inside its
duration; a store laid out before window vectors were kept answers without highlights and says how to get
them, and that advice is followed here to the end.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
import soundfile as sf
from PIL import Image

from conftest import cli_environment, run_cli
from image2mood.answers import recommendation_json
from image2mood.config import Settings
from image2mood.highlights import Highlight, best_part
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.playlists import entries, m3u8, xspf
from image2mood.ranking import Options
from image2mood.recommend import Recommender
from image2mood.results import SavedResult, result_from
from image2mood.store import open_configured_store
from image2mood.store.base import NO_WINDOWS_LAYOUT, Song
from image2mood.store.embedded import SHARD_DIR, _edge_config, _write_info, INFO_FILE
from image2mood.store.migrate import migrate
from indexer.pipeline import Indexer

RATE = 48_000
PASSAGE_AT = 30.0
WINDOW_S = 10.0


def passage() -> np.ndarray:
    """10 s of a pulsed 880-Hz tone: nothing like noise."""
    t = np.arange(round(WINDOW_S * RATE)) / RATE
    return (0.5 * np.sign(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 880 * t)).astype(np.float32)


def write_library(folder: Path) -> Path:
    """long.wav (60 s of noise, the passage at 30-40 s), passage.wav (the passage alone), tone.wav (25 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    long = (0.1 * np.random.default_rng(7).standard_normal(60 * RATE)).astype(np.float32)
    start = round(PASSAGE_AT * RATE)
    long[start:start + round(WINDOW_S * RATE)] = passage()
    sf.write(folder / "long.wav", long, RATE)
    sf.write(folder / "passage.wav", passage(), RATE)
    t = np.arange(25 * RATE) / RATE
    sf.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), RATE)
    return folder


def index(settings: Settings, library: Path) -> None:
    encoder = factory.clap_encoder(settings)
    with open_configured_store(settings, store_info(encoder, settings)) as store:
        report = Indexer(store, encoder, settings, warn=lambda line: None).run([library])
    assert report.indexed == 3, report.summary()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("highlights") / "music")


@pytest.fixture(scope="module")
def recommender(tiny_models: Path, library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recommender]:
    settings = Settings(_env_file=None, models=tiny_models, windows_per_song=0,
                        store=str(tmp_path_factory.mktemp("store") / "store"))
    index(settings, library)
    rec = Recommender.open(settings)
    yield rec
    rec.store.close()


def by_title(rec: Recommender) -> dict[str, Song]:
    return {song.title: song for song in rec.store.scroll()}


# ---------------------------------------------------------------- the known highlight


def test_more_like_the_passage_puts_the_long_songs_highlight_on_it(recommender: Recommender) -> None:
    songs = by_title(recommender)
    assert songs["long"].window_starts == (0.0, 10.0, 20.0, 30.0, 40.0, 50.0) and songs["long"].window_seconds == 10
    _, answer = recommender.similar(songs["passage"].id)
    long = next(r for r in answer.songs if r.song.title == "long")
    assert long.highlight is not None
    # 15 s from 25 or 30 s: the passage's window and half of a neighbour (± one 10-s step of 30 s)
    assert long.highlight.start in (25.0, 30.0) and long.highlight.end == long.highlight.start + 15
    assert abs(long.highlight.start - PASSAGE_AT) <= WINDOW_S
    windows = recommender.store.window_vectors([songs["long"].id])[songs["long"].id]
    seed = recommender.find([songs["passage"].id], with_vectors=True)[0]
    assert int(np.argmax(windows @ seed.vector)) == 3  # the window at 30 s


def test_a_highlight_as_long_as_a_window_is_the_passage_itself(recommender: Recommender) -> None:
    songs = by_title(recommender)
    seed = recommender.find([songs["passage"].id], with_vectors=True)[0]
    short = Recommender(recommender.settings.model_copy(update={"highlight_seconds": 10.0}), recommender.store)
    ranked = short.rank(seed.vector, Options(top=3))
    long = next(r for r in ranked if r.song.title == "long")
    assert long.highlight == Highlight(30.0, 40.0, pytest.approx(long.highlight.score))
    assert long.highlight.score > 0.9999


def every_song_has_a_highlight_inside(songs) -> None:
    assert songs
    for ranked in songs:
        h = ranked.highlight
        assert h is not None and ranked.no_highlight is None, ranked.song.title
        length = min(15.0, ranked.song.duration)
        assert 0 <= h.start < h.end <= ranked.song.duration + 1e-6, (ranked.song.title, h)
        assert h.end - h.start == pytest.approx(length), (ranked.song.title, h)


def test_every_song_of_every_kind_of_answer_has_a_highlight_inside_it(recommender: Recommender) -> None:
    songs = by_title(recommender)
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    answers = [recommender.for_photo(photo, Options(top=3)), recommender.for_text("rain at night", Options(top=3)),
               recommender.similar(songs["tone"].id, Options(top=3))[1]]
    for answer in answers:
        every_song_has_a_highlight_inside(answer.songs)
        body = recommendation_json(answer)
        assert "highlights_note" not in body
        for song in body["songs"]:
            assert set(song["highlight"]) == {"start", "end", "score"}
    # the passage (10 s) is shorter than a highlight: all of it
    passage_song = next(r for r in answers[1].songs + answers[0].songs if r.song.title == "passage")
    assert (passage_song.highlight.start, passage_song.highlight.end) == (0.0, 10.0)


def test_a_kept_answer_keeps_each_songs_highlight(recommender: Recommender) -> None:
    answer = recommender.for_text("rain at night", Options(top=3))
    kept = SavedResult.from_json(json.loads(json.dumps(result_from(answer, query="rain at night").to_json())))
    assert [s["highlight"] for s in kept.songs] == [r.highlight.to_json() for r in answer.songs]
    assert kept.highlights_note is None


# ---------------------------------------------------------------- the search itself is unchanged


def test_search_reads_no_window_vectors(recommender: Recommender) -> None:
    songs = by_title(recommender)
    hits = recommender.store.search(recommender.find([songs["tone"].id], True)[0].vector, 3, with_vectors=True)
    assert all(hit.song.vector is not None and hit.song.windows is None for hit in hits)
    assert all(song.windows is None for song in recommender.store.get([s.id for s in songs.values()]))


# ---------------------------------------------------------------- best_part alone


def test_best_part_stays_inside_the_song_and_takes_the_best_run() -> None:
    windows = np.eye(4, dtype=np.float32)  # window i is closest to axis i
    starts = (0.0, 10.0, 20.0, 30.0)
    last = best_part(windows, starts, 10.0, 38.0, np.array([0, 0, 0, 1.0]), 15.0)
    assert (last.start, last.end) == (23.0, 38.0)  # the last window is best; the clip ends with the song
    first = best_part(windows, starts, 10.0, 38.0, np.array([1.0, 0, 0, 0]), 15.0)
    assert (first.start, first.end, first.score) == (0.0, 15.0, pytest.approx(10 / 15))
    pair = best_part(windows, starts, 10.0, 40.0, np.array([0, 1.0, 1.0, 0]), 20.0)
    assert (pair.start, pair.end) == (10.0, 30.0) and pair.score == pytest.approx(np.sqrt(0.5))
    whole = best_part(windows[:1], (0.0,), 6.0, 6.0, np.array([1.0, 0, 0, 0]), 15.0)
    assert (whole.start, whole.end) == (0.0, 6.0)


def test_best_part_between_spread_windows_scores_only_what_it_covers() -> None:
    windows = np.eye(3, dtype=np.float32)  # 3 windows spread over 3 minutes (6x10s windowing): gaps between
    best = best_part(windows, (0.0, 85.0, 170.0), 10.0, 180.0, np.array([0, 1.0, 0]), 15.0)
    assert best.start in (80.0, 85.0) and best.score == pytest.approx(1.0)


# ---------------------------------------------------------------- a store from before window vectors


def old_layout_store(settings: Settings) -> None:
    """An embedded store laid out as image2mood made them before it kept window vectors (no "windows" vector)."""
    root = Path(settings.store)
    root.mkdir(parents=True)
    _write_info(root / INFO_FILE, store_info(factory.clap_encoder(settings), settings))
    qe.EdgeShard.create(str(root / SHARD_DIR), _edge_config(factory.clap_encoder(settings).dim, windows=False)).close()


def test_an_old_store_answers_without_highlights_and_says_how_to_get_them(
        tiny_models: Path, library: Path, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, models=tiny_models, windows_per_song=0, store=str(tmp_path / "old"))
    old_layout_store(settings)
    index(settings, library)
    rec = Recommender.open(settings)
    try:
        assert rec.store.has_windows is False
        answer = rec.for_text("rain at night", Options(top=3))
        assert len(answer.songs) == 3 and all(r.highlight is None for r in answer.songs)
        body = recommendation_json(answer)
        assert body["highlights_note"] == NO_WINDOWS_LAYOUT and all(s["highlight"] is None for s in body["songs"])
        assert "store migrate --to" in NO_WINDOWS_LAYOUT and "--rewindow" in NO_WINDOWS_LAYOUT
        assert result_from(answer).highlights_note == NO_WINDOWS_LAYOUT
        # the advice: copy into a new store ...
        new = settings.model_copy(update={"store": str(tmp_path / "new")})
        encoder = factory.clap_encoder(settings)
        with open_configured_store(new, store_info(encoder, new)) as target:
            migrate(rec.store, target)
    finally:
        rec.store.close()
    env = cli_environment(tiny_models) | {"IMAGE2MOOD_WINDOWS_PER_SONG": "0"}
    refused = run_cli(["index", str(library), "--rewindow", "--store", settings.store], env, tmp_path)
    assert refused.returncode != 0 and "store migrate --to" in refused.stderr, refused.stderr
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    told = run_cli(["recommend", str(photo), "--top", "3", "--store", settings.store], env, tmp_path)
    assert f"note:    {NO_WINDOWS_LAYOUT}" in told.stdout and "  best part " not in told.stdout, told.stdout + told.stderr
    # ... whose songs lack windows until `index --rewindow` embeds them again
    with _opened(new) as copied:
        answer = copied.for_text("rain at night", Options(top=3))
        assert all(r.highlight is None for r in answer.songs)
        assert "--rewindow" in recommendation_json(answer)["highlights_note"]
    plain = run_cli(["index", str(library), "--store", new.store], env, tmp_path)
    assert "unchanged 3" in plain.stdout, plain.stdout + plain.stderr  # without the flag nothing is embedded
    again = run_cli(["index", str(library), "--rewindow", "--store", new.store], env, tmp_path)
    assert again.returncode == 0 and "indexed 3," in again.stdout, again.stdout + again.stderr
    with _opened(new) as rewindowed:
        answer = rewindowed.for_text("rain at night", Options(top=3))
        every_song_has_a_highlight_inside(answer.songs)
        assert "highlights_note" not in recommendation_json(answer)
    shown = run_cli(["recommend", str(photo), "--top", "3", "--store", new.store], env, tmp_path).stdout
    assert shown.count("  best part ") == 3 and "  best part 0:00-0:10" in shown, shown  # passage: all 10 s


class _opened:
    """A recommender over ``settings``' store, closed afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> Recommender:
        self.rec = Recommender.open(self.settings)
        return self.rec

    def __exit__(self, *exc: object) -> None:
        self.rec.store.close()


# ---------------------------------------------------------------- playlists


def test_playlists_note_where_each_song_is_best() -> None:
    songs = [Song(id="00000000-0000-0000-0000-000000000001", path="/m/a.flac", content_hash="a", title="A", duration=60),
             Song(id="00000000-0000-0000-0000-000000000002", path="/m/b.flac", content_hash="b", title="B", duration=9)]
    tracks = entries(songs, highlights={songs[0].id: {"start": 30.5, "end": 45.5, "score": 0.9}})
    lines = m3u8(tracks).splitlines()
    assert lines[1:4] == ["#EXTINF:60,A", "#EXTVLCOPT:start-time=30.5", "/m/a.flac"]
    assert "#EXTVLCOPT" not in "\n".join(lines[4:])
    root = ET.fromstring(xspf(tracks))
    ns = {"x": "http://xspf.org/ns/0/", "vlc": "http://www.videolan.org/vlc/playlist/ns/0/"}
    first, second = root.findall("x:trackList/x:track", ns)
    assert first.findtext("x:annotation", namespaces=ns) == "Best part 0:31–0:46"
    extension = first.find("x:extension", ns)
    assert extension.get("application") == "http://www.videolan.org/vlc/playlist/0"
    assert [o.text for o in extension.findall("vlc:option", ns)] == ["start-time=30.5"]
    assert second.find("x:extension", ns) is None and second.find("x:annotation", ns) is None
