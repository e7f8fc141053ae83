"""Kept answers, shared: the page /r/<id>, the playlists /api/results/<id>/playlist.m3u8 and .xspf,
POST /api/results/<id>/push, which sends the answer's songs to the configured music server as a playlist,
and POST /api/results/<id>/keep, which keeps an answer without opening any of them.

An answer is held when it is made; the first of these to name its id keeps it (:mod:`image2mood.results`):
in the results folder, or, when the songs are in a Qdrant server, in that server's ``<collection>-answers``
collection, where every replica of the service finds it (held answers too). A flood of searches keeps nothing.

The page shows the answer as it was asked (the photo's thumbnail only if its owner shared it, the
caption, the moods, the songs with players and the mood map as inline SVG), with Open Graph tags for
link previews. An unknown, malformed or expired id gets a friendly 404 page (the playlists a JSON 404).
The songs are looked up in the store by id, in the answer's order; songs removed since are left out.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from PIL import Image
from werkzeug.exceptions import BadRequest, NotFound, ServiceUnavailable

from image2mood import playlists
from image2mood.answers import song_json
from image2mood.captions import shown_caption
from image2mood.config import CAPTION_LANGUAGES
from image2mood.recommend import Recommendation, Recommender
from image2mood.results import Results, ResultStoreError, SavedResult, open_results, result_from, thumbnail_jpeg
from image2mood.store.base import Song
from image2mood.subsonic import SubsonicClient, server_song_id
from service.fields import PushForm, parse

share = Blueprint("share", __name__)
log = logging.getLogger(__name__)
RESULTS = "image2mood.results"
PLAYLIST_TYPES = {"m3u8": "audio/x-mpegurl; charset=utf-8", "xspf": "application/xspf+xml; charset=utf-8"}
QUERY_KEYS = {"text": "mapWords", "song": "mapSong"}  # the map's name for the query (strings.js); else the photo


@share.record_once
def _open_results(state: BlueprintSetupState) -> None:
    recommender: Recommender = state.app.extensions["image2mood"]
    state.app.extensions[RESULTS] = open_results(recommender.settings, recommender.store)


def results_store() -> Results:
    return current_app.extensions[RESULTS]


def hold(rec: Recommendation, query: str | None = None, photo: Image.Image | None = None, language: str | None = None,
         result_id: str | None = None) -> str:
    """Hold an answer (in memory, or in the Qdrant server beside the songs), to be kept on demand (with a thumbnail of ``photo`` when given: the person
    chose to share it), asked in page ``language``; its result_id. With ``result_id``, the answer held under that
    id is replaced (the same answer, its captions added)."""
    thumbnail = thumbnail_jpeg(photo) if photo is not None else None
    result = result_from(rec, query=query, thumbnail=thumbnail, language=language)
    try:
        return results_store().hold(replace(result, id=result_id) if result_id else result).id
    except ResultStoreError as exc:
        log.error("%s", exc)
        raise ServiceUnavailable("the answer cannot be held now; the service's log says why") from None


def public_url(path: str) -> str:
    """``path`` (as url_for makes it) as an absolute URL: under IMAGE2MOOD_PUBLIC_URL when that is set,
    else under the host this request named."""
    base = _recommender().settings.public_url
    return (base or request.host_url).rstrip("/") + path


def _recommender() -> Recommender:
    return current_app.extensions["image2mood"]


def kept_songs(result: SavedResult) -> list[tuple[Song, dict[str, Any]]]:
    """The result's songs still in the store, in the answer's order, each with what the answer said of it."""
    found = {song.id: song for song in _recommender().find(result.song_ids)}
    return [(found[saved["id"]], saved) for saved in result.songs if saved["id"] in found]


def _kept_or_none(result_id: str) -> SavedResult | None:
    """The kept answer (a held one is kept now), or None; a folder or server that fails is a 503."""
    try:
        return results_store().keep(result_id)
    except ResultStoreError as exc:
        log.error("%s", exc)
        raise ServiceUnavailable("the answer cannot be kept now; the service's log says why") from None


def kept(result_id: str) -> SavedResult:
    result = _kept_or_none(result_id)
    if result is None:
        raise NotFound(f"no answer {result_id!r}: the link is wrong, or the answer has expired")
    return result


def headline(result: SavedResult) -> str:
    """What the answer was for: the photo's caption (in the language it was asked in), the words searched for,
    or the song it started from."""
    return shown_caption(result.captions, result.language, result.caption)[0] or result.query or "songs from image2mood"


def map_marks(result: SavedResult, songs: list[tuple[Song, dict[str, Any]]]) -> dict[str, Any]:
    """What the page's mood map draws (moodmap.js): the query and each song, in the list's order."""
    query = {"valence": result.valence, "arousal": result.arousal} if result.valence is not None else None
    marks = [{"title": song.title, "valence": saved.get("valence"), "arousal": saved.get("arousal")}
             for song, saved in songs]
    return {"query": query, "songs": marks, "queryKey": QUERY_KEYS.get(result.route, "mapPhoto")}


def _length(seconds: float) -> str | None:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}" if seconds > 0 else None


@share.get("/r/<path:result_id>")  # any path: a mangled link gets the friendly page too
def page(result_id: str):
    result = _kept_or_none(result_id)
    if result is None:
        return render_template("share.html", result=None), 404
    songs = kept_songs(result)
    return render_template(
        "share.html", result=result, headline=headline(result), marks=map_marks(result, songs),
        headline_lang=shown_caption(result.captions, result.language, result.caption)[1],
        captions={lang: text for lang, text in result.captions.items() if lang in CAPTION_LANGUAGES}
        if len(result.captions) > 1 else {},
        songs=[{**song_json(song), **saved, "length": _length(song.duration)} for song, saved in songs],
        description=", ".join(m["en"] for m in result.moods) + " · " + ", ".join(m["ko"] for m in result.moods),
        page_url=public_url(url_for("share.page", result_id=result.id)),
        thumbnail_url=public_url(url_for("share.thumbnail", result_id=result.id)) if result.thumbnail else None)


@share.get("/r/<result_id>/photo.jpg")
def thumbnail(result_id: str):
    result = kept(result_id)
    if result.thumbnail is None:
        raise NotFound("the owner of this answer did not share the photo")
    return Response(result.thumbnail, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@share.get("/api/results/<result_id>/playlist.<kind>")
def playlist(result_id: str, kind: str):
    """The answer's songs as an M3U8 or XSPF playlist of absolute /audio/<id> URLs on this server."""
    if kind not in PLAYLIST_TYPES:
        raise NotFound(f"playlists are .m3u8 or .xspf, not .{kind}")
    result = kept(result_id)
    songs = kept_songs(result)
    tracks = playlists.entries([song for song, _ in songs], base_url=public_url("/"),
                               highlights={saved["id"]: saved.get("highlight") for _, saved in songs})
    body = playlists.render(f".{kind}", tracks, title=headline(result))
    return Response(body, content_type=PLAYLIST_TYPES[kind],
                    headers={"Content-Disposition": f'attachment; filename="image2mood-{result.id}.{kind}"'})


@share.post("/api/results/<result_id>/keep")
def keep(result_id: str):
    """Keep an answer (written to the results folder or the answers collection now) without opening its page
    or playlist."""
    result = kept(result_id)
    return {"result_id": result.id, "page": public_url(url_for("share.page", result_id=result.id)),
            "expires": round(result.created + results_store().ttl_s)}


@share.post("/api/results/<result_id>/push")
def push(result_id: str):
    """The answer's songs that came from the music server, as the playlist ``name`` there (the page's
    "Send to my server"); the server's login stays in this service."""
    settings = _recommender().settings
    if not settings.subsonic_url:
        raise NotFound("this service has no music server: set IMAGE2MOOD_SUBSONIC_URL (and _USER, _PASSWORD)")
    form = parse(PushForm, request.form)
    songs = [song for song, _ in kept_songs(kept(result_id))]
    if not any(server_song_id(song.path) for song in songs):
        raise BadRequest("none of this answer's songs came from the music server, so no playlist was made; "
                         "index its songs with `image2mood index subsonic`")
    with SubsonicClient.from_settings(settings) as server:  # its errors: a generic 502 (service.app)
        pushed = server.push_songs(form.name, songs)
    return {"name": pushed.name, "songs": len(pushed.song_ids)}
