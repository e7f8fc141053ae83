"""The tuning tool end to end on tiny models: a library with planted truth, sweeps, reports, the cache.

The planted library: photo and text queries go through the tool's own query path (BLIP caption, CLIP,
projection, CLAP text, fusion at the configured alpha); songs are planted around each query, and a
query's relevant songs are the ones nearest to it in the stored vectors. That set must score 1.0;
the same songs with their vectors shuffled must score near chance, and the comparison must say so.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faces_data import face_folder, real_photos, wheels_dir  # noqa: F401
from image2mood.library import song_id, store_info
from image2mood.models import factory
from image2mood.models.blip import Captioner
from image2mood.models.clip import ImageEncoder
from image2mood.moods import MOOD_TEMPLATES, MOODS
from image2mood.store import Song, open_store
from image2mood.vectors import l2_normalise
from image2mood_cli.main import cli
from media import write_tone
from test_web import ARTIFACTS, screenshot
from tuning.cache import QueryCache
from tuning.evalset import load_set
from tuning.knobs import Knobs, SongVectors
from tuning.sweep import Sweep, query_vector, query_vectors

PHOTOS, TEXTS = 8, 4
PER_QUERY = 3  # relevant songs per query
DISTRACTORS = 40
K = 3


def tune(args: list[str], tiny_models: Path, stdout: bool = False) -> str:
    """Run `image2mood tune ...` in this process (so model calls can be counted): its stdout + stderr,
    or its stdout alone."""
    result = CliRunner().invoke(cli, ["tune", *args], env={"IMAGE2MOOD_MODELS": str(tiny_models)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout if stdout else result.output


def noise_photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # blocks of colour, different per photo
    Image.fromarray(small).resize((320, 240), Image.NEAREST).save(path, "JPEG", quality=90)
    return path


@pytest.fixture(scope="module")
def world(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Photos, texts, an evaluation set, song labels, and the planted and shuffled stores."""
    from image2mood.config import Settings

    work = tmp_path_factory.mktemp("tune")
    settings = Settings(_env_file=None, models=tiny_models, store=str(work / "planted"))
    (work / "photos").mkdir()
    for i in range(PHOTOS):
        noise_photo(work / "photos" / f"p{i}.jpg", i)
    texts = ["rain on a quiet night", "a loud summer party", "sunrise over the sea", "an empty old house"]
    lines = [{"id": f"photo{i}", "photo": f"photos/p{i}.jpg"} for i in range(PHOTOS)]
    lines += [{"id": f"text{i}", "text": t} for i, t in enumerate(texts)]

    # The queries' vectors exactly as the tool makes them at the configured setting.
    cache = QueryCache(settings, work / "cache")
    set_path = work / "set.jsonl"
    set_path.write_text("".join(json.dumps({**line, "labels": ["x"]}) + "\n" for line in lines))
    sweep = Sweep(settings, work, cache, lambda line: None)
    knobs = Knobs(settings.alpha, settings.projection_path(), MOOD_TEMPLATES, MOODS, None, None, 0.5,
                  SongVectors(settings.windows_per_song, settings.window_seconds))
    vectors = query_vectors(load_set(set_path), cache, lambda line: None)
    head = sweep.head(knobs.projection)
    queries = np.stack([query_vector(qv, knobs, head, sweep.space(MOODS, MOOD_TEMPLATES)) for qv in vectors])

    rng = np.random.default_rng(7)
    planted = [l2_normalise(q + 0.3 * l2_normalise(rng.normal(size=q.shape)))
               for q in queries for _ in range(PER_QUERY)]
    planted += list(l2_normalise(rng.normal(size=(DISTRACTORS, queries.shape[1]))))
    matrix = np.stack(planted)
    paths = [work / "music" / f"artist{i % 7}" / f"song{i}.flac" for i in range(len(matrix))]
    songs = [Song(id=song_id(p), path=str(p), content_hash=f"h{i}", title=f"Song {i}", artist=f"Artist {i % 7}",
                  genre="Test", duration=60.0, vector=v) for i, (p, v) in enumerate(zip(paths, matrix))]

    # Truth follows the stored vectors: each query's PER_QUERY nearest songs.
    nearest = [np.argsort(-(matrix @ q))[:PER_QUERY] for q in queries]
    song_labels: dict[int, set[str]] = {}
    for qi, found in enumerate(nearest):
        query_line = lines[qi]
        if qi % 2:  # odd queries by label, even ones by the exact songs (paths and ids mixed)
            query_line["labels"] = [f"group{qi}"]
            for si in found:
                song_labels.setdefault(int(si), set()).add(f"group{qi}")
        else:
            query_line["relevant"] = [str(paths[si].relative_to(work)) if j % 2 else songs[si].id
                                      for j, si in enumerate(found)]
    set_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    labels_path = work / "song-labels.csv"
    with labels_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["song", "labels"])
        for si, labels in song_labels.items():
            writer.writerow([songs[si].id, ";".join(sorted(labels))])

    info = store_info(factory.clap_encoder(settings), settings)
    with open_store(str(work / "planted"), info=info) as store:
        store.upsert(songs)
    shuffled = rng.permutation(len(songs))
    with open_store(str(work / "shuffled"), info=info) as store:
        store.upsert([dataclasses.replace(s, vector=songs[j].vector) for s, j in zip(songs, shuffled)])
    return {"work": work, "set": set_path, "labels": labels_path, "songs": len(songs)}


def run_args(world: dict, store: str, out: str, *extra: str) -> list[str]:
    w = world["work"]
    return ["run", str(world["set"]), "--store", str(w / store), "--out", str(w / out), "--cache", str(w / "cache"),
            "--song-labels", str(world["labels"]), "-k", str(K), *extra]


def test_planted_truth_scores_one_and_shuffled_vectors_near_chance(world: dict, tiny_models: Path) -> None:
    output = tune(run_args(world, "planted", "run-planted"), tiny_models)
    assert "best setting: configured" in output, output
    report = json.loads((world["work"] / "run-planted" / "report.json").read_text())
    metrics = report["configs"][0]["metrics"]
    for name in (f"p@{K}", f"r@{K}", "mrr", f"ndcg@{K}", f"label_p@{K}"):
        assert metrics[name]["mean"] == pytest.approx(1.0), (name, metrics[name])
    assert metrics[f"label_p@{K}"]["n"] == (PHOTOS + TEXTS) // 2  # label-level only where the query has labels
    assert metrics["mood_p@3"]["n"] == 0  # "group…" labels are no mood words
    assert all(result["hit"] for query in report["queries"] for result in query["results"])
    health = report["configs"][0]["health"]
    assert health["songs"] == world["songs"] and 0 < health["coverage"] < 1

    tune(run_args(world, "shuffled", "run-shuffled"), tiny_models)
    shuffled = json.loads((world["work"] / "run-shuffled" / "report.json").read_text())["configs"][0]["metrics"]
    chance = PER_QUERY / world["songs"]  # P@3 of a random ranking
    assert shuffled[f"p@{K}"]["mean"] < chance + 0.15, shuffled
    assert shuffled[f"ndcg@{K}"]["mean"] < 0.25, shuffled

    text = tune(["compare", str(world["work"] / "run-planted"), str(world["work"] / "run-shuffled")], tiny_models)
    assert f"{PHOTOS + TEXTS} shared queries" in text
    assert "B worse (significant)" in text, text
    compared = json.loads(tune(["compare", str(world["work"] / "run-planted"), str(world["work"] / "run-shuffled"),
                                "--json"], tiny_models, stdout=True))
    for name in (f"p@{K}", "mrr", f"ndcg@{K}"):
        row = compared["metrics"][name]
        assert row["significant"] and row["difference"]["high"] < 0, row
    same = json.loads(tune(["compare", str(world["work"] / "run-planted"), str(world["work"] / "run-planted"),
                            "--json"], tiny_models, stdout=True))
    assert {row["verdict"] for row in same["metrics"].values()} == {"no difference"}


def test_alpha_sweep_writes_a_report_that_opens_in_chromium(world: dict, tiny_models: Path) -> None:
    config = world["work"] / "best.env"
    output = tune(run_args(world, "planted", "run-alpha", "--alpha", "0,0.5,1", "--write-config", str(config)),
                  tiny_models)
    report = json.loads((world["work"] / "run-alpha" / "report.json").read_text())
    assert [c["knobs"]["alpha"] for c in report["configs"]] == [0.0, 0.5, 1.0]
    assert [c["name"] for c in report["configs"]] == ["alpha=0.0", "alpha=0.5", "alpha=1.0"]
    assert report["best"]["name"] == report["baseline"] == "alpha=0.5"  # planted at the configured 0.5
    assert report["configs"][0]["vs_baseline"][f"ndcg@{K}"]["verdict"] == "B worse"
    assert report["configs"][1]["metrics"][f"ndcg@{K}"]["mean"] == pytest.approx(1.0)
    assert "best setting: alpha=0.5" in output
    assert "IMAGE2MOOD_ALPHA=0.5" in config.read_text().splitlines()

    html = (world["work"] / "run-alpha" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "src='/" not in html  # self-contained
    driver = _chromium(world["work"])
    try:
        driver.set_window_size(1300, 1000)
        driver.get((world["work"] / "run-alpha" / "report.html").as_uri())
        plot = driver.find_element("id", "metric-plot")
        assert plot.is_displayed()
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plot) > 300
        thumbs = driver.find_elements("css selector", ".query img")
        assert len(thumbs) == PHOTOS
        assert all(driver.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbs)
        assert len(driver.find_elements("css selector", "tr.hit")) == (PHOTOS + TEXTS) * K
        screenshot(driver, ARTIFACTS / "tune-report.png")
        assert (ARTIFACTS / "tune-report.png").stat().st_size > 10_000
    finally:
        driver.quit()


def _chromium(work: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", f"--user-data-dir={work / 'chromium'}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class _Counted:
    """Counts calls to a model method and calls through to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
        self.calls = 0
        original = getattr(cls, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)


def test_a_cached_second_sweep_calls_neither_blip_nor_clip(world: dict, tiny_models: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    blip = _Counted(monkeypatch, Captioner, "caption")
    clip_images = _Counted(monkeypatch, ImageEncoder, "encode_images")
    clip_texts = _Counted(monkeypatch, ImageEncoder, "encode_text")
    photos = 3
    three = world["work"] / "three-photos.jsonl"
    three.write_text("\n".join(world["set"].read_text().splitlines()[:photos]))
    args = run_args(world, "planted", "run-cold", "--alpha", "0.25,0.75", "--face-weight", "0,1")
    args[1] = str(three)
    args[args.index("--cache") + 1] = str(world["work"] / "fresh-cache")
    tune(args, tiny_models)
    assert blip.calls == photos and clip_images.calls == photos  # once per photo, not once per setting
    assert clip_texts.calls >= 1  # the face-reading prompts (no face models in the tiny set: CLIP reads)
    prompt_calls = clip_texts.calls
    cold = json.loads((world["work"] / "run-cold" / "report.json").read_text())["cache"]
    assert cold["computed"]["photo"] == photos and "photo" not in cold["hits"]

    args[args.index("--out") + 1] = str(world["work"] / "run-warm")
    tune(args, tiny_models)
    assert (blip.calls, clip_images.calls, clip_texts.calls) == (photos, photos, prompt_calls)  # none new
    warm = json.loads((world["work"] / "run-warm" / "report.json").read_text())["cache"]
    assert warm["hits"]["photo"] == photos and "photo" not in warm["computed"]


def test_vocabulary_templates_caps_and_mmr_are_swept(world: dict, tiny_models: Path) -> None:
    tune(run_args(world, "planted", "run-knobs", "--vocabulary", "calm,happy,sad", "--vocabulary", "dark,epic,dreamy,x",
                  "--templates", "{} music", "--max-per-artist", "none,1", "--mmr", "none,0.5"), tiny_models)
    report = json.loads((world["work"] / "run-knobs" / "report.json").read_text())
    assert len(report["configs"]) == 2 * 2 * 2
    assert "the configured setting is not among those tried" in " ".join(report["notes"])
    names = {c["name"] for c in report["configs"]}
    assert "vocabulary=calm+happy+sad max_per_artist=1 mmr=0.5" in names, names
    capped = [c for c in report["configs"] if c["knobs"]["max_per_artist"] == 1]
    assert len(capped) == 4
    for config in capped:  # one song per artist: no artist holds more than 1 of the top K
        assert config["health"]["artist_concentration"] == pytest.approx(1 / K), config["health"]
    best = report["configs"][report["best"]["index"]]
    assert {m for q in report["queries"] for m in q["moods"]} <= set(best["knobs"]["vocabulary"])


def test_projection_checkpoints_are_compared(world: dict, tiny_models: Path) -> None:
    checkpoint = tiny_models / "projection.pt"
    config = world["work"] / "caption-only.env"
    tune(run_args(world, "planted", "run-projection", "--projection", "none", "--projection", str(checkpoint),
                  "--write-config", str(config)), tiny_models)
    report = json.loads((world["work"] / "run-projection" / "report.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["projection=none", "projection=projection.pt"]
    assert report["baseline"] == report["best"]["name"] == "projection=projection.pt"  # the configured head
    without, with_head = (c["per_query"][f"ndcg@{K}"] for c in report["configs"])
    assert with_head == [1.0] * (PHOTOS + TEXTS)
    assert without[PHOTOS:] == with_head[PHOTOS:]  # text queries take no image route either way
    assert f"IMAGE2MOOD_PROJECTION={checkpoint}" in config.read_text().splitlines()


def test_song_vector_knobs_reembed_into_a_separate_store(tiny_models: Path, tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    for i, freq in enumerate((220, 330, 440)):
        write_tone(music / f"t{i}.flac", 12.0, freq, tags={"title": f"Tone {i}", "artist": "Tones",
                                                         "genre": "calm" if i % 2 else "happy"})
    runner = CliRunner()
    env = {"IMAGE2MOOD_MODELS": str(tiny_models)}
    indexed = runner.invoke(cli, ["index", str(music), "--store", str(tmp_path / "store")], env=env,
                            catch_exceptions=False)
    assert indexed.exit_code == 0 and "indexed 3," in indexed.output, indexed.output
    eval_set = tmp_path / "set.jsonl"
    eval_set.write_text(json.dumps({"text": "calm piano", "labels": ["calm"]}) + "\n"
                        + json.dumps({"text": "happy song", "labels": ["happy"]}) + "\n")
    args = ["run", str(eval_set), "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--windows", "1,6", "--pooling", "mean,max", "-k", "2"]
    output = tune(args, tiny_models)
    assert "re-embedding 3 of 3 songs with 1x10s-max into a separate store" in output
    assert "the configured store is not changed" in output and "with 6x10s-mean" not in output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["stores"]) == {"1x10s-mean", "1x10s-max", "6x10s-mean", "6x10s-max"}
    assert report["stores"]["6x10s-mean"] == {"location": str(tmp_path / "store"), "songs": 3,
                                              "re-embedded": False, "windowing": "6x10.0s"}
    assert report["stores"]["1x10s-max"]["windowing"] == "1x10.0s-max"
    assert all(report["stores"][label]["songs"] == 3 for label in report["stores"])
    assert {c["name"] for c in report["configs"]} == {"windows=1 pooling=mean", "windows=1 pooling=max",
                                                      "windows=6 pooling=mean", "windows=6 pooling=max"}
    assert "song labels from the genre tags" in " ".join(report["notes"])
    assert all(c["metrics"]["mood_p@3"]["n"] == 2 for c in report["configs"])  # "calm", "happy" are mood words
    # the re-embedded vectors differ from the configured ones; the configured store is untouched
    with open_store(str(tmp_path / "store"), info=None, create=False) as store:
        base = {s.id: s.vector for s in store.scroll(with_vectors=True)}
        assert store.info.windowing == "6x10.0s"
    with open_store(report["stores"]["1x10s-max"]["location"], info=None, create=False) as store:
        variant = {s.id: s.vector for s in store.scroll(with_vectors=True)}
    assert variant.keys() == base.keys()
    assert not all(np.allclose(base[i], variant[i]) for i in base)
    assert "re-embedding 0 of 3 songs with 1x10s-max" in tune(args, tiny_models)  # a second run reuses them


def test_make_set_from_a_photo_folder_and_a_labels_file(tiny_models: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    noise_photo(photos / "beach.jpg", 1)
    noise_photo(photos / "trip" / "night.png", 2)
    noise_photo(photos / "unlabelled.jpg", 3)
    labels = tmp_path / "photos.csv"
    labels.write_text("photo,labels\nbeach.jpg,Happy; energetic\ntrip/night.png,calm\nmissing.jpg,sad\n")
    out = tmp_path / "sets" / "mine.jsonl"
    output = tune(["make-set", str(photos), "--labels", str(labels), "-o", str(out)], tiny_models)
    assert "missing.jpg" in output and "unlabelled.jpg" in output and "2 queries written" in output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"id": "beach.jpg", "photo": "../photos/beach.jpg", "labels": ["energetic", "happy"]},
                     {"id": "trip/night.png", "photo": "../photos/trip/night.png", "labels": ["calm"]}]
    assert [q.photo for q in load_set(out)] == [photos / "beach.jpg", photos / "trip" / "night.png"]


def test_a_photo_that_cannot_be_read_is_left_out(world: dict, tiny_models: Path) -> None:
    (world["work"] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lines = [json.loads(line) for line in world["set"].read_text().splitlines()]
    partial = world["work"] / "partial.jsonl"
    partial.write_text("\n".join(json.dumps(line) for line in [{"photo": "broken.jpg", "labels": ["x"]},
                                                                 *lines[PHOTOS:]]))
    args = run_args(world, "planted", "run-partial")
    args[1] = str(partial)
    output = tune(args, tiny_models)
    assert "skipped query broken.jpg" in output
    report = json.loads((world["work"] / "run-partial" / "report.json").read_text())
    assert len(report["queries"]) == TEXTS
    assert f"left out 1 of {TEXTS + 1} queries, whose photos could not be read: broken.jpg" in report["notes"]


def test_a_bad_set_line_is_named(tiny_models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok", "labels": ["calm"]}) + "\n" + json.dumps({"text": "no truth"}) + "\n")
    result = CliRunner().invoke(cli, ["tune", "run", str(bad), "--out", str(tmp_path / "out")],
                                env={"IMAGE2MOOD_MODELS": str(tiny_models)})
    assert result.exit_code != 0
    assert f"{bad}:2: give 'relevant'" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_the_tuning_query_is_the_vector_the_recommender_answers_with(
        tiny_models: Path, face_folder: Path, real_photos: dict[str, Path], tmp_path: Path) -> None:
    """For a photo with a face (real face models) and for a text, at an alpha other than the default, the
    tool's query vector equals the one Recommender searches with: what the tool tunes is what users get."""
    from image2mood.config import Settings
    from image2mood.images import load_configured_photo
    from image2mood.recommend import Options, Recommender

    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "store"), faces=face_folder)
    alpha, text = 0.3, "rain on a quiet night"
    set_path = tmp_path / "set.jsonl"
    set_path.write_text(json.dumps({"id": "face", "photo": str(real_photos["astronaut.png"]), "labels": ["x"]}) + "\n"
                        + json.dumps({"id": "text", "text": text, "labels": ["x"]}) + "\n")
    cache = QueryCache(settings, tmp_path / "cache")
    sweep = Sweep(settings, tmp_path, cache, lambda line: None)
    knobs = Knobs(alpha, settings.projection_path(), MOOD_TEMPLATES, MOODS, None, None, 0.5,
                  SongVectors(settings.windows_per_song, settings.window_seconds))
    photo_qv, text_qv = query_vectors(load_set(set_path), cache, lambda line: None)
    assert photo_qv.face_moods  # the face pulls
    tool = [query_vector(qv, knobs, sweep.head(knobs.projection), sweep.space(MOODS, MOOD_TEMPLATES))
            for qv in (photo_qv, text_qv)]

    photo = load_configured_photo(real_photos["astronaut.png"].read_bytes(), "astronaut.png", settings)
    with open_store(settings.store, info=store_info(factory.clap_encoder(settings), settings)) as store:
        recommender = Recommender(settings, store)
        answer = recommender.for_photo(photo, Options(alpha=alpha))
        by_text = recommender.for_text(text)
    assert answer.faces and answer.route == "fused" and answer.alpha == alpha
    np.testing.assert_allclose(tool[0], answer.vector, atol=1e-5)
    np.testing.assert_allclose(tool[1], by_text.vector, atol=1e-5)
    unpulled = query_vector(photo_qv, dataclasses.replace(knobs, face_weight=0.0), sweep.head(knobs.projection),
                            sweep.space(MOODS, MOOD_TEMPLATES))
    assert np.abs(tool[0] - unpulled).max() > 1e-3  # the face did move the query
