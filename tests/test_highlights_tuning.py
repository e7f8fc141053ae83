"""The tuning tool's MaxSim knob: songs scored by their best window, from the window vectors the store keeps.

On the library of tests/test_highlights.py (indexed with 6 windows a song, the default): `tune run --pooling
mean,maxsim` re-embeds nothing (MaxSim reads the mean store's windows), and each MaxSim ranking's scores are
numpy's max over each song's window vectors of the cosine with the query, which the mean ranking's are not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.ranking import Options, rank
from image2mood.store import open_configured_store
from image2mood.store.base import NO_WINDOWS_LAYOUT
from image2mood.errors import StoreError
from image2mood_cli.main import cli
from test_highlights import index, old_layout_store, write_library
from tuning.cache import QueryCache
from tuning.evalset import Query
from tuning.knobs import SongVectors, SweepSpec
from tuning.sweep import Sweep

TEXTS = ("a pulsing tone", "quiet noise")


@pytest.fixture(scope="module")
def settings(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    work = tmp_path_factory.mktemp("maxsim")
    chosen = Settings(_env_file=None, models=tiny_models, store=str(work / "store"))
    index(chosen, write_library(work / "music"))
    return chosen


def test_maxsim_scores_each_song_by_its_best_window(settings: Settings, tmp_path: Path) -> None:
    spec = SweepSpec(alphas=[settings.alpha], projections=[None], k=3,
                     song_vectors=[SongVectors(6, 10.0, "mean"), SongVectors(6, 10.0, "maxsim")])
    said: list[str] = []
    result = Sweep(settings, tmp_path / "out", QueryCache(settings, tmp_path / "cache"), said.append).run(
        [Query(id=str(i), text=text) for i, text in enumerate(TEXTS)], spec, None)
    assert not any("re-embedding" in line for line in said), said
    assert set(result.stores) == {"6x10s-mean"}
    by_pooling = {config.knobs.songs.pooling: config for config in result.configs}
    assert set(by_pooling) == {"mean", "maxsim"} and by_pooling["maxsim"].name == "pooling=maxsim"
    with open_configured_store(settings, None, create=False) as store:
        songs = {s.id: s for s in store.scroll(with_vectors=True, with_windows=True)}
    for qv, maxsim, mean in zip(result.queries, by_pooling["maxsim"].rankings, by_pooling["mean"].rankings,
                                strict=True):
        best = {sid: float((song.windows @ qv.text_route).max()) for sid, song in songs.items()}
        assert [r.song.id for r in maxsim] == sorted(best, key=best.get, reverse=True)
        assert [r.score for r in maxsim] == pytest.approx([best[r.song.id] for r in maxsim], abs=3e-4)
        pooled = {r.song.id: r.score for r in mean}
        assert pooled == pytest.approx({sid: float(songs[sid].vector @ qv.text_route) for sid in pooled}, abs=1e-4)
        # the long song's windows differ (noise, the tone): its best window is not its mean (the tones' barely are)
        long = next(sid for sid, song in songs.items() if song.title == "long")
        assert next(r.score for r in maxsim if r.song.id == long) - pooled[long] > 6e-4


def test_tune_takes_maxsim_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    eval_set = tmp_path / "set.jsonl"
    eval_set.write_text("".join(json.dumps({"text": text, "labels": ["calm"]}) + "\n" for text in TEXTS))
    result = CliRunner().invoke(cli, ["tune", "run", str(eval_set), "--store", settings.store, "--out",
                                      str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                                      "--pooling", "mean,maxsim", "-k", "2"],
                                env={"IMAGE2MOOD_MODELS": str(settings.models)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {c["name"] for c in report["configs"]} == {"pooling=mean", "pooling=maxsim"}
    assert set(report["stores"]) == {"6x10s-mean"}


def test_maxsim_on_a_store_without_window_vectors_says_how_to_get_them(tiny_models: Path, tmp_path: Path) -> None:
    old = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "old"))
    old_layout_store(old)
    index(old, write_library(tmp_path / "music"))
    encoder = factory.clap_encoder(old)
    with open_configured_store(old, store_info(encoder, old), access="read") as store:
        query = encoder.encode_text(["a pulsing tone"])[0]
        assert rank(store, query, Options(top=2), _NoMoods())  # the mean search still answers
        with pytest.raises(StoreError, match="cannot be searched by MaxSim") as refused:
            rank(store, query, Options(top=2, maxsim=True), _NoMoods())
        assert NO_WINDOWS_LAYOUT in str(refused.value)


class _NoMoods:
    """A mood space with no words (the ranking's moods are not what this test is about)."""

    def top(self, vector: np.ndarray, k: int = 3) -> list:
        return []
