"""The web page at / and the songs' audio at /audio/<id> (with HTTP range support).

A ``Range`` this server cannot serve as one byte range (malformed, another unit, several ranges) is
ignored and the whole file is sent, as RFC 9110 allows; a byte range beyond the file is a 416.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import Blueprint, current_app, render_template, request, send_file
from werkzeug.exceptions import NotFound
from werkzeug.http import parse_range_header

web = Blueprint("web", __name__)


@web.get("/")
def index():
    settings = current_app.extensions["image2mood"].settings
    return render_template("index.html", max_upload_mb=settings.max_upload_mb)


@web.get("/audio/<song_id>")
def audio(song_id: str):
    """Stream a song's file, found by its id in the store (never by a path from the request)."""
    found = current_app.extensions["image2mood"].find([song_id])
    if not found:
        raise NotFound(f"no song with id {song_id} in the store")
    path = Path(found[0].path)
    if not path.is_file():
        raise NotFound(f"the file of song {song_id} is gone ({path.name}); re-index the library")
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = send_file(path, mimetype=mimetype, conditional=False, max_age=3600)
    try:
        return response.make_conditional(_without_unusable_range(request.environ), accept_ranges=True,
                                          complete_length=response.content_length)
    except Exception:
        response.close()  # the open file
        raise


def _without_unusable_range(environ: dict) -> dict:
    """``environ`` without its Range header unless that is exactly one byte range."""
    header = environ.get("HTTP_RANGE")
    if header is None:
        return environ
    parsed = parse_range_header(header)
    if parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1:
        return environ
    return {k: v for k, v in environ.items() if k != "HTTP_RANGE"}
