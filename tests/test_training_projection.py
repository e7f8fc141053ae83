"""The projection-head trainer: a known-answer problem, the tiny models end to end, and the query path using it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from PIL import Image

from conftest import run_cli
from image2mood.answers import recommendation_json
from image2mood.config import PROJECTION_FILE, Settings
from image2mood.images import load_photo
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.models.projection import ProjectionHead, load_projection
from image2mood.models.resolve import resolve_model
from image2mood.models.tiny import write_tiny_clip
from image2mood.recommend import Recommender
from image2mood.store import open_store
from media_captions import captioned_image, one_thread, write_captioned_images, write_table  # noqa: F401
from media_images import truncated_jpeg
from training.corpus import caption_corpus
from training.data import read_pairs
from training.features import CacheMismatchError
from training.metrics import MetricsLog
from training.projection import Features, HeadConfig, recall_at, train_head, train_projection


pytestmark = pytest.mark.usefixtures("one_thread")


def evaluate_head(head: ProjectionHead, features: Features) -> dict[str, float]:
    """Recall@1/5/10 of ``head`` on ``features`` (a saved head, or the untrained one for comparison)."""
    with torch.no_grad():
        predicted = head(torch.from_numpy(features.inputs))
    return recall_at(predicted, torch.from_numpy(features.targets), torch.from_numpy(features.groups))


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


HELD_OUT_MARGIN = 0.3  # held-out R@1 the trained head must gain over the untrained one (chance is 1/16)
CONTROL_SLACK = 0.15  # the most held-out R@1 the shuffled-pairs control may gain over the untrained head


@pytest.fixture(scope="module")
def wide_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 photos of each of 16 scenes (16 distinct captions), plus a truncated JPEG and a missing file."""
    root = tmp_path_factory.mktemp("captioned-wide")
    rows = write_captioned_images(root / "images", per_category=8, more=True)
    truncated_jpeg(root / "images" / "broken.jpg")
    rows += [{"image": "broken.jpg", "caption": "a broken photo"}, {"image": "gone.jpg", "caption": "a lost photo"}]
    # each row's own key decides its side of the split: the same split wherever pytest puts the folder
    return write_table(root / "pairs.csv", [{**row, "key": row["image"]} for row in rows])


def _held_out(settings: Settings, folder: Path) -> Features:
    """Other photos of the same 16 scenes (3 each), never seen by training nor by the choice of epoch."""
    rows = write_captioned_images(folder, per_category=3, more=True, first_seed=50)
    captions = sorted({row["caption"] for row in rows})
    clip, clap = factory.image_encoder(settings), factory.clap_encoder(settings)
    return Features(clip.encode_images([Image.open(folder / row["image"]).convert("RGB") for row in rows]),
                    clap.encode_text([row["caption"] for row in rows]),
                    np.array([captions.index(row["caption"]) for row in rows]))


def test_trained_head_beats_the_untrained_one_on_held_out_photos_and_shuffled_pairs_do_not(
        wide_table: Path, settings: Settings, tiny_models: Path, tmp_path: Path) -> None:
    """The table path (read, features, train, save) learns what a photo shows: on held-out photos of 16
    scenes the saved head finds the right caption far more often than the untrained head, and the same
    run on shuffled pairs (each photo with another photo's caption) does not."""
    dataset = read_pairs(wide_table, images=wide_table.parent / "images")
    rows = [{"image": p.image.name, "caption": p.caption} for p in dataset.pairs]
    captions = [row["caption"] for row in rows]
    random.Random(5).shuffle(captions)
    shuffled = read_pairs(write_table(tmp_path / "shuffled.csv", [{**row, "caption": caption}
                                                                   for row, caption in zip(rows, captions)]),
                          images=wide_table.parent / "images")
    config = HeadConfig(epochs=100, batch_size=16, lr=3e-3, hidden=128)
    log = MetricsLog(tmp_path / "head.metrics.jsonl")
    trained = train_projection(dataset, settings, tmp_path / "head.pt", mode="image-caption", cache=tmp_path / "cache",
                               log=log, config=config, progress=False)
    train_projection(shuffled, settings, tmp_path / "control.pt", mode="image-caption", cache=tmp_path / "cache",
                     config=config, progress=False)
    assert sorted(dataset.broken) == [128, 129] and "2 broken images skipped" in dataset.report()
    assert 20 <= len(trained.valid) <= 30 and len(set(trained.valid.groups)) >= 12  # the split that chose the epoch

    models = [resolve_model(k, str(tiny_models / k)) for k in ("clip", "clap")]
    saved = load_projection(tmp_path / "head.pt", *models)
    assert evaluate_head(saved, trained.valid) == pytest.approx({k: trained.best[k] for k in ("R@1", "R@5", "R@10")})
    held_out = _held_out(settings, tmp_path / "held-out")
    untrained = evaluate_head(load_projection(tiny_models / PROJECTION_FILE, *models), held_out)
    after = evaluate_head(saved, held_out)
    control = evaluate_head(load_projection(tmp_path / "control.pt", *models), held_out)
    assert after["R@1"] >= untrained["R@1"] + HELD_OUT_MARGIN, (after, untrained)
    assert after["R@5"] > untrained["R@5"] + HELD_OUT_MARGIN, (after, untrained)
    assert control["R@1"] <= untrained["R@1"] + CONTROL_SLACK, (control, untrained)
    assert after["R@1"] >= control["R@1"] + HELD_OUT_MARGIN - CONTROL_SLACK, (after, control)

    records = log.records()
    assert [r["epoch"] for r in records] == list(range(101))
    assert {"train_loss", "valid_loss", "R@1", "R@5", "R@10", "temperature"} <= set(records[-1])
    assert log.plot(tmp_path / "head.png", x="epoch").stat().st_size > 1000


def _answer_in_process(settings: Settings, photo: Image.Image, store: Path) -> dict:
    with open_store(str(store), info=store_info(factory.clap_encoder(settings), settings)) as store:
        return recommendation_json(Recommender(settings, store).for_photo(photo))


def _query_facts(answer: dict) -> list[float]:
    """What the answer shows of its query vector: its place on the mood map and its moods' scores."""
    return [answer["valence"], answer["arousal"], *(mood["score"] for mood in answer["moods"])]


def test_the_cli_serves_photos_with_the_head_that_image2mood_projection_names(
        table: Path, settings: Settings, cli_env: dict[str, str], tmp_path: Path) -> None:
    """IMAGE2MOOD_PROJECTION picks the head: the CLI's answer is the one the trained head gives, not the
    one the model set's own head gives."""
    dataset = read_pairs(table, images=table.parent / "images")
    out = tmp_path / "head.pt"
    train_projection(dataset, settings, out, mode="image-caption", cache=tmp_path / "cache",
                     config=HeadConfig(epochs=5, batch_size=16, lr=3e-3, hidden=32), progress=False)
    photo = captioned_image(2, seed=999)
    photo.save(tmp_path / "photo.png")
    env = {**cli_env, "IMAGE2MOOD_THREADS": "1", "IMAGE2MOOD_PROJECTION": str(out),
           "IMAGE2MOOD_STORE": str(tmp_path / "store")}
    result = run_cli(["recommend", str(tmp_path / "photo.png"), "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["route"] == "fused"
    image = load_photo(tmp_path / "photo.png")
    with_head = settings.model_copy(update={"projection": str(out)})
    with_head.model_fields_set.add("projection")  # as if set by IMAGE2MOOD_PROJECTION
    trained = _answer_in_process(with_head, image, tmp_path / "store-a")
    shipped = _answer_in_process(settings, image, tmp_path / "store-b")
    assert [m["key"] for m in answer["moods"]] == [m["key"] for m in trained["moods"]]
    np.testing.assert_allclose(_query_facts(answer), _query_facts(trained), atol=2e-4)
    assert np.abs(np.subtract(_query_facts(answer), _query_facts(shipped))).max() > 0.01, (answer, shipped)


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


BRIDGE_HELD_OUT = slice(3000, 3100)  # corpus sentences the bridge never trains on (it takes the first --limit)


def test_text_bridge_trains_on_the_shipped_corpus_and_places_held_out_sentences_near_their_own_text(
        cli_env: dict[str, str], settings: Settings, tiny_models: Path, tmp_path: Path) -> None:
    """The bridged head maps a sentence's CLIP text vector nearer its own CLAP text vector than the other
    sentences': on 100 held-out sentences, R@10 is 0.1 by chance and must be at least 0.3."""
    out = tmp_path / "bridge.pt"
    result = run_cli(["train", "projection", "--mode", "text-bridge", "--out", str(out), "--limit", "1000",
                      "--epochs", "30", "--hidden", "64", "--batch-size", "64", "--lr", "3e-3"],
                     {**cli_env, "IMAGE2MOOD_THREADS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the shipped caption corpus: 1000 pairs" in result.stderr
    assert re.search(r"best epoch \d+: valid R@1 [\d.]+ R@5 [\d.]+ R@10 [\d.]+ \(untrained: R@1", result.stdout)
    models = [resolve_model(k, str(tiny_models / k)) for k in ("clip", "clap")]
    head = load_projection(out, *models)
    assert head.config.in_dim == 64 and head.config.out_dim == 512
    records = [json.loads(line) for line in (tmp_path / "bridge.metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(31))
    assert (tmp_path / "bridge.metrics.png").is_file()
    assert {p.name for p in (tmp_path / "bridge-features").iterdir()} == {"clip-text.npz", "clap-text.npz"}

    held_out = caption_corpus()[BRIDGE_HELD_OUT]
    features = Features(factory.image_encoder(settings).encode_text(held_out),
                        factory.clap_encoder(settings).encode_text(held_out), np.arange(len(held_out)))
    bridged = evaluate_head(head, features)
    untrained = evaluate_head(load_projection(tiny_models / PROJECTION_FILE, *models), features)
    assert bridged["R@10"] >= 0.1 + 0.2 and bridged["R@5"] >= 0.05 + 0.1, bridged
    assert bridged["R@10"] >= untrained["R@10"] + 0.15, (bridged, untrained)


def test_centring_is_folded_into_the_saved_head() -> None:
    train, valid = _known_answer(200, seed=0), _known_answer(50, seed=1)
    train.inputs += 0.5  # a constant offset, like the gap between CLIP's text and image vectors
    valid.inputs += 0.5
    trained = train_head(train, valid, HeadConfig(epochs=5, batch_size=64, hidden=32, centre=True, noise=0.04),
                         progress=False)
    assert evaluate_head(trained.head, valid) == pytest.approx({k: trained.best[k] for k in ("R@1", "R@5", "R@10")})
