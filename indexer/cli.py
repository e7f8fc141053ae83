"""`image2mood index` and `image2mood songs`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from image2mood.answers import library_song_json
from image2mood.config import Settings
from image2mood.errors import StoreError, StoreLockedError, StoreMismatchError
from image2mood.paths import shown_path
from image2mood.store import Song, SongStore, StoreInfo, open_configured_store
from image2mood.store.base import NO_WINDOWS_LAYOUT
from image2mood.text import json_line, printable
from cli_options import store_option, with_store
from indexer.options import WindowCount
from indexer.prune import prune_plan, prune_roots
from indexer.ray_cli import IndexGroup, ray_index

if TYPE_CHECKING:
    from image2mood.models.clap import ClapEncoder
    from image2mood.subsonic import SubsonicClient
    from indexer.pipeline import PendingEncoder

SUBSONIC = "subsonic"
"""The PATHS word that means the configured music server (a folder of that name is written ./subsonic)."""


class PathOrServer(click.ParamType):
    """An existing file or folder, or the word ``subsonic``."""

    name = "path"
    _path = click.Path(exists=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        return SUBSONIC if value == SUBSONIC else self._path.convert(value, param, ctx)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=PathOrServer())
@store_option
@click.option("--prune", is_flag=True,
              help="Remove stored songs under PATHS whose files are gone (refused when a PATH is missing or empty).")
@click.option("--dry-run", is_flag=True, help="With --prune: list what it would remove, and change nothing.")
@click.option("--windows", type=WindowCount(), default=None,
              help="Windows embedded per song, 1 to 64, or 'all': every 10-s window (up to 64), CLAP in bf16 where "
                   "the CPU is fast at it (default: IMAGE2MOOD_WINDOWS_PER_SONG).")
@click.option("--rewindow", is_flag=True,
              help="Also embed again the songs stored without window vectors (copied from an older store), so that "
                   "answers show their best part.")
@click.option("-v", "--verbose", is_flag=True, help="Print 'stored: PATH' for each song once it is stored durably.")
@click.pass_obj
def index(settings: Settings, paths: tuple[Path | str, ...], store: str | None, prune: bool, dry_run: bool,
          windows: int | None, rewindow: bool, verbose: bool) -> None:
    """Add the music files in PATHS (files or folders) to the store; `index subsonic` adds the songs of the
    music server IMAGE2MOOD_SUBSONIC_URL and removes those it no longer lists; `index ray SOURCE...` indexes
    a catalogue on a Ray cluster (see `image2mood index ray --help`)."""
    if dry_run and not prune:
        raise click.UsageError("--dry-run goes with --prune: it lists what --prune would remove")
    settings = with_store(settings, store)
    os.nice(settings.index_nice)  # a serve beside it keeps the CPU first (bench/beside.py)
    server = _music_server(settings, paths, dry_run)
    if windows is not None:
        settings = settings.model_copy(update={"windows_per_song": windows})
    roots = prune_roots(paths) if prune and server is None else []  # refuse before anything slow happens
    if dry_run:
        _list_prunable(settings, roots)
        return
    from image2mood.library import store_info

    from indexer.pipeline import Indexer, all_unchanged, worker_threads

    settings = worker_threads(settings)  # torch's threads, set as the model loads: a core's share per worker
    with ExitStack() as stack:
        encoder = _pending_clap(settings)  # found, and read from its files; loaded only when a song needs it
        wanted = store_info(encoder.facts, settings)
        song_store = _existing_store(settings, wanted)  # locked, and its record checked, before the slow model load
        if song_store is not None:
            stack.enter_context(song_store)
        if song_store is not None and rewindow and not song_store.has_windows:
            raise click.ClickException(f"cannot --rewindow the store at {song_store.location}: {NO_WINDOWS_LAYOUT}")
        if song_store is not None and server is None and not prune and not rewindow:
            unchanged = all_unchanged(song_store, paths)
            # Nothing to embed: no model to load. (Only songs stored by this version carry size and mtime, so
            # a store that needs re-indexing for its audio preprocessing never takes this path.)
            if unchanged is not None:
                click.echo(unchanged.summary())
                return
        if song_store is None:
            song_store = stack.enter_context(open_configured_store(settings, wanted))
        indexer = Indexer(song_store, encoder, settings, on_stored=_print_stored if verbose else None,
                          rewindow=rewindow)
        try:
            if server is not None:
                from indexer.subsonic import index_server

                report = index_server(indexer, stack.enter_context(server))
            else:
                report = indexer.run(paths, prune=prune)
        except KeyboardInterrupt:
            click.echo("interrupted: songs written so far are kept; run the same command again to finish",
                       err=True)
            sys.exit(130)
    click.echo(report.summary())


def _music_server(settings: Settings, paths: tuple[Path | str, ...], dry_run: bool) -> SubsonicClient | None:
    """The configured music server, its login checked, when PATHS is the word ``subsonic``; else None."""
    if SUBSONIC not in paths:
        return None
    if len(paths) > 1:
        raise click.UsageError("`index subsonic` takes no other PATHS; index folders in a run of their own "
                               "(a folder named subsonic is ./subsonic)")
    if dry_run:
        raise click.UsageError("`index subsonic` has no --dry-run: it removes only the songs the server no longer lists")
    from image2mood.subsonic import SubsonicClient

    client = SubsonicClient.from_settings(settings)
    try:
        client.ping()  # a wrong address or login stops here, before the model loads
    except Exception:
        client.close()
        raise
    return client


def _existing_store(settings: Settings, wanted: StoreInfo) -> SongStore | None:
    """The configured store if it exists, opened (locked) to write what ``wanted`` describes, checked (see
    SongStore.check); None when this run is to create it. A locked or mismatched store raises at once."""
    try:
        return open_configured_store(settings, info=wanted, create=False)
    except (StoreLockedError, StoreMismatchError):
        raise
    except StoreError:
        return None  # not made yet (or unreadable: then creating it below says why)


def _load_clap(settings: Settings) -> ClapEncoder:
    click.echo(f"loading CLAP model {settings.model_spec('clap')} ...", err=True)
    from image2mood.models.factory import clap_encoder

    return clap_encoder(settings)


def _pending_clap(settings: Settings) -> PendingEncoder:
    """The configured CLAP, found (a missing model stops here) but loaded only when a song needs it."""
    from image2mood.models.clap_facts import read_clap_facts
    from image2mood.models.resolve import resolve_model
    from indexer.pipeline import PendingEncoder

    facts = read_clap_facts(resolve_model("clap", settings.model_spec("clap")))
    return PendingEncoder(facts, lambda: _load_clap(settings))


def _print_stored(songs: Sequence[Song]) -> None:
    for song in songs:
        click.echo(f"stored: {shown_path(song.path)}")


def _list_prunable(settings: Settings, roots: list[Path]) -> None:
    """``--prune --dry-run``: the songs a prune would remove, one per line; nothing changes."""
    with open_configured_store(settings, info=None, create=False) as song_store:
        plan = prune_plan(song_store.scroll(), roots)
    for line in plan.warnings():
        click.echo(f"warning: {printable(line)}", err=True)
    for song in plan.remove:
        click.echo(f"would remove: {shown_path(song.path)}")
    click.echo(f"would remove {len(plan.remove)}; nothing was changed (dry run)", err=True)


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--map", "map_file", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Also draw every song on the valence × arousal mood map, into this PNG file.")
@click.pass_obj
def songs(settings: Settings, store: str | None, as_json: bool, map_file: Path | None) -> None:
    """List the songs in the store."""
    settings = with_store(settings, store)
    if map_file is not None and map_file.suffix.lower() != ".png":
        raise click.BadParameter(f"the map is a PNG image: name it something.png, not {map_file.name}",
                                 param_hint="--map")
    with open_configured_store(settings, info=None, create=False) as song_store:
        if map_file is not None:
            _draw_map(settings, song_store, map_file)
        listed = sorted(song_store.scroll(), key=lambda s: (s.artist or "", s.album or "", s.title))
        for song in listed:
            if as_json:
                click.echo(json_line(library_song_json(song)))
            else:
                minutes, seconds = divmod(round(song.duration), 60)
                line = f"{song.artist or '?'} - {song.title}  [{song.album or '-'}]  {minutes}:{seconds:02d}"
                click.echo(f"{printable(line)}  {shown_path(song.path)}")
        if not as_json:
            click.echo(f"{len(listed)} songs in {song_store.location}, built with {song_store.info.describe()}",
                       err=True)


def _draw_map(settings: Settings, song_store: SongStore, path: Path) -> None:
    """Every song of the store on the mood map, placed by the configured CLAP's mood directions."""
    from image2mood.library import store_info
    from image2mood.moodmap import MoodMap
    from image2mood.moods import MOODS, MoodSpace
    from indexer.library_map import plot_library

    encoder = _load_clap(settings)
    song_store.check(store_info(encoder, settings), "read")  # the same CLAP weights made the songs
    space = MoodSpace(encoder.encode_text)
    mood_map = MoodMap(encoder.encode_text, space.vectors)
    listed = list(song_store.scroll(with_vectors=True))
    points = mood_map.place(np.stack([song.vector for song in listed])) if listed else []
    labels = [f"{song.artist} - {song.title}" if song.artist else song.title for song in listed]
    plot_library(path, list(zip(labels, points, strict=True)),
                 list(zip(MOODS, mood_map.place(space.vectors), strict=True)))
    click.echo(f"mood map of {len(listed)} songs written to {path}", err=True)


commands = [IndexGroup(index, commands=[ray_index]), songs]
