"""The JSON API: /api/health, /api/recommend, /api/search, /api/songs/<id>/similar, /api/openapi.json."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from image2mood.answers import recommendation_json, song_json
from image2mood.config import is_tiny
from image2mood.images import load_photo
from image2mood.models.resolve import looks_like_path
from image2mood.recommend import Options, Recommender
from service.fields import QueryOptions, SearchQuery, parse
from service.openapi import openapi_document

api = Blueprint("api", __name__, url_prefix="/api")


def recommender() -> Recommender:
    return current_app.extensions["image2mood"]


def _options(fields: QueryOptions | None = None) -> Options:
    """The query options of this request (its query string or form fields), validated."""
    fields = fields or parse(QueryOptions, request.values.to_dict())
    return fields.options(recommender().settings.top)


def model_name(spec: str) -> str:
    """A model as the public may see it: a hub id as it is, a local folder or file by its name alone."""
    return Path(spec).name if looks_like_path(spec) else spec


@api.get("/health")
def health():
    """Which models answer and how many songs there are; no paths of this machine."""
    r = recommender()
    settings = r.settings
    models = {kind: model_name(settings.model_spec(kind)) for kind in ("clip", "blip", "clap")}
    projection = settings.projection_path()
    return jsonify(
        status="ok",
        models={**models, "projection": projection.name if projection else None},
        tiny_models=settings.models is not None and is_tiny(settings.models),
        store={"kind": r.store.kind, "songs": r.store.count()},
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
    query = parse(SearchQuery, request.args.to_dict())
    answer = recommender().for_text(query.q, _options(query))
    return jsonify({"query": query.q, **recommendation_json(answer)})


@api.get("/songs/<song_id>/similar")
def similar(song_id: str):
    song, rec = recommender().similar(song_id, _options())
    return jsonify({"song": song_json(song), **recommendation_json(rec)})


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
