"""Application factory: open the store, load every model before the first request, wire blueprints."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from image2mood.config import Settings
from image2mood.errors import Image2MoodError, StoreError
from image2mood.recommend import Recommender, UnknownSongError

log = logging.getLogger(__name__)
EXTENSION = "image2mood"


def create_app(settings: Settings | None = None) -> Flask:
    """A ready app: models loaded (a model that fails to load stops the start, not the first request)."""
    from service.api import api
    from service.web import web

    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_mb * 1024 * 1024)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    recommender = Recommender.open(settings)
    recommender.warm_up()
    app.extensions[EXTENSION] = recommender
    app.register_blueprint(api)
    app.register_blueprint(web)
    _register_errors(app)
    return app


def _error(status: int, message: str):
    return jsonify(error={"status": status, "message": message}), status


# Status for errors the core raises, most specific first; nothing a user causes is a 500.
STATUS_FOR = ((UnknownSongError, 404), (StoreError, 503), (Image2MoodError, 400))


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Image2MoodError)
    def core_error(exc: Image2MoodError):
        status = next(code for cls, code in STATUS_FOR if isinstance(exc, cls))
        if status >= 500:
            log.error("%s", exc)
        return _error(status, str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return _error(500, "internal error; the server log has the details")
