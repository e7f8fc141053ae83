"""Application factory: open the store, load every model before the first request, wire blueprints.

Every response carries the security headers below; every error is JSON and keeps the headers its
HTTP error defines (``Allow`` on a 405, ``Content-Range`` on a 416).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from image2mood.config import Settings
from image2mood.errors import Image2MoodError, StoreError
from image2mood.models.lane import ModelLane
from image2mood.recommend import Recommender, UnknownSongError
from image2mood.store.base import SongStore
from image2mood.subsonic import SubsonicError

log = logging.getLogger(__name__)
EXTENSION = "image2mood"

# The page loads its script, styles and icon from here, previews photos from blob: URLs, plays
# /audio/<id> and talks only to this server: nothing inline, nothing from elsewhere, never framed.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:",
    "media-src 'self' blob:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: Settings | None = None, lane: ModelLane | None = None,
               store: SongStore | None = None) -> Flask:
    """A ready app: models loaded (a model that fails to load stops the start, not the first request).

    ``lane``: where the models run (see :mod:`image2mood.models.lane`); `serve` gives its main thread's.
    ``store``: an open song store to serve (several apps can share one server store's client); else the
    configured store is opened.
    """
    from service.api import api
    from service.share import share
    from service.web import web
    from service.tune import tune
    from service.video import videos

    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    recommender = Recommender(settings, store, lane) if store is not None else Recommender.open(settings, lane)
    recommender.warm_up()
    app.extensions[EXTENSION] = recommender
    app.register_blueprint(api)
    app.register_blueprint(web)
    app.register_blueprint(share)
    app.register_blueprint(tune)
    app.register_blueprint(videos)
    _register_errors(app)
    app.after_request(_secure)
    return app


def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _error(status: int, message: str):
    return jsonify(error={"status": status, "message": message}), status


# Status for errors the core raises, most specific first; nothing a user causes is a 500.
STATUS_FOR = ((UnknownSongError, 404), (SubsonicError, 502), (StoreError, 503), (Image2MoodError, 400))
MUSIC_SERVER_ERROR = "the music server could not be reached or refused the request; the service's log says why"
"""All a browser learns of a music server's error: its message names the server's address (the log has it)."""


def status_for(exc: Image2MoodError) -> int:
    """The HTTP status of an error the core raised (the JSON error handler's and the streamed answer's)."""
    return next(code for cls, code in STATUS_FOR if isinstance(exc, cls))


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        body, status = _error(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                body.headers.add(name, value)
        return body, status

    @app.errorhandler(Image2MoodError)
    def core_error(exc: Image2MoodError):
        status = status_for(exc)
        if status >= 500:
            log.error("%s", exc)
        return _error(status, MUSIC_SERVER_ERROR if isinstance(exc, SubsonicError) else str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return _error(500, "internal error; the server log has the details")
