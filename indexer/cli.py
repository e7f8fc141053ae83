"""`image2mood index` and `image2mood songs`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from image2mood.config import Settings
from image2mood.store import open_configured_store
from cli_options import store_option, with_store


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@store_option
@click.option("--prune", is_flag=True, help="Remove stored songs whose files are gone.")
@click.option("--windows", type=click.IntRange(1, 64), default=None,
              help="Windows embedded per song (default: IMAGE2MOOD_WINDOWS_PER_SONG).")
@click.pass_obj
def index(settings: Settings, paths: tuple[Path, ...], store: str | None, prune: bool,
          windows: int | None) -> None:
    """Add the music files in PATHS (files or folders) to the store."""
    from image2mood.library import store_info
    from image2mood.models.factory import clap_encoder
    from indexer.pipeline import Indexer

    settings = with_store(settings, store)
    if windows:
        settings = settings.model_copy(update={"windows_per_song": windows})
    click.echo(f"loading CLAP model {settings.model_spec('clap')} ...", err=True)
    encoder = clap_encoder(settings)
    with open_configured_store(settings, store_info(encoder, settings)) as song_store:
        indexer = Indexer(song_store, encoder, settings)
        try:
            report = indexer.run(paths, prune=prune)
        except KeyboardInterrupt:
            click.echo("interrupted: songs written so far are kept; run the same command again to finish",
                       err=True)
            sys.exit(130)
    click.echo(report.summary())


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def songs(settings: Settings, store: str | None, as_json: bool) -> None:
    """List the songs in the store."""
    settings = with_store(settings, store)
    with open_configured_store(settings, info=None, create=False) as song_store:
        listed = sorted(song_store.scroll(), key=lambda s: (s.artist or "", s.album or "", s.title))
        for song in listed:
            if as_json:
                click.echo(json.dumps({"id": song.id, **song.to_payload()}, ensure_ascii=False))
            else:
                minutes, seconds = divmod(round(song.duration), 60)
                click.echo(f"{song.artist or '?'} - {song.title}  [{song.album or '-'}]  "
                           f"{minutes}:{seconds:02d}  {song.path}")
        if not as_json:
            click.echo(f"{len(listed)} songs in {song_store.location}", err=True)


commands = [index, songs]
