"""Captions in the reader's language with the tiny NLLB translator: `recommend` (JSON, plain, playlist), the API
(lang=, the streamed `captions` event after the songs, the share page, Open Graph and the playlists), and a
captioner that writes Korean, whose captions reach CLAP's text tower in English."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient
from PIL import Image

from conftest import run_cli
from image2mood.config import Settings
from image2mood.library import store_info
from image2mood.models import factory
from image2mood.recommend import Recommender
from image2mood.results import result_from
from image2mood.store import open_store
from indexer.pipeline import Indexer
from media import write_tone
from media_captions import KOREAN, captioned_image, one_thread  # noqa: F401
from media_images import write_photo
from service.app import create_app

pytestmark = pytest.mark.usefixtures("one_thread")
ENG, KOR = "eng_Latn", "kor_Hang"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Settings:
    """Four indexed songs and a photo, on the tiny models."""
    root = tmp_path_factory.mktemp("captions")
    for i in range(4):
        write_tone(root / f"song{i}.flac", seconds=3 + i, freq=200 + 90 * i,
                   tags={"title": f"Song {i}", "artist": "Ana", "album": "A", "genre": "Pop"})
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1,
                        results=root / "results", threads=1)
    encoder = factory.clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        assert Indexer(store, encoder, settings, warn=lambda line: None).run([root]).indexed == 4
    write_photo(root / "photo.jpg", size=(320, 240), color=(200, 90, 40))
    return settings


def photo_of(settings: Settings) -> Path:
    return Path(settings.store).parent / "photo.jpg"


def korean_of(settings: Settings, english: str) -> str:
    """What the translator itself makes of ``english`` (called directly, not through an answer)."""
    return factory.translator(settings).translate([english], ENG, KOR)[0]


# ---------------------------------------------------------------- `recommend`


def test_recommend_json_has_the_translators_korean_and_the_same_songs(library: Settings, cli_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    env = {**cli_env, "IMAGE2MOOD_STORE": library.store, "IMAGE2MOOD_THREADS": "1"}
    korean = run_cli(["recommend", str(photo_of(library)), "--json"], {**env, "IMAGE2MOOD_CAPTION_LANGUAGES": "ko"},
                     tmp_path)
    english = run_cli(["recommend", str(photo_of(library)), "--json"], env, tmp_path)
    assert korean.returncode == 0 and english.returncode == 0, korean.stderr + english.stderr
    ko, en = json.loads(korean.stdout), json.loads(english.stdout)
    assert set(ko["captions"]) == {"en", "ko"} and set(en["captions"]) == {"en"}
    assert ko["caption"] == ko["captions"]["en"] == en["caption"]
    assert ko["captions"]["ko"] == korean_of(library, ko["caption"]) != ko["caption"]
    assert "translate" in ko["timings_ms"] and "translate" not in en["timings_ms"]
    strip = lambda body: [(s["id"], s["score"]) for s in body["songs"]]  # noqa: E731
    assert strip(ko) == strip(en) and ko["moods"] == en["moods"]  # the display language moves no song


def test_recommend_prints_and_titles_its_playlist_in_the_chosen_language(
        library: Settings, cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "IMAGE2MOOD_STORE": library.store, "IMAGE2MOOD_THREADS": "1",
           "IMAGE2MOOD_CAPTION_LANGUAGES": "ko,en"}
    done = run_cli(["recommend", str(photo_of(library)), "--playlist", str(tmp_path / "a.m3u8")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    english = re.search(r"^  \(en\) (.+)$", done.stdout, re.M).group(1)
    korean = korean_of(library, english)
    assert f"caption: {korean}\n" in done.stdout
    assert f"#PLAYLIST:{korean}\n" in (tmp_path / "a.m3u8").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the API, the share page, the playlists


@pytest.fixture(scope="module")
def client(library: Settings):
    app = create_app(library)
    yield app.test_client()
    app.extensions["image2mood"].store.close()


def test_the_query_vector_is_the_same_whatever_the_display_language(client: FlaskClient, library: Settings) -> None:
    recommender = client.application.extensions["image2mood"]
    plain = recommender.for_photo(Image.open(photo_of(library)).convert("RGB"))
    shown = recommender.add_captions(plain, ("ko",))
    assert shown.captions["ko"] == korean_of(library, plain.caption) and "ko" not in plain.captions
    kept = result_from(shown, language="ko")
    assert np.array_equal(shown.vector, plain.vector)
    assert kept.vector == result_from(plain).vector and kept.captions == shown.captions
    assert [s.song.id for s in shown.songs] == [s.song.id for s in plain.songs]


def post(client: FlaskClient, settings: Settings, query: str = "", **fields: str):
    form = {"image": (io.BytesIO(photo_of(settings).read_bytes()), "photo.jpg"), **fields}
    return client.post("/api/recommend" + query, data=form, content_type="multipart/form-data")


def test_lang_asks_for_the_korean_caption_and_an_unknown_one_is_a_400(client: FlaskClient,
                                                                      library: Settings) -> None:
    body = post(client, library, lang="ko").get_json()
    assert body["captions"]["ko"] == korean_of(library, body["captions"]["en"])
    assert set(post(client, library).get_json()["captions"]) == {"en"}  # IMAGE2MOOD_CAPTION_LANGUAGES: en
    refused = post(client, library, lang="fr")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["message"].startswith("'lang': value error, fr is not a caption language")
    doc = client.get("/api/openapi.json").get_json()
    form = doc["paths"]["/api/recommend"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "IMAGE2MOOD_CAPTION_LANGUAGES" in form["properties"]["lang"]["description"]
    documented = doc["components"]["schemas"]["PhotoResults"]["allOf"][1]["properties"]
    assert {"captions", "caption_note"} <= set(documented)


def test_the_stream_sends_the_songs_before_the_translation(client: FlaskClient, library: Settings) -> None:
    lines = post(client, library, "?stream=1", lang="ko").get_data(as_text=True).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events][-2:] == ["answer", "captions"]
    answer, captions = events[-2:]
    assert set(answer["captions"]) == {"en"} and "translate" not in answer["timings_ms"]  # not waited for
    assert captions["result_id"] == answer["result_id"]
    assert captions["captions"] == {"en": answer["caption"], "ko": korean_of(library, answer["caption"])}
    assert set(captions) == {"event", "result_id", "captions"}
    english = post(client, library, "?stream=1", lang="en").get_data(as_text=True).splitlines()
    assert json.loads(english[-1])["event"] == "answer"  # nothing to translate: no captions event


def test_share_page_og_tags_and_playlists_use_the_language_asked_in(client: FlaskClient,
                                                                    library: Settings) -> None:
    for lang in ("ko", "en"):
        events = [json.loads(line) for line in
                  post(client, library, "?stream=1", lang=lang).get_data(as_text=True).splitlines()]
        result_id = events[-1]["result_id"]
        caption = events[-1]["captions"][lang]
        page = client.get(f"/r/{result_id}").get_data(as_text=True)
        assert f'<meta property="og:title" content="{caption}">' in page
        assert f"<title>{caption} · image2mood</title>" in page
        heading = re.search(r'<h1 id="caption"[^>]*>([^<]*)</h1>', page)
        assert heading.group(1) == caption and f'lang="{lang}"' in heading.group(0)
        if lang == "ko":  # both captions, for the viewer's language switch
            assert f'data-ko="{caption}"' in heading.group(0) and f'data-en="{events[-2]["caption"]}"' in heading.group(0)
        m3u8 = client.get(f"/api/results/{result_id}/playlist.m3u8").get_data(as_text=True)
        assert f"#PLAYLIST:{caption}\n" in m3u8
        xspf = client.get(f"/api/results/{result_id}/playlist.xspf").get_data(as_text=True)
        assert f"<title>{caption}</title>" in xspf


def test_without_a_translator_the_answer_keeps_english_and_says_why(client: FlaskClient, library: Settings,
                                                                     tmp_path: Path) -> None:
    store = client.application.extensions["image2mood"].store
    missing = Recommender(library.model_copy(update={"translator": str(tmp_path / "nowhere")}), store)
    rec = missing.add_captions(missing.for_photo(Image.open(photo_of(library)).convert("RGB")), ("ko",))
    assert set(rec.captions) == {"en"} and str(tmp_path) not in rec.caption_note  # no paths to browsers
    assert rec.caption_note.startswith("no caption in ko: the NLLB translator is not installed")
    assert "--with-translator" in rec.caption_note


# ---------------------------------------------------------------- a captioner that writes Korean


@pytest.fixture(scope="module")
def korean_blip(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`train blip --caption-language kor_Hang` on eight photos with Korean captions (two steps)."""
    from conftest import cli_environment

    work = tmp_path_factory.mktemp("blip-ko")
    (work / "images").mkdir()
    rows = []
    for i in range(8):
        captioned_image(i, seed=i).save(work / "images" / f"{i}.jpg")
        rows.append({"id": str(i), "url": f"https://example.org/{i}.jpg", "eng_caption": f"caption {i}",
                     "captions": [["kor_Hang", KOREAN[i]]], "score": 0.4})
    pq.write_table(pa.Table.from_pylist(rows), work / "nllb.parquet")
    out = work / "blip-ko"
    trained = run_cli(["train", "blip", str(work / "nllb.parquet"), "--images", str(work / "images"),
                       "--caption-language", KOR, "--out", str(out), "--max-steps", "2", "--batch-size", "4",
                       "--image-size", "model", "--add-missing-tokens"],
                      {**cli_environment(tiny_models), "IMAGE2MOOD_THREADS": "1"}, work)
    assert trained.returncode == 0, trained.stderr
    return out


def test_a_korean_captioners_caption_reaches_clap_in_english(client: FlaskClient, library: Settings,
                                                              korean_blip: Path) -> None:
    assert json.loads((korean_blip / "config.json").read_text())["caption_language"] == KOR  # recorded
    settings = library.model_copy(update={"blip_model": str(korean_blip)})
    recommender = Recommender(settings, client.application.extensions["image2mood"].store)
    assert factory.captioner(settings).language == KOR
    read_by_clap: list[list[str]] = []
    encode_text = recommender.clap.encode_text  # the real encoder's method, wrapped, not replaced
    recommender.clap.encode_text = lambda texts: read_by_clap.append(list(texts)) or encode_text(texts)
    try:
        rec = recommender.for_photo(Image.open(photo_of(library)).convert("RGB"))
    finally:
        del recommender.clap.encode_text
    english = factory.translator(settings).translate([rec.caption], KOR, ENG)[0]
    assert english != rec.caption
    assert [english] in read_by_clap and [rec.caption] not in read_by_clap
    assert rec.captions == {"ko": rec.caption, "en": english}  # the original is the one shown in Korean
    assert "BLIP's caption (kor_Hang) was translated into English for CLAP's text tower" in rec.note
    assert "caption_to_english" in rec.timings_ms
