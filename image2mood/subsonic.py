"""A small client for music servers that speak the Subsonic API (Navidrome, Jellyfin, Airsonic, Gonic, Supysonic).

It signs in with the API's token scheme (``t`` = md5(password + salt), a fresh salt ``s`` per request), with
an OpenSubsonic ``apiKey`` when one is configured, and falls back to the hex-encoded password
(``p=enc:…``) only for a server that answers that it does not take tokens (Supysonic, LDAP users).
Every failure is a :class:`SubsonicError` that names the server (any login in its address shown as
``***``) and what to fix. Redirects are not followed: a server that redirects is an error naming the
address to configure, so a redirect can send neither the login nor a relayed song elsewhere.

Songs come from the ID3 views (``getAlbumList2`` paged, then ``getAlbum``), which every such server offers.
A stored song keeps its server id in its path, ``subsonic://HOST/ID`` (:meth:`SubsonicClient.song_uri`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from image2mood.config import Settings
from image2mood.errors import Image2MoodError
from image2mood.store.base import Song

API_VERSION = "1.16.1"
CLIENT_NAME = "image2mood"
SCHEME = "subsonic://"
ALBUM_PAGE = 500  # the most getAlbumList2 returns at once
MAX_SONG_BYTES = 1 << 30
"""Largest song read from a server (bytes): the decoder holds one whole song in memory."""
_TOKENS_REFUSED = {10, 41, 42}  # "p missing" (servers without token auth), "no tokens for LDAP users", "mechanism unsupported"
_WRONG_LOGIN = {40, 44}
_FIX_LOGIN = "fix IMAGE2MOOD_SUBSONIC_USER/_PASSWORD"


class SubsonicError(Image2MoodError):
    """The music server could not be reached, refused us, or answered an error (its API ``code``, if any)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ServerSong:
    """One song as the server lists it."""

    id: str
    title: str
    artist: str | None
    album: str | None
    genre: str | None
    duration: float
    created: str
    changed: str | None  # OpenSubsonic servers may say when the song last changed
    size: int | None

    @property
    def version(self) -> str:
        """What tells a changed song: the server's dates and the file's size."""
        return f"{self.changed or self.created}:{self.size if self.size is not None else ''}"


@dataclass(frozen=True)
class ServerPlaylist:
    """A playlist on the server: its id, name and song ids in order."""

    id: str
    name: str
    song_ids: tuple[str, ...]


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` in it replaced by ``***@``: what messages may show."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def server_song_id(path: str) -> str | None:
    """The server's song id in a stored song's path (``subsonic://HOST/ID``), or None for a file."""
    if not path.startswith(SCHEME):
        return None
    return unquote(path.rsplit("/", 1)[-1])


class SubsonicClient:
    """One server, one user. Use as a context manager (it holds a connection pool)."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None,
                 api_key: str | None = None, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SubsonicError(f"IMAGE2MOOD_SUBSONIC_URL must be an http(s) address such as "
                                f"https://music.example.org, got {redact_url(url.strip())!r}")
        if not api_key and not (user and password):
            raise SubsonicError(f"the Subsonic server at {redact_url(url.strip())} needs a login: set "
                                "IMAGE2MOOD_SUBSONIC_USER and IMAGE2MOOD_SUBSONIC_PASSWORD (or IMAGE2MOOD_SUBSONIC_API_KEY)")
        self._base = url.strip().rstrip("/")
        self.url = redact_url(self._base)  # the address as messages show it
        self.host = parts.netloc.rpartition("@")[2]  # a login in the address never reaches a stored path
        self.user, self._password, self._api_key = user, password, api_key
        self._plain_password = False  # set once a server turns tokens down
        self._signed_in = False  # set by the first good answer: tokens work, or the password does
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> SubsonicClient:
        """The configured server; a SubsonicError says which setting is missing."""
        if not settings.subsonic_url:
            raise SubsonicError("no music server configured: set IMAGE2MOOD_SUBSONIC_URL (and _USER, _PASSWORD)")
        password, key = settings.subsonic_password, settings.subsonic_api_key
        return cls(settings.subsonic_url, settings.subsonic_user, password and password.get_secret_value(),
                   key and key.get_secret_value())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def song_uri(self, song_id: str) -> str:
        """The path a stored song from this server gets: ``subsonic://HOST/ID``."""
        return f"{SCHEME}{self.host}/{quote(song_id, safe='')}"

    # -- the API ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check the address and the login (the first call settles how to sign in)."""
        self._call("ping")

    def songs(self) -> list[ServerSong]:
        """Every song on the server, each once, album by album."""
        songs: dict[str, ServerSong] = {}
        offset = 0
        while True:
            page = self._call("getAlbumList2", type="alphabeticalByName", size=ALBUM_PAGE, offset=offset)
            albums = (page.get("albumList2") or {}).get("album") or []
            for album in albums:
                for entry in (self._call("getAlbum", id=album["id"]).get("album") or {}).get("song") or []:
                    if not entry.get("isVideo"):
                        songs.setdefault(str(entry["id"]), _server_song(entry))
            if len(albums) < ALBUM_PAGE:
                return list(songs.values())
            offset += len(albums)

    def stream(self, song_id: str, headers: Mapping[str, str] | None = None) -> AbstractContextManager[httpx.Response]:
        """The server's ``stream`` response for a song, untranscoded (``format=raw``), its body not yet read.

        ``headers`` (e.g. a ``Range``) go to the server; an API error or an HTTP error is a SubsonicError.
        """
        return self._media("stream", {"id": song_id, "format": "raw"}, headers)

    def song_bytes(self, song_id: str, max_bytes: int = MAX_SONG_BYTES) -> Iterator[bytes]:
        """The song's original file, chunk by chunk, from ``download`` (which counts no play), or from
        ``stream`` untranscoded where the user may not download; refuses one that grows past ``max_bytes``."""
        with ExitStack() as stack:
            try:
                response = stack.enter_context(self._media("download", {"id": song_id}))
            except SubsonicError as e:
                if e.code != 50:  # 50: not authorized (downloads are off for this user)
                    raise
                response = stack.enter_context(self.stream(song_id))
            seen = 0
            for chunk in response.iter_bytes():
                seen += len(chunk)
                if seen > max_bytes:
                    raise SubsonicError(f"song {self.song_uri(song_id)} is larger than {max_bytes >> 20} MB; skipped")
                yield chunk

    def playlists(self) -> list[ServerPlaylist]:
        """The user's own playlists, not others' public ones (names and ids; ``song_ids`` left empty)."""
        listed = (self._call("getPlaylists").get("playlists") or {}).get("playlist") or []
        return [ServerPlaylist(id=str(p["id"]), name=p.get("name", ""), song_ids=()) for p in listed
                if self._api_key or p.get("owner") in (None, self.user)]

    def playlist(self, playlist_id: str) -> ServerPlaylist:
        """One playlist with its songs in order."""
        found = self._call("getPlaylist", id=playlist_id).get("playlist") or {}
        return ServerPlaylist(id=str(found.get("id", playlist_id)), name=found.get("name", ""),
                              song_ids=tuple(str(e["id"]) for e in found.get("entry") or []))

    def push_playlist(self, name: str, song_ids: Sequence[str]) -> ServerPlaylist:
        """Create the playlist ``name``, or replace the songs of the user's playlist of that name, in order."""
        if not name.strip():
            raise SubsonicError("a playlist needs a name")
        mine = next((p for p in self.playlists() if p.name == name), None)
        target = {"playlistId": mine.id} if mine else {"name": name}
        created = self._call("createPlaylist", **target, songId=list(song_ids)).get("playlist")
        if mine is None:  # servers before API 1.14 answer nothing: find it by name
            mine = ServerPlaylist(str(created["id"]), name, ()) if created else next(
                (p for p in self.playlists() if p.name == name), None)
            if mine is None:
                raise SubsonicError(f"the Subsonic server at {self.url} did not keep the playlist {name!r}")
        return self.playlist(mine.id)

    def push_songs(self, name: str, songs: Sequence[Song]) -> ServerPlaylist:
        """:meth:`push_playlist` with those of ``songs`` that came from this server, in their order."""
        prefix = self.song_uri("")
        ids = [server_song_id(song.path) or "" for song in songs if song.path.startswith(prefix)]
        if not ids:
            raise SubsonicError(f"none of these songs came from the Subsonic server at {self.url}, so no playlist "
                                "was made; index its songs with `image2mood index subsonic`")
        return self.push_playlist(name, ids)

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _media(self, method: str, params: Mapping[str, Any],
               headers: Mapping[str, str] | None = None) -> Iterator[httpx.Response]:
        """A media endpoint's response, its body not yet read; a SubsonicError when it is not media.

        A 416 (a byte range beyond the song) is a response too, for a relay to pass on.
        """
        try:
            response = self._send_media(method, params, headers)
        except _TokensRefused:
            self._plain_password = True
            response = self._send_media(method, params, headers)
        try:
            yield response
        finally:
            response.close()

    def _send_media(self, method: str, params: Mapping[str, Any], headers: Mapping[str, str] | None) -> httpx.Response:
        request = self._http.build_request("GET", self._endpoint(method), headers=headers, params=self._params(params))
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        kind = response.headers.get("content-type", "")
        if kind.startswith(("application/json", "text/xml", "application/xml")) or response.status_code not in (
                200, 206, 416):
            try:
                response.read()
                self._answer(response, method)  # raises on an API error
                raise SubsonicError(f"the Subsonic server at {self.url} sent no audio for song {params['id']} "
                                    f"(HTTP {response.status_code})")
            finally:
                response.close()
        return response

    def _endpoint(self, method: str) -> str:
        return f"{self._base}/rest/{method}"

    def _params(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"v": API_VERSION, "c": CLIENT_NAME, "f": "json"}
        if self._api_key:
            params["apiKey"] = self._api_key
        elif self._plain_password:
            params.update(u=self.user, p="enc:" + (self._password or "").encode().hex())
        else:
            salt = secrets.token_hex(8)
            token = hashlib.md5(((self._password or "") + salt).encode()).hexdigest()
            params.update(u=self.user, t=token, s=salt)
        return {**params, **extra}

    def _call(self, method: str, **extra: Any) -> dict[str, Any]:
        try:
            return self._request(method, extra)
        except _TokensRefused:
            self._plain_password = True
            return self._request(method, extra)

    def _request(self, method: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.get(self._endpoint(method), params=self._params(extra))
        except httpx.HTTPError as e:
            raise self._unreachable(e) from None
        return self._answer(response, method)

    def _answer(self, response: httpx.Response, method: str) -> dict[str, Any]:
        """The ``subsonic-response`` body of a good answer; a SubsonicError for anything else (a redirect too)."""
        if response.is_redirect:
            target = response.url.join(response.headers["Location"]).copy_with(query=None, fragment=None)
            where = redact_url(str(target).split("/rest/")[0])  # the server's address, as configured
            raise SubsonicError(f"the Subsonic server at {self.url} redirects {method} to {where} "
                                f"(HTTP {response.status_code}), and image2mood follows no redirects: set "
                                "IMAGE2MOOD_SUBSONIC_URL to the address it redirects to")
        try:
            body = response.json()["subsonic-response"]
            status = body["status"]
        except (ValueError, KeyError, TypeError):
            raise SubsonicError(
                f"{self.url} did not answer {method} as a Subsonic server (HTTP {response.status_code}); check "
                "IMAGE2MOOD_SUBSONIC_URL: it is the address of the server's web page") from None
        if status == "ok":
            self._signed_in = True
            return body
        error = body.get("error") or {}
        code, message = error.get("code"), error.get("message") or "no reason given"
        if code in _TOKENS_REFUSED and not (self._api_key or self._plain_password or self._signed_in):
            raise _TokensRefused()
        if code in _WRONG_LOGIN:
            who = "the API key" if self._api_key else f"user {self.user}"
            fix = "fix IMAGE2MOOD_SUBSONIC_API_KEY" if self._api_key else _FIX_LOGIN
            raise SubsonicError(f"the Subsonic server at {self.url} refused {who}: wrong username or password "
                                f"(error {code}); {fix}", code)
        raise SubsonicError(f"the Subsonic server at {self.url} answered {method} with error {code}: {message}", code)

    def _unreachable(self, e: httpx.HTTPError) -> SubsonicError:
        return SubsonicError(f"cannot reach the Subsonic server at {self.url} ({type(e).__name__}: {e}); "
                             "check IMAGE2MOOD_SUBSONIC_URL and that the server is running")


class _TokensRefused(Exception):
    """The server does not take token auth: sign in again with the password."""


def _server_song(entry: Mapping[str, Any]) -> ServerSong:
    size = entry.get("size")
    return ServerSong(
        id=str(entry["id"]), title=entry.get("title") or str(entry["id"]), artist=entry.get("artist") or None,
        album=entry.get("album") or None, genre=entry.get("genre") or None,
        duration=float(entry.get("duration") or 0), created=str(entry.get("created") or ""),
        changed=entry.get("changed"), size=int(size) if isinstance(size, int) and size >= 0 else None,
    )
