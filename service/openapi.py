"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Its request fields come from the pydantic models the API validates with (service.fields).
"""

from __future__ import annotations

from typing import Any

from image2mood import __version__
from service.fields import (PhotoForm, PushForm, QueryOptions, SearchQuery, VideoForm, form_properties,
                            query_parameters)
from service.share import PLAYLIST_TYPES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERRORS = {str(code): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
           for code, text in ((400, "Bad input (the message says which field or file)."),
                              (404, "Unknown song id."), (413, "Upload too large."),
                              (416, "The requested byte range is beyond the file."))}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _playlist(kind: str) -> dict[str, Any]:
    """GET /api/results/{result_id}/playlist.<kind>: a kept answer's songs as a playlist of this server's URLs."""
    return {"get": {
        "summary": f"A kept answer's songs, in order, as an {kind.upper()} playlist of this server's /audio/<id> URLs.",
        "parameters": [{"name": "result_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}}],
        "responses": {"200": {"description": "The playlist, as a download.",
                              "content": {PLAYLIST_TYPES[kind].split(";")[0]: {"schema": {"type": "string"}}}},
                      "404": {**_ERRORS["404"], "description": "Unknown or expired result id."}}}}


def _photo_results() -> dict[str, Any]:
    """A photo's answer: one JSON body, or with ``stream=1`` JSON lines each holding an ``event`` and an answer."""
    answer = _json("PhotoResults", "Ranked songs.")
    answer["content"]["application/x-ndjson"] = {"schema": {
        "type": "object", "required": ["event"], "properties": {"event": {"enum": ["songs", "answer", "captions", "error"]}},
        "description": "One line each: `songs` holds Results (the image route, no caption yet), `answer` "
                       "PhotoResults, `captions` (after the answer, when a caption language asked for had to be "
                       "translated) `result_id` and `captions`, `error` an Error's fields."}}
    return answer


def _video() -> dict[str, Any]:
    """POST /api/results/{result_id}/video: the photo with one of a kept answer's songs, as an MP4 to post."""
    problem = {"content": {"application/json": {"schema": _ref("Error")}}}
    return {"post": {
        "summary": "A video to post: the photo (sent again; it was never kept) with the highlight of one of the "
                   "answer's songs, as an MP4 (H.264 and AAC, +faststart). Nothing of it stays on the server.",
        "parameters": [{"name": "result_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}}],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image", "song"], "properties": {
                "image": {"type": "string", "format": "binary", "description": "The photo the answer was for."},
                **form_properties(VideoForm)}}}}},
        "responses": {
            "200": {"description": "The MP4, as a download (Content-Disposition: attachment).",
                    "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
            "400": _ERRORS["400"], "413": _ERRORS["413"],
            "404": {**_ERRORS["404"], "description": "Unknown or expired result id, or a song not in the answer."},
            "422": {**problem, "description": "The song's file is shorter than its clip."},
            "503": {**problem, "description": "Another video is being made (try again after Retry-After "
                                              "seconds), or ffmpeg failed (the service's log says why)."}}}}


def openapi_document() -> dict[str, Any]:
    mood = {"type": "object", "required": ["key", "en", "ko", "score"], "properties": {
        "key": {"type": "string"}, "en": {"type": "string"}, "ko": {"type": "string"},
        "score": {"type": "number", "description": "Cosine similarity to the mood's CLAP prompts."}}}
    song = {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"}, "title": {"type": "string"},
        "artist": {"type": ["string", "null"]}, "album": {"type": ["string", "null"]},
        "genre": {"type": ["string", "null"]}, "duration": {"type": "number"},
        "audio_url": {"type": "string", "description": "GET it to stream the song (Range supported)."}}}
    song["required"] = list(song["properties"])  # every key is always there (null when unknown)
    place = {"valence": {"type": "number", "minimum": -1, "maximum": 1,
                         "description": "Mood map: unpleasant (-1) to pleasant (1)."},
             "arousal": {"type": "number", "minimum": -1, "maximum": 1,
                         "description": "Mood map: calm (-1) to excited (1)."}}
    ranked = {"allOf": [_ref("Song"), {"type": "object", "required": ["score", "moods"], "properties": {
        "score": {"type": "number"}, "moods": {"type": "array", "items": _ref("Mood")}, **place}}]}
    results = {"type": "object", "required": ["route", "moods", "songs"], "properties": {
        "result_id": {"type": "string", "description": "The answer, held to be kept on demand: /r/<result_id> is "
                      "its page to share, /api/results/<result_id>/playlist.m3u8 and .xspf its playlists; the "
                      "first of them, a push or POST /api/results/<result_id>/keep keeps it."},
        **place,
        "route": {"type": "string", "enum": ["fused", "image", "caption", "text", "song"]},
        "moods": {"type": "array", "items": _ref("Mood")},
        "songs": {"type": "array", "items": _ref("RankedSong")}}}
    photo = {"allOf": [_ref("Results"), {"type": "object", "required": ["caption"], "properties": {
        "caption": {"type": "string", "description": "The caption as the captioner wrote it."},
        "captions": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "The caption per page language (en, ko): English always, and each language "
                                    "asked for with `lang`."},
        "caption_note": {"type": "string", "description": "Why a caption language asked for is missing."},
        "alpha": {"type": "number"},
        "note": {"type": ["string", "null"], "description": "Why a route was not used, if one was not."},
        "faces": {"type": "array", "description": "The photo's faces, the most confident first.", "items": {
            "type": "object", "required": ["box", "score", "expression", "en", "ko", "mood", "probabilities"],
            "properties": {
                "box": {"type": ["array", "null"], "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
                        "description": "x1, y1, x2, y2 in photo_size pixels; null for CLIP's whole-photo "
                                       "reading (used when the face models are missing)."},
                "score": {"type": "number", "description": "Confidence that it is a face."},
                "expression": {"type": "string"}, "en": {"type": "string"}, "ko": {"type": "string"},
                "mood": {"type": "string", "description": "The mood the expression counts towards."},
                "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                                  "description": "Expression → probability."}}}},
        "photo_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                       "description": "Width and height (px) the photo was read at."},
        "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}}}}]}
    name = {"type": ["string", "null"], "description": "A hub id, or a local model's folder or file name."}
    health = {"type": "object", "required": ["status", "models", "tiny_models", "store", "music_server"], "properties": {
        "status": {"type": "string", "enum": ["ok"]},
        "models": {"type": "object", "required": ["clip", "blip", "clap", "projection"],
                   "properties": {kind: name for kind in ("clip", "blip", "clap", "projection")}},
        "tiny_models": {"type": "boolean", "description": "Random demo weights: results mean nothing."},
        "store": {"type": "object", "required": ["kind", "songs"], "properties": {
            "kind": {"type": "string", "enum": ["embedded", "server"]}, "songs": {"type": "integer"}}},
        "music_server": {"type": "boolean", "description": "A Subsonic server is configured (answers can be pushed)."}}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["status", "message"],
        "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}}
    options = query_parameters(QueryOptions)
    return {
        "openapi": "3.1.0",
        "info": {"title": "image2mood", "version": __version__,
                 "description": "A photo in, songs from your own library that fit its mood out."},
        "paths": {
            "/api/health": {"get": {"summary": "Model names, store kind and song count.",
                                    "responses": {"200": _json("Health", "The service is up.")}}},
            "/api/recommend": {"post": {
                "summary": "Songs for a photo, with its caption and moods.",
                "parameters": [{"name": "stream", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["1", "true", "yes"]},
                                "description": "Stream JSON lines (application/x-ndjson): {\"event\": \"songs\", ...} "
                                "with the image route's songs as soon as they are ready (with a projection head), "
                                "then {\"event\": \"answer\", ...}, the plain answer; a late failure is "
                                "{\"event\": \"error\", \"error\": ...}."}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "format": "binary"},
                        **form_properties(PhotoForm)}}}}},
                "responses": {"200": _photo_results(), **_ERRORS}}},
            "/api/search": {"get": {
                "summary": "Songs for a free-text description.",
                "parameters": query_parameters(SearchQuery),
                "responses": {"200": _json("Results", "Ranked songs."), "400": _ERRORS["400"]}}},
            "/api/songs/{song_id}/similar": {"get": {
                "summary": "Songs like a stored one.",
                "parameters": [{"name": "song_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}, *options],
                "responses": {"200": _json("Results", "Ranked songs."), "400": _ERRORS["400"],
                              "404": _ERRORS["404"]}}},
            "/api/results/{result_id}/playlist.m3u8": _playlist("m3u8"),
            "/api/results/{result_id}/playlist.xspf": _playlist("xspf"),
            "/api/results/{result_id}/keep": {"post": {
                "summary": "Keep an answer (its page and playlists then last the configured hours).",
                "parameters": [{"name": "result_id", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}}],
                "responses": {"200": {"description": "Kept.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["result_id", "page", "expires"], "properties": {
                        "result_id": {"type": "string"}, "page": {"type": "string", "format": "uri"},
                        "expires": {"type": "integer", "description": "Unix time it expires."}}}}}},
                              "404": {**_ERRORS["404"], "description": "Unknown, forgotten or expired result id."}}}},
            "/api/results/{result_id}/push": {"post": {
                "summary": "Send a kept answer's songs from the music server to it, as a playlist.",
                "parameters": [{"name": "result_id", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}}],
                "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["name"], "properties": form_properties(PushForm)}}}},
                "responses": {"200": {"description": "The playlist as the server keeps it.", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["name", "songs"], "properties": {
                        "name": {"type": "string"}, "songs": {"type": "integer"}}}}}},
                              "400": _ERRORS["400"],
                              "404": {**_ERRORS["404"], "description": "Unknown result id, or no music server."},
                              "502": {"description": "The music server refused or failed.",
                                      "content": {"application/json": {"schema": _ref("Error")}}}}}},
            "/api/results/{result_id}/video": _video(),
            "/audio/{song_id}": {"get": {
                "summary": "The song's audio file (HTTP Range supported).",
                "parameters": [{"name": "song_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The file (also when Range is malformed or asks for "
                                                      "several ranges)."},
                              "206": {"description": "Part of it."}, "404": _ERRORS["404"], "416": _ERRORS["416"]}}},
        },
        "components": {"schemas": {"Mood": mood, "Song": song, "RankedSong": ranked, "Results": results,
                                   "PhotoResults": photo, "Health": health,
                                   "Error": error}},
    }
