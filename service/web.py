"""The web page at / and the songs' audio at /audio/<id> (with HTTP range support).

A song from a music server (``subsonic://HOST/ID``) is relayed from the configured server with the
browser's byte range: the browser talks to this service only, so the server's login never reaches it.

A ``Range`` this server cannot serve as one byte range (malformed, another unit, several ranges) is
ignored and the whole file is sent, as RFC 9110 allows; a byte range beyond the file is a 416.
"""

from __future__ import annotations

import logging
import mimetypes
import stat
from contextlib import ExitStack

from flask import Blueprint, Response, current_app, render_template, request, send_file
from werkzeug.exceptions import BadGateway, NotFound, RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header

from image2mood.paths import local_path
from image2mood.store.base import Song
from image2mood.subsonic import SubsonicClient, SubsonicError, server_song_id
from image2mood.text import printable, readable

web = Blueprint("web", __name__)
log = logging.getLogger(__name__)
RELAYED_HEADERS = ("Content-Length", "Content-Range", "Content-Encoding", "Accept-Ranges",
                   "Last-Modified", "ETag")


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
    if server_song_id(found[0].path) is not None:
        return _relayed(found[0])
    path = local_path(found[0].path)  # the exact bytes of its name, UTF-8 or not
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise NotFound(f"the file of song {song_id} is gone ({readable(path.name)}); re-index the library")
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # Our own ETag and header name: werkzeug encodes the path as UTF-8, which a name that is not UTF-8 cannot be.
    response = send_file(path, mimetype=mimetype, conditional=False, max_age=3600, download_name=printable(path.name),
                         etag=f"{song_id}-{info.st_mtime_ns}-{info.st_size}")
    try:
        return response.make_conditional(_without_unusable_range(request.environ), accept_ranges=True,
                                          complete_length=response.content_length)
    except Exception:
        response.close()  # the open file
        raise


def _relayed(song: Song) -> Response:
    """A music server's song, relayed as the server sends it (a 416 becomes ours, in JSON)."""
    settings = current_app.extensions["image2mood"].settings
    if not settings.subsonic_url:
        raise NotFound(f"song {song.id} is on a music server, and this service has none: set IMAGE2MOOD_SUBSONIC_URL")
    header = _without_unusable_range(request.environ).get("HTTP_RANGE")
    with ExitStack() as stack:  # handed to the response once it streams
        try:
            client = stack.enter_context(SubsonicClient.from_settings(settings))
            if not song.path.startswith(client.song_uri("")):
                raise NotFound(f"song {song.id} is on another music server than IMAGE2MOOD_SUBSONIC_URL; "
                               "re-index with `image2mood index subsonic`")
            upstream = stack.enter_context(client.stream(server_song_id(song.path) or "",
                                                         {"Range": header} if header else None))
        except SubsonicError as e:
            log.warning("song %s: %s", song.id, e)
            raise BadGateway(f"the music server did not send song {song.id}; the service's log says why") from None
        if upstream.status_code == 416:
            length = upstream.headers.get("Content-Range", "").rpartition("/")[2]
            raise RequestedRangeNotSatisfiable(length=int(length) if length.isdigit() else None)
        headers = {name: upstream.headers[name] for name in RELAYED_HEADERS if name in upstream.headers}
        response = Response(upstream.iter_raw(), status=upstream.status_code, headers=headers,
                            content_type=upstream.headers.get("Content-Type", "application/octet-stream"))
        response.call_on_close(stack.pop_all().close)  # not direct_passthrough: that would skip the close
        return response


def _without_unusable_range(environ: dict) -> dict:
    """``environ`` without its Range header unless that is exactly one byte range."""
    header = environ.get("HTTP_RANGE")
    if header is None:
        return environ
    parsed = parse_range_header(header)
    if parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1:
        return environ
    return {k: v for k, v in environ.items() if k != "HTTP_RANGE"}
