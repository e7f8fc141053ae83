"""The web page at / and the songs' audio at /audio/<id> (with HTTP range support)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import Blueprint, current_app, render_template, send_file
from werkzeug.exceptions import NotFound

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
    return send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
