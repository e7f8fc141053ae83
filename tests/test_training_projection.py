"""The projection-head trainer: a known-answer problem, the tiny models end to end, and the query path using it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from image2mood.config import PROJECTION_FILE, Settings
from image2mood.models.projection import load_projection
from image2mood.models.resolve import resolve_model
from image2mood.models.tiny import write_tiny_clip
from media_captions import captioned_image, one_thread, write_captioned_images, write_table  # noqa: F401
from media_images import truncated_jpeg
from training.data import read_pairs
from training.features import CacheMismatchError
from training.metrics import MetricsLog
from training.projection import Features, HeadConfig, evaluate_head, train_head, train_projection


pytestmark = pytest.mark.usefixtures("one_thread")


def _known_answer(n: int, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n, 64)).astype(np.float32)
    inputs /= np.linalg.norm(inputs, axis=1, keepdims=True)
    linear_map = np.random.default_rng(1234).normal(size=(64, 48)).astype(np.float32)
    targets = inputs @ linear_map + 0.05 * rng.normal(size=(n, 48)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    return Features(inputs, targets.astype(np.float32), np.arange(n))


def test_known_linear_map_is_learned_to_recall_at_1_of_0_9() -> None:
    train, valid = _known_answer(800, seed=0), _known_answer(200, seed=1)
    trained = train_head(train, valid, HeadConfig(epochs=40, batch_size=128, lr=3e-3, hidden=0), progress=False)
    assert trained.history[0]["R@1"] < 0.2  # untrained: near chance
    assert trained.best["R@1"] >= 0.9, trained.best


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 captioned photos in 8 categories, plus a truncated JPEG and a missing file."""
    root = tmp_path_factory.mktemp("captioned")
    rows = write_captioned_images(root / "images", per_category=6)
    truncated_jpeg(root / "images" / "broken.jpg")
    rows += [{"image": "broken.jpg", "caption": "a broken photo"}, {"image": "gone.jpg", "caption": "a lost photo"}]
    return write_table(root / "pairs.csv", rows)


def test_trained_head_beats_the_untrained_one_and_serves_fused_queries(
        table: Path, settings: Settings, tiny_models: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    dataset = read_pairs(table, images=table.parent / "images")
    out = tmp_path / "head.pt"
    log = MetricsLog(tmp_path / "head.metrics.jsonl")
    trained = train_projection(dataset, settings, out, mode="image-caption", cache=tmp_path / "cache", log=log,
                               config=HeadConfig(epochs=60, batch_size=16, lr=3e-3, hidden=128), progress=False)
    assert sorted(dataset.broken) == [48, 49] and "2 broken images skipped" in dataset.report()
    assert len(trained.valid) == 10  # 50 rows split 8:2, the 2 broken ones were in training

    untrained = load_projection(tiny_models / PROJECTION_FILE, *(resolve_model(k, str(tiny_models / k))
                                                                  for k in ("clip", "clap")))
    before, fresh = evaluate_head(untrained, trained.valid), trained.history[0]
    after = evaluate_head(load_projection(out, *(resolve_model(k, str(tiny_models / k)) for k in ("clip", "clap"))),
                          trained.valid)
    assert after == pytest.approx({k: trained.best[k] for k in after})  # the saved head is the best epoch's
    assert after["R@1"] > max(before["R@1"], fresh["R@1"]) and after["R@5"] >= max(before["R@5"], fresh["R@5"])
    records = log.records()
    assert [r["epoch"] for r in records] == list(range(61))
    assert {"train_loss", "valid_loss", "R@1", "R@5", "R@10", "temperature"} <= set(records[-1])
    assert log.plot(tmp_path / "head.png", x="epoch").stat().st_size > 1000

    photo = captioned_image(2, seed=999)
    photo.save(tmp_path / "photo.png")
    env = {**cli_env, "IMAGE2MOOD_THREADS": "1", "IMAGE2MOOD_PROJECTION": str(out),
           "IMAGE2MOOD_STORE": str(tmp_path / "store")}
    result = run_cli(["recommend", str(tmp_path / "photo.png"), "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["route"] == "fused"


def test_a_cache_built_by_other_models_is_refused(table: Path, settings: Settings, tmp_path: Path) -> None:
    dataset = read_pairs(table, images=table.parent / "images")
    dataset.pairs = dataset.pairs[:12]
    config = HeadConfig(epochs=1, batch_size=8, hidden=0)
    train_projection(dataset, settings, tmp_path / "a.pt", mode="image-caption", cache=tmp_path / "cache",
                     config=config, progress=False)
    other_clip = tmp_path / "other-clip"
    write_tiny_clip(other_clip, seed=1)
    other = settings.model_copy(update={"clip_model": str(other_clip)})
    other.model_fields_set.add("clip_model")
    with pytest.raises(CacheMismatchError, match=r"clip-image.npz was built by model '.*clip' .* not the "
                                                 r"configured '.*other-clip'.*delete it or give another --cache"):
        train_projection(dataset, other, tmp_path / "b.pt", mode="image-caption", cache=tmp_path / "cache",
                         config=config, progress=False)


def test_text_bridge_trains_on_the_shipped_corpus(cli_env: dict[str, str], tiny_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "bridge.pt"
    result = run_cli(["train", "projection", "--mode", "text-bridge", "--out", str(out), "--limit", "300",
                      "--epochs", "3", "--hidden", "64"], {**cli_env, "IMAGE2MOOD_THREADS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the shipped caption corpus: 300 pairs" in result.stderr
    assert re.search(r"best epoch \d: valid R@1 [\d.]+ R@5 [\d.]+ R@10 [\d.]+ \(untrained: R@1", result.stdout)
    head = load_projection(out, *(resolve_model(k, str(tiny_models / k)) for k in ("clip", "clap")))
    assert head.config.in_dim == 64 and head.config.out_dim == 512
    records = [json.loads(line) for line in (tmp_path / "bridge.metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert (tmp_path / "bridge.metrics.png").is_file()
    assert {p.name for p in (tmp_path / "bridge-features").iterdir()} == {"clip-text.npz", "clap-text.npz"}


def test_centring_is_folded_into_the_saved_head() -> None:
    train, valid = _known_answer(200, seed=0), _known_answer(50, seed=1)
    train.inputs += 0.5  # a constant offset, like the gap between CLIP's text and image vectors
    valid.inputs += 0.5
    trained = train_head(train, valid, HeadConfig(epochs=5, batch_size=64, hidden=32, centre=True, noise=0.04),
                         progress=False)
    assert evaluate_head(trained.head, valid) == pytest.approx({k: trained.best[k] for k in ("R@1", "R@5", "R@10")})
