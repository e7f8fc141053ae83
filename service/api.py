"""The JSON API: /api/health, /api/recommend, /api/search, /api/songs/<id>/similar, /api/openapi.json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from PIL import Image
from werkzeug.exceptions import BadRequest

from image2mood.answers import recommendation_json, song_json
from image2mood.config import is_tiny
from image2mood.errors import Image2MoodError
from image2mood.images import load_configured_photo
from image2mood.models.resolve import looks_like_path
from image2mood.recommend import Options, Recommendation, Recommender
from service.fields import PhotoForm, QueryOptions, SearchQuery, parse
from service.openapi import openapi_document
from service.share import hold

api = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)
STREAM_TYPE = "application/x-ndjson"


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
        music_server=settings.subsonic_url is not None,
    )


@api.post("/recommend")
def recommend():
    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("send the photo as a multipart/form-data file in the field 'image'")
    form = parse(PhotoForm, request.values.to_dict())
    options = _options(form)
    name = upload.filename or "the uploaded file"
    photo = load_configured_photo(upload.read(), name, recommender().settings)
    client = request.remote_addr or ""  # whose photos the model memo may answer from (photo_memo)
    languages = form.languages(recommender().settings.caption_languages)
    if request.args.get("stream", "").lower() in ("1", "true", "yes"):
        events = _events(recommender(), photo, options, form.share_photo, client, languages)
        return Response(stream_with_context(events), mimetype=STREAM_TYPE,
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    rec = recommender().for_photo(photo, options, client=client)
    return jsonify(photo_answer(recommender().add_captions(rec, languages), photo, form.share_photo, languages[0]))


def photo_answer(rec: Recommendation, photo: Image.Image, share_photo: bool, language: str,
                 result_id: str | None = None) -> dict:
    """The plain answer to a photo: the JSON body of POST /api/recommend and the streamed `answer` event.
    It is held to be kept on demand (its ``result_id``, or the one given: the same answer held again), with a
    thumbnail of the photo only when the person chose to share it; its share page is in ``language``."""
    thumbnail_of = photo if share_photo else None
    return recommendation_json(rec, result_id=hold(rec, photo=thumbnail_of, language=language, result_id=result_id))


def _events(r: Recommender, photo: Image.Image, options: Options, share_photo: bool, client: str,
            languages: tuple[str, ...]) -> Iterator[str]:
    """``?stream=1``: JSON lines, ``{"event": "songs", ...}`` (the image route, with a projection head) as soon
    as it is ready, then ``{"event": "answer", ...}`` (the plain answer), then, when the caption had to be
    translated into a language asked for, ``{"event": "captions", "result_id", "captions"}`` (translating
    never delays the songs); a failure ends it with an ``error``."""
    try:
        for kind, rec in r.stream_photo(photo, options, client):
            body = photo_answer(rec, photo, share_photo, languages[0]) if kind == "answer" else recommendation_json(rec)
            yield json.dumps({"event": kind, **body}, ensure_ascii=False) + "\n"
        translated = r.add_captions(rec, languages)
        if translated is not rec:
            body = photo_answer(translated, photo, share_photo, languages[0], result_id=body["result_id"])
            extra = {"caption_note": body["caption_note"]} if "caption_note" in body else {}
            yield json.dumps({"event": "captions", "result_id": body["result_id"], "captions": body["captions"],
                              **extra}, ensure_ascii=False) + "\n"
    except Image2MoodError as exc:  # the status the plain answer would have had
        from service.app import status_for  # the app module imports this one

        status = status_for(exc)
        yield json.dumps({"event": "error", "error": {"status": status, "message": str(exc)}}) + "\n"
    except Exception:
        log.exception("unexpected error while streaming an answer")
        yield json.dumps({"event": "error", "error": {"status": 500,
                                                      "message": "internal error; the server log has the details"}}) + "\n"


@api.get("/search")
def search():
    query = parse(SearchQuery, request.args.to_dict())
    answer = recommender().for_text(query.q, _options(query))
    return jsonify({"query": query.q, **recommendation_json(answer, result_id=hold(answer, query=query.q))})


@api.get("/songs/<song_id>/similar")
def similar(song_id: str):
    song, rec = recommender().similar(song_id, _options())
    label = " — ".join(part for part in (song.title, song.artist) if part)
    return jsonify({"song": song_json(song), **recommendation_json(rec, result_id=hold(rec, query=label))})


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
