"""The Flask service with the tiny model set over a generated library: schema, routes, filters, audio, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from image2mood.config import Settings
from image2mood.models.factory import clap_encoder
from image2mood.models.projection import ProjectionConfig, ProjectionHead, save_projection
from image2mood.models.resolve import resolve_model
from image2mood.recommend import Options, Recommender
from indexer.pipeline import Indexer
from media import write_tone
from media_images import truncated_jpeg, write_huge_png, write_photo
from service.app import create_app

ARTISTS = ("Ana", "Ben", "Cho")
GENRES = ("Ambient", "Dance")
SONGS = 12


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Settings:
    """A store of 12 indexed songs: 3 artists, 2 genres, 3 to 8.5 seconds long."""
    root = tmp_path_factory.mktemp("library")
    for i in range(SONGS):
        tags = {"title": f"Song {i}", "artist": ARTISTS[i % 3], "album": f"Album {i % 2}", "genre": GENRES[i % 2]}
        write_tone(root / f"song{i:02d}.{'flac' if i % 2 else 'ogg'}", seconds=3 + 0.5 * i,
                   freq=150 + 70 * i, tags=tags)
    settings = Settings(_env_file=None, models=tiny_models, store=str(root / "store"), windows_per_song=1)
    from image2mood.library import store_info
    from image2mood.store import open_store

    encoder = clap_encoder(settings)
    with open_store(settings.store, info=store_info(encoder, settings)) as store:
        report = Indexer(store, encoder, settings, warn=lambda line: None).run([root])
    assert report.indexed == SONGS
    return settings


@pytest.fixture(scope="module")
def app(library: Settings):
    app = create_app(library)
    yield app
    app.extensions["image2mood"].store.close()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def photo_bytes(tmp_path: Path, color=(200, 90, 40), size=(640, 480), name="photo.jpg") -> bytes:
    return write_photo(tmp_path / name, size=size, color=color).read_bytes()


def post_photo(client: FlaskClient, data: bytes, name: str = "photo.jpg", **fields):
    form = {"image": (io.BytesIO(data), name), **{k: str(v) for k, v in fields.items()}}
    return client.post("/api/recommend", data=form, content_type="multipart/form-data")


def test_health_names_models_and_counts_songs(client: FlaskClient, library: Settings) -> None:
    response = client.get("/api/health")
    body = response.get_json()
    assert body["status"] == "ok" and body["tiny_models"] is True
    assert body["store"] == {"kind": "embedded", "songs": SONGS}
    assert body["models"] == {"clip": "clip", "blip": "blip", "clap": "clap", "projection": "projection.pt"}
    text = response.get_data(as_text=True)  # names, never where they live on this machine
    assert str(library.models) not in text and str(Path(library.store).parent) not in text
    schema = client.get("/api/openapi.json").get_json()["components"]["schemas"]["Health"]
    assert list(schema["properties"]) == schema["required"] == list(body)
    for part in ("models", "store"):
        assert schema["properties"][part]["required"] == list(body[part])


def test_recommend_returns_the_documented_schema(client: FlaskClient, tmp_path: Path) -> None:
    response = post_photo(client, photo_bytes(tmp_path), top=5)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["route"] == "fused" and isinstance(body["caption"], str) and body["caption"]
    assert body["alpha"] == 0.5 and body["note"].startswith("no face models are installed")  # the only note: no faces/ here
    assert 1 <= len(body["moods"]) and {"key", "en", "ko", "score"} <= set(body["moods"][0])
    assert len(body["songs"]) == 5
    scores = [song["score"] for song in body["songs"]]
    assert scores == sorted(scores, reverse=True)
    for song in body["songs"]:
        assert {"id", "title", "artist", "album", "duration", "score", "moods", "audio_url"} <= set(song)
        assert song["audio_url"] == f"/audio/{song['id']}" and song["moods"]
    # every field the OpenAPI document requires is there
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["Results"]["required"]) <= set(body)
    assert set(schemas["PhotoResults"]["allOf"][1]["required"]) <= set(body)
    assert set(schemas["Song"]["required"]) <= set(body["songs"][0])


def test_alpha_zero_is_the_caption_route_and_projection_changes_the_image_route(
        app, library: Settings, tmp_path: Path) -> None:
    store = app.extensions["image2mood"].store
    photo = write_photo(tmp_path / "p.png", size=(300, 300), color=(20, 160, 220))
    from image2mood.images import load_photo

    image = load_photo(photo)
    with_head = Recommender(library, store)
    no_head = Recommender(library.model_copy(update={"projection": "none"}), store)

    caption_only = no_head.for_photo(image, Options(top=SONGS))
    assert caption_only.route == "caption" and "caption alone" in caption_only.note
    alpha0 = with_head.for_photo(image, Options(top=SONGS, alpha=0.0))
    assert alpha0.route == "caption"
    assert [s.song.id for s in alpha0.songs] == [s.song.id for s in caption_only.songs]
    assert np.allclose([s.score for s in alpha0.songs], [s.score for s in caption_only.songs], atol=1e-6)

    other = tmp_path / "other-projection.pt"
    models = Path(library.models)
    first = with_head.projection
    save_projection(other, ProjectionHead(ProjectionConfig(first.config.in_dim, first.config.out_dim, 0)),
                    resolve_model("clip", str(models / "clip")), resolve_model("clap", str(models / "clap")))
    image_a = with_head.for_photo(image, Options(top=SONGS, alpha=1.0))
    image_b = Recommender(library.model_copy(update={"projection": str(other)}), store).for_photo(
        image, Options(top=SONGS, alpha=1.0))
    assert image_a.route == image_b.route == "image"
    assert [s.score for s in image_a.songs] != [s.score for s in image_b.songs]


def test_filters_and_per_artist_limits_hold(client: FlaskClient, tmp_path: Path) -> None:
    data = photo_bytes(tmp_path)
    by_artist = post_photo(client, data, artist="Ben", top=10).get_json()["songs"]
    assert by_artist and {s["artist"] for s in by_artist} == {"Ben"}
    by_genre = post_photo(client, data, genre="Dance", top=10).get_json()["songs"]
    assert len(by_genre) == SONGS // 2 and {s["genre"] for s in by_genre} == {"Dance"}
    ranged = post_photo(client, data, min_duration=4, max_duration=6, top=10).get_json()["songs"]
    assert ranged and all(4 <= s["duration"] <= 6 for s in ranged)
    capped = post_photo(client, data, max_per_artist=1, top=10).get_json()["songs"]
    assert sorted(s["artist"] for s in capped) == sorted(ARTISTS)
    diverse = post_photo(client, data, mmr=0.3, max_per_artist=2, top=5).get_json()["songs"]
    assert len(diverse) == 5 and max(sum(s["artist"] == a for s in diverse) for a in ARTISTS) <= 2
    bad = post_photo(client, data, top="many")
    assert bad.status_code == 400 and "'top'" in bad.get_json()["error"]["message"]


def test_text_search_and_more_like_this(client: FlaskClient) -> None:
    found = client.get("/api/search?q=rainy+night+in+the+city&top=4").get_json()
    assert found["query"] == "rainy night in the city" and found["route"] == "text" and len(found["songs"]) == 4
    assert client.get("/api/search").status_code == 400

    seed = found["songs"][0]["id"]
    similar = client.get(f"/api/songs/{seed}/similar?top=20").get_json()
    assert similar["song"]["id"] == seed and similar["route"] == "song"
    assert seed not in {s["id"] for s in similar["songs"]} and len(similar["songs"]) == SONGS - 1
    for bad_id in ("0b5a0f0e-0000-4000-8000-000000000000", "not-a-song"):
        response = client.get(f"/api/songs/{bad_id}/similar")
        assert response.status_code == 404 and "error" in response.get_json()


def test_audio_honours_range_and_refuses_unknown_ids(client: FlaskClient, library: Settings) -> None:
    song = client.get("/api/search?q=calm&top=1").get_json()["songs"][0]
    whole = client.get(song["audio_url"])
    assert whole.status_code == 200 and len(whole.data) > 1000
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get(song["audio_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.data)}"
    for bad in ("0b5a0f0e-0000-4000-8000-000000000000", "..%2F..%2Fetc%2Fpasswd", "not-an-id"):
        response = client.get(f"/audio/{bad}")
        assert response.status_code == 404 and response.is_json


def test_bad_uploads_get_their_4xx_and_the_next_request_works(client: FlaskClient, tmp_path: Path) -> None:
    good = photo_bytes(tmp_path)
    huge_png = write_huge_png(tmp_path / "huge.png", 30000, 30000).read_bytes()
    cases = [
        ("notes.jpg", b"this is not a photo\n" * 10, 400, "notes.jpg"),
        ("cut.jpg", truncated_jpeg(tmp_path / "cut.jpg").read_bytes(), 400, "cut.jpg"),
        ("huge.png", huge_png, 400, "30000"),
        ("big.jpg", good + b"\0" * (25 * 1024 * 1024), 413, ""),
        ("empty.jpg", b"", 400, "empty.jpg"),
    ]
    for name, data, status, mentioned in cases:
        response = post_photo(client, data, name=name)
        assert response.status_code == status, (name, response.get_data(as_text=True)[:300])
        body = response.get_json()
        assert body["error"]["status"] == status and mentioned in body["error"]["message"]
        assert "Traceback" not in response.get_data(as_text=True)
        assert post_photo(client, good, top=3).status_code == 200
    missing = client.post("/api/recommend", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "'image'" in missing.get_json()["error"]["message"]
    assert client.get("/api/nowhere").status_code == 404 and client.get("/api/nowhere").is_json

