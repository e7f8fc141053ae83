"""`image2mood serve` and `image2mood recommend`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from image2mood.config import Settings
from image2mood.text import json_line, printable
from cli_options import store_option, with_store

if TYPE_CHECKING:  # the answer's types import torch; `serve --help` should not
    from PIL import Image

    from image2mood.ranking import RankedSong

MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a photo's upload may add to it: boundaries, part headers and the option fields."""
PROXY_HEADERS = "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port"


def waitress_options(settings: Settings, threads: int) -> dict[str, Any]:
    """The server's limits: many cheap connections, silent ones closed, a body over the upload limit
    refused as soon as its size is known (before it is read), proxy headers only from the proxy."""
    options: dict[str, Any] = dict(
        threads=threads, ident="image2mood",
        connection_limit=settings.connection_limit, asyncore_use_poll=True,  # select() stops at 1024 fds
        channel_timeout=settings.channel_timeout, cleanup_interval=min(10, settings.channel_timeout),
        max_request_body_size=int(settings.max_upload_mb * 1024 * 1024) + MULTIPART_OVERHEAD,
        max_request_header_size=64 * 1024,
        inbuf_overflow=512 * 1024,  # a body above this waits in a temporary file, not in memory
        outbuf_overflow=1024 * 1024, outbuf_high_watermark=4 * 1024 * 1024,
        clear_untrusted_proxy_headers=True,
    )
    if settings.trusted_proxy:
        options.update(trusted_proxy=settings.trusted_proxy, trusted_proxy_count=1,
                       trusted_proxy_headers=PROXY_HEADERS)
    return options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Request threads (the models are shared by all of them); /api/health has one more of its own.")
@store_option
@click.pass_obj
def serve(settings: Settings, host: str, port: int, threads: int, store: str | None) -> None:
    """Serve the web page and the JSON API (models load before the first request).

    waitress answers on its own threads; this, the main thread, loaded the models and runs every model
    call for them (the model lane: torch is fastest on one thread, see image2mood.models.lane).
    """
    import threading

    from image2mood.models.lane import ModelLane
    from service.app import create_app
    from service.threads import HealthLaneDispatcher
    from service.waitress_errors import create_server

    click.echo("loading models ...", err=True)
    lane = ModelLane()
    app = create_app(with_store(settings, store), lane)
    server = create_server(app, host=host, port=port, _dispatcher=HealthLaneDispatcher(threads),
                           **waitress_options(settings, threads))
    http = threading.Thread(target=server.run, name="waitress", daemon=True)
    http.start()
    click.echo(f"image2mood is serving on http://{host}:{port}/", err=True)
    lane.serve(until=lambda: not http.is_alive())


def _print(body: dict, as_json: bool, language: str = "en") -> None:
    if as_json:
        click.echo(json_line(body, indent=2))
        return
    from image2mood.highlights import clock

    if body.get("caption") is not None:
        from image2mood.captions import shown_caption

        shown, lang = shown_caption(body["captions"], language, body["caption"])
        click.echo(f"caption: {shown}")
        for other, text in body["captions"].items():
            if other != lang:
                click.echo(f"  ({other}) {text}")
    if body.get("caption_note"):
        click.echo(f"note:    {body['caption_note']}")
    if body.get("note"):
        click.echo(f"note:    {body['note']}")
    for face in body.get("faces") or []:
        where = "the whole photo (CLIP)" if face["box"] is None else "box " + ",".join(f"{v:.0f}" for v in face["box"])
        click.echo(f"face:    {face['en']} ({face['ko']}), {face['probabilities'][face['expression']]:.0%}, {where}")
    click.echo("moods:   " + ", ".join(f"{m['en']} ({m['ko']})" for m in body["moods"]))
    for rank, song in enumerate(body["songs"], 1):
        moods = ", ".join(m["en"] for m in song["moods"])
        best = song.get("highlight")
        part = f"  best part {clock(best['start'])}-{clock(best['end'])}" if best else ""
        click.echo(printable(f"{rank:3}. {song['score']:+.3f}  {song['artist'] or '?'} - {song['title']}  [{moods}]{part}"))
    if body.get("highlights_note"):
        click.echo(f"note:    {body['highlights_note']}")
    if not body["songs"]:
        click.echo("no songs: index some music first with `image2mood index MUSIC_DIR`")


@click.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", type=int, default=None, help="How many songs, 1 to 100 (default: IMAGE2MOOD_TOP).")
@click.option("--alpha", type=float, default=None,
              help="Weight of the image route, 0 = caption only, to 1 (default: IMAGE2MOOD_ALPHA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--playlist", "playlist_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the answer's songs as a playlist: FILE.m3u8 (or .m3u) or FILE.xspf, by its suffix.")
@click.option("--playlist-urls", metavar="BASE", default=None,
              help="In the playlist, each song's URL on the image2mood server at BASE (e.g. http://192.168.1.5:8000) "
              "instead of its file's path.")
@click.option("--push", metavar="NAME", default=None,
              help="Create or replace the playlist NAME on the music server (IMAGE2MOOD_SUBSONIC_URL) with the "
              "answer's songs that came from it.")
@click.option("--video", "video_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a video to post: the photo with the song's highlight, as an MP4 (H.264 and AAC).")
@click.option("--song", "song_rank", type=click.IntRange(1, 100), default=1, show_default=True,
              help="With --video: the song's rank in the answer (1 = the first).")
@click.option("--format", "video_format", type=click.Choice(["story", "square", "wide"]), default="story",
              show_default=True, help="With --video: 1080×1920 (story, reel), 1080×1080 (square) or 1920×1080 (wide).")
@click.option("--zoom", is_flag=True, help="With --video: zoom in slowly.")
@store_option
@click.pass_context
def recommend(ctx: click.Context, photo: Path, top: int | None, alpha: float | None, as_json: bool,
              playlist_file: Path | None, playlist_urls: str | None, push: str | None, video_file: Path | None,
              song_rank: int, video_format: str, zoom: bool, store: str | None) -> None:
    """Songs from the store that fit PHOTO's mood, with its caption and mood words."""
    settings: Settings = ctx.obj
    _check_playlist(playlist_file, playlist_urls)  # before anything slow
    _check_video(ctx, video_file, song_rank, top)
    from image2mood import playlists
    from image2mood.images import load_configured_photo
    from image2mood.subsonic import SubsonicClient

    settings = with_store(settings, store)
    image = load_configured_photo(photo, str(photo), settings)  # before the slow imports
    server = SubsonicClient.from_settings(settings) if push is not None else None
    if server is not None:
        server.ping()  # a wrong address or login stops here, before the models load

    from image2mood.answers import recommendation_json
    from image2mood.captions import shown_caption
    from image2mood.config import parse_languages
    from image2mood.recommend import Recommender
    from service.fields import QueryOptions, parse

    options = parse(QueryOptions, {"top": top, "alpha": alpha}).options(settings.top)  # the API's own checks
    recommender = Recommender.open(settings)
    languages = parse_languages(settings.caption_languages)  # the first is the one shown, and the playlist's
    result = recommender.add_captions(recommender.for_photo(image, options), languages)
    _print(recommendation_json(result), as_json, languages[0])
    if playlist_file is not None:
        tracks = playlists.entries([ranked.song for ranked in result.songs], base_url=playlist_urls,
                                   highlights={r.song.id: r.highlight.to_json() for r in result.songs if r.highlight})
        playlists.write(playlist_file, tracks, title=shown_caption(result.captions, languages[0], result.caption)[0])
        click.echo(f"playlist of {len(tracks)} songs written to {playlist_file}", err=True)
    if server is not None and push is not None:
        with server:
            playlist = server.push_songs(push, [ranked.song for ranked in result.songs])
        click.echo(f"pushed {len(playlist.song_ids)} songs to the playlist {playlist.name!r} on {server.url}",
                   err=True)
    if video_file is not None:
        _write_video(settings, image, recommendation_json(result)["songs"], result.songs, song_rank, video_file,
                     video_format, zoom)


def _check_video(ctx: click.Context, video_file: Path | None, rank: int, top: int | None) -> None:
    """--song, --format and --zoom go with --video; --song is within --top."""
    options = {"song_rank": "--song", "video_format": "--format", "zoom": "--zoom"}
    given = [flag for name, flag in options.items()
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if video_file is None and given:
        raise click.UsageError(f"{', '.join(given)} go with --video OUT.mp4")
    if top is not None and rank > top:
        raise click.BadParameter(f"{rank} is past the last of the --top {top} songs", param_hint="--song")


def _write_video(settings: Settings, image: Image.Image, said: list[dict[str, Any]], ranked: list[RankedSong],
                 rank: int, out: Path, fmt: str, zoom: bool) -> None:
    """The video of the answer's song ``rank`` (1-based) with ``image``, written to ``out``."""
    from image2mood import video

    if rank > len(ranked):
        raise click.UsageError(f"--song {rank}: the answer has {len(ranked)} songs; choose 1 to {len(ranked)}")
    song = ranked[rank - 1].song
    path, clip = video.answer_clip(song, said[rank - 1], settings.highlight_seconds)
    video.render(image, path, clip, out, fmt=fmt, zoom=zoom, name=video.song_name(song))
    click.echo(f"video of song {rank} ({clip.start:.1f}–{clip.start + clip.duration:.1f} s) written to {out}",
               err=True)


def _check_playlist(path: Path | None, base_url: str | None) -> None:
    """--playlist names a file of a known format; --playlist-urls, given with it, is an http(s) address."""
    from urllib.parse import urlsplit

    from image2mood.playlists import FORMATS

    if path is not None and path.suffix.lower() not in FORMATS:
        raise click.BadParameter(f"{path.name} is not a playlist file name: end it in {', '.join(FORMATS)}",
                                 param_hint="--playlist")
    if base_url is not None:
        if path is None:
            raise click.UsageError("--playlist-urls goes with --playlist FILE")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(f"{base_url!r} is not an http(s) address such as http://192.168.1.5:8000",
                                     param_hint="--playlist-urls")


commands = [serve, recommend]
