"""`image2mood index` and `image2mood songs`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from image2mood.answers import library_song_json
from image2mood.config import Settings
from image2mood.errors import StoreError, StoreLockedError
from image2mood.store import Song, SongStore, open_configured_store, windowing_label
from image2mood.store.base import check_info
from cli_options import store_option, with_store
from indexer.prune import prune_candidates, prune_roots

if TYPE_CHECKING:
    from image2mood.models.clap import ClapEncoder


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@store_option
@click.option("--prune", is_flag=True,
              help="Remove stored songs under PATHS whose files are gone (refused when a PATH is missing or empty).")
@click.option("--dry-run", is_flag=True, help="With --prune: list what it would remove, and change nothing.")
@click.option("--windows", type=click.IntRange(1, 64), default=None,
              help="Windows embedded per song (default: IMAGE2MOOD_WINDOWS_PER_SONG).")
@click.option("-v", "--verbose", is_flag=True, help="Print 'stored: PATH' for each song once it is stored durably.")
@click.pass_obj
def index(settings: Settings, paths: tuple[Path, ...], store: str | None, prune: bool, dry_run: bool,
          windows: int | None, verbose: bool) -> None:
    """Add the music files in PATHS (files or folders) to the store."""
    if dry_run and not prune:
        raise click.UsageError("--dry-run goes with --prune: it lists what --prune would remove")
    settings = with_store(settings, store)
    if windows:
        settings = settings.model_copy(update={"windows_per_song": windows})
    roots = prune_roots(paths) if prune else []  # refuse before anything slow happens
    if dry_run:
        _list_prunable(settings, roots)
        return
    with ExitStack() as stack:
        song_store = _existing_store(settings)  # locked, and its record checked, before the slow model load
        if song_store is not None:
            stack.enter_context(song_store)
        encoder = _load_clap(settings)
        from image2mood.library import store_info
        from indexer.pipeline import Indexer

        if song_store is None:
            song_store = stack.enter_context(open_configured_store(settings, store_info(encoder, settings)))
        else:
            check_info(song_store.location, song_store.info, store_info(encoder, settings))
        indexer = Indexer(song_store, encoder, settings, on_stored=_print_stored if verbose else None)
        try:
            report = indexer.run(paths, prune=prune)
        except KeyboardInterrupt:
            click.echo("interrupted: songs written so far are kept; run the same command again to finish",
                       err=True)
            sys.exit(130)
    click.echo(report.summary())


def _existing_store(settings: Settings) -> SongStore | None:
    """The configured store if it exists, opened (locked) and checked against what the settings say of
    the model and windowing; None when this run is to create it. A locked store raises at once."""
    try:
        song_store = open_configured_store(settings, info=None, create=False)
    except StoreLockedError:
        raise
    except StoreError:
        return None  # not made yet (or unreadable: then creating it below says why)
    # What is known before the model loads; its dimension and preprocessing are checked once it has.
    wanted = replace(song_store.info, clap_model=settings.model_spec("clap"),
                     windowing=windowing_label(settings.windows_per_song, settings.window_seconds))
    try:
        check_info(song_store.location, song_store.info, wanted)
    except StoreError:
        song_store.close()
        raise
    return song_store


def _load_clap(settings: Settings) -> ClapEncoder:
    click.echo(f"loading CLAP model {settings.model_spec('clap')} ...", err=True)
    from image2mood.models.factory import clap_encoder

    return clap_encoder(settings)


def _print_stored(songs: Sequence[Song]) -> None:
    for song in songs:
        click.echo(f"stored: {song.path}")


def _list_prunable(settings: Settings, roots: list[Path]) -> None:
    """``--prune --dry-run``: the songs a prune would remove, one per line; nothing changes."""
    with open_configured_store(settings, info=None, create=False) as song_store:
        gone = prune_candidates(song_store.scroll(), roots)
    for song in gone:
        click.echo(f"would remove: {song.path}")
    click.echo(f"would remove {len(gone)}; nothing was changed (dry run)", err=True)


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
                click.echo(json.dumps(library_song_json(song), ensure_ascii=False))
            else:
                minutes, seconds = divmod(round(song.duration), 60)
                click.echo(f"{song.artist or '?'} - {song.title}  [{song.album or '-'}]  "
                           f"{minutes}:{seconds:02d}  {song.path}")
        if not as_json:
            click.echo(f"{len(listed)} songs in {song_store.location}", err=True)


commands = [index, songs]
