"""POST /api/results/<id>/video: the photo (sent again by the browser, which still holds it) with the clip of
one of a kept answer's songs, as an MP4 download (the page's "Make a video").

The photo passes the checks of /api/recommend and goes to ffmpeg on its stdin; the MP4 is rendered in a
private temporary folder that is deleted before the response is sent (see :mod:`image2mood.video`), so
neither stays on this server. Renders run one at a time (:data:`RENDERS`): a request that finds them all
busy is a 503 with Retry-After, so that slow clients cannot pin the CPUs.
"""

from __future__ import annotations

import logging
import threading

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import BadRequest, NotFound, ServiceUnavailable, UnprocessableEntity

from image2mood import video
from image2mood.images import load_configured_photo
from image2mood.recommend import Recommender
from service.fields import VideoForm, parse
from service.share import kept, kept_songs

videos = Blueprint("video", __name__)
log = logging.getLogger(__name__)
RENDERS = 1
"""Videos rendered at a time: one keeps ffmpeg (≈3 s of both cores for a 15-s story) from crowding out answers."""
RETRY_AFTER_S = 5
_slots = threading.BoundedSemaphore(RENDERS)


@videos.post("/api/results/<result_id>/video")
def make_video(result_id: str):
    """The MP4 of the photo in the field ``image`` with the highlight of the answer's song ``song``."""
    try:
        return _video(result_id)
    except video.ClipTooLongError as exc:
        raise UnprocessableEntity(str(exc)) from None
    except video.RenderError as exc:  # its message may name the song's file: the log has it, the browser not
        log.error("%s", exc)
        raise ServiceUnavailable("the video could not be made; the service's log says why") from None


def _video(result_id: str) -> Response:
    recommender: Recommender = current_app.extensions["image2mood"]
    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("send the photo again as a multipart/form-data file in the field 'image'")
    form = parse(VideoForm, request.form.to_dict())
    result = kept(result_id)
    said = next(((song, saved) for song, saved in kept_songs(result) if song.id == form.song), None)
    if said is None:
        raise NotFound(f"song {form.song!r} is not in answer {result_id}: choose one of its songs")
    song, saved = said
    path, clip = video.answer_clip(song, saved, recommender.settings.highlight_seconds)
    photo = load_configured_photo(upload.read(), upload.filename or "the uploaded file", recommender.settings)
    if not _slots.acquire(blocking=False):
        raise ServiceUnavailable(f"another video is being made; try again in {RETRY_AFTER_S} s",
                                 retry_after=RETRY_AFTER_S)
    try:
        body = video.render_bytes(photo, path, clip, fmt=form.format, zoom=form.zoom, name=video.song_name(song))
    finally:
        _slots.release()
    return Response(body, mimetype="video/mp4", headers={
        "Content-Disposition": f'attachment; filename="image2mood-{result.id}-{song.id}.mp4"',
        "Cache-Control": "no-store"})
