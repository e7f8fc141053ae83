"""`image2mood serve` and `image2mood recommend`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from image2mood.config import Settings
from cli_options import store_option, with_store


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Request threads (the models are shared by all of them).")
@store_option
@click.pass_obj
def serve(settings: Settings, host: str, port: int, threads: int, store: str | None) -> None:
    """Serve the web page and the JSON API (models load before the first request)."""
    import waitress

    from service.app import create_app

    click.echo("loading models ...", err=True)
    app = create_app(with_store(settings, store))
    click.echo(f"image2mood is serving on http://{host}:{port}/", err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="image2mood")


def _print(body: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if body.get("caption") is not None:
        click.echo(f"caption: {body['caption']}")
    if body.get("note"):
        click.echo(f"note:    {body['note']}")
    if body.get("face"):
        face = body["face"]
        click.echo(f"face:    {face['en']} ({face['ko']}), {face['probability']:.0%}")
    click.echo("moods:   " + ", ".join(f"{m['en']} ({m['ko']})" for m in body["moods"]))
    for rank, song in enumerate(body["songs"], 1):
        moods = ", ".join(m["en"] for m in song["moods"])
        click.echo(f"{rank:3}. {song['score']:+.3f}  {song['artist'] or '?'} - {song['title']}  [{moods}]")
    if not body["songs"]:
        click.echo("no songs: index some music first with `image2mood index MUSIC_DIR`")


@click.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(1, 100), default=None, help="How many songs (default: IMAGE2MOOD_TOP).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=None,
              help="Weight of the image route, 0 = caption only (default: IMAGE2MOOD_ALPHA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@store_option
@click.pass_obj
def recommend(settings: Settings, photo: Path, top: int | None, alpha: float | None, as_json: bool,
              store: str | None) -> None:
    """Songs from the store that fit PHOTO's mood, with its caption and mood words."""
    from image2mood.images import load_photo

    settings = with_store(settings, store)
    image = load_photo(photo, name=str(photo), max_pixels=settings.max_image_pixels)  # before the slow imports

    from image2mood.recommend import Options, Recommender
    from service.api import recommendation_json

    result = Recommender.open(settings).for_photo(image, Options(top=top or settings.top, alpha=alpha))
    _print(recommendation_json(result), as_json)


commands = [serve, recommend]
