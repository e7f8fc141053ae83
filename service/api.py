"""The JSON API: /api/health, /api/recommend, /api/search, /api/songs/<id>/similar, /api/openapi.json."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from image2mood.config import is_tiny
from image2mood.images import load_photo
from image2mood.recommend import Options, RankedSong, Recommendation, Recommender
from image2mood.store.base import Song, SongFilter
from service.openapi import openapi_document

api = Blueprint("api", __name__, url_prefix="/api")


def recommender() -> Recommender:
    return current_app.extensions["image2mood"]


def _number(name: str, kind: type, low: float | None = None, high: float | None = None):
    """An optional numeric query/form field, or 400 naming the field."""
    raw = request.values.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a {'whole number' if kind is int else 'number'}, got {raw!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"'{name}' must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _options() -> Options:
    settings = recommender().settings
    text = {name: request.values.get(name, "").strip() or None for name in ("artist", "genre")}
    return Options(
        top=_number("top", int, 1, 100) or settings.top,
        alpha=_number("alpha", float, 0, 1),
        song_filter=SongFilter(
            artist=text["artist"], genre=text["genre"],
            min_duration=_number("min_duration", float, 0), max_duration=_number("max_duration", float, 0),
        ),
        max_per_artist=_number("max_per_artist", int, 1, 100),
        mmr=_number("mmr", float, 0, 1),
    )


def song_json(song: Song) -> dict[str, Any]:
    return {"id": song.id, "title": song.title, "artist": song.artist, "album": song.album,
            "genre": song.genre, "duration": song.duration,
            "audio_url": f"/audio/{song.id}"}


def _ranked_json(ranked: RankedSong) -> dict[str, Any]:
    return {**song_json(ranked.song), "score": round(ranked.score, 4),
            "moods": [m.to_json() for m in ranked.moods]}


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    body: dict[str, Any] = {"route": rec.route}
    if rec.caption is not None:
        body.update(caption=rec.caption, alpha=rec.alpha, note=rec.note,
                    face=rec.face.to_json() if rec.face else None, timings_ms=rec.timings_ms)
    body.update(moods=[m.to_json() for m in rec.moods], songs=[_ranked_json(s) for s in rec.songs])
    return body


@api.get("/health")
def health():
    r = recommender()
    settings = r.settings
    models = {kind: settings.model_spec(kind) for kind in ("clip", "blip", "clap")}
    projection = settings.projection_path()
    return jsonify(
        status="ok",
        models={**models, "projection": str(projection) if projection else None},
        tiny_models=settings.models is not None and is_tiny(settings.models),
        store={"kind": r.store.kind, "location": r.store.location, "songs": r.store.count()},
    )


@api.post("/recommend")
def recommend():
    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("send the photo as a multipart/form-data file in the field 'image'")
    options = _options()
    name = upload.filename or "the uploaded file"
    photo = load_photo(upload.read(), name=name, max_pixels=recommender().settings.max_image_pixels)
    return jsonify(recommendation_json(recommender().for_photo(photo, options)))


@api.get("/search")
def search():
    text = request.args.get("q", "").strip()
    if not text:
        raise BadRequest("give the text to search for in 'q', e.g. /api/search?q=rainy+night")
    return jsonify({"query": text, **recommendation_json(recommender().for_text(text, _options()))})


@api.get("/songs/<song_id>/similar")
def similar(song_id: str):
    song, rec = recommender().similar(song_id, _options())
    return jsonify({"song": song_json(song), **recommendation_json(rec)})


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
