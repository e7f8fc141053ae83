"""`image2mood index ray SOURCE...`, and the `index` command that dispatches to it: `index PATH...` indexes
here, `index ray SOURCE...` on a Ray cluster (:mod:`indexer.ray_run`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from cli_options import store_option, with_store
from image2mood.config import Settings
from image2mood.paths import shown_path
from image2mood.store import Song
from image2mood.text import printable
from indexer.options import WindowCount


class IndexGroup(click.Group):
    """`index` with subcommands (`ray`) beside its default command (folders and files): any first word that
    is not a subcommand, an option included, goes to the default command, help too."""

    def __init__(self, default: click.Command, **kwargs) -> None:
        super().__init__(name=default.name, help=default.help, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.args = list(args)  # no options of its own: every word goes on to the command it picks
        return ctx.args

    def invoke(self, ctx: click.Context):
        args, ctx.args = ctx.args, []
        name, command = (args[0], self.commands[args[0]]) if args and args[0] in self.commands else \
            (self.default.name, self.default)
        rest = args[1:] if command is not self.default else args
        with ctx:
            ctx.invoked_subcommand = name
            # the default command reads as `image2mood index ...`, a subcommand as `image2mood index ray ...`
            sub_ctx = command.make_context(ctx.info_name, rest, parent=ctx.parent) if command is self.default \
                else command.make_context(name, rest, parent=ctx)
            with sub_ctx:
                return sub_ctx.command.invoke(sub_ctx)

    def get_usage(self, ctx: click.Context) -> str:
        return self.default.get_usage(ctx)


@click.command("ray")
@click.argument("sources", nargs=-1, required=True)
@store_option
@click.option("--address", default="local", show_default=True,
              help="`local`: start a Ray cluster on this machine; `auto`: join the running one (RAY_ADDRESS); "
                   "`ray://HOST:10001`: a remote cluster through Ray Client.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="CLAP actors (one model each).")
@click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True,
              help="GPUs each CLAP actor takes (0.5: two actors share one GPU).")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Songs per call of an actor.")
@click.option("--windows", type=WindowCount(), default=None,
              help="Windows embedded per song, 1 to 64, or 'all' (as `index`).")
@click.option("--prune", is_flag=True,
              help="Remove stored songs under the SOURCE folders whose files are gone (as `index --prune`).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the run's failures.jsonl goes (default ./image2mood-runs/ray-<UTC time>).")
@click.option("-v", "--verbose", is_flag=True, help="Print 'stored: PATH' for each song once it is stored durably.")
@click.pass_obj
def ray_index(settings: Settings, sources: tuple[str, ...], store: str | None, address: str, workers: int,
              gpus_per_worker: float, batch_size: int, windows: int | None, prune: bool, run_dir: Path | None,
              verbose: bool) -> None:
    """Index SOURCEs on a Ray cluster: folders, manifests (Parquet, CSV or JSONL with a `path` or `uri`
    column, optional `song_id`, `artist`, `title`, `album`) or object-store prefixes (s3://, gs://, file://).

    Decoding runs as Ray tasks and CLAP as a pool of actors (a GPU each with --gpus-per-worker); a Qdrant
    server is written from the workers, an embedded store from this process. Bad files are listed with their
    reasons in the run folder's failures.jsonl; the run ends with `index`'s line."""
    from indexer.ray_index import RayOptions
    from indexer.ray_run import run

    settings = with_store(settings, store)
    if windows is not None:
        settings = settings.model_copy(update={"windows_per_song": windows})
    options = RayOptions(workers=workers, gpus_per_worker=gpus_per_worker, batch_size=batch_size)

    def say(line: str) -> None:
        click.echo(printable(line), err=True)

    try:
        report = run(sources, settings, options, address=address, prune=prune, run_dir=run_dir, say=say,
                     on_stored=_print_stored if verbose else lambda songs: None)
    except KeyboardInterrupt:
        click.echo("interrupted: songs written so far are kept; run the same command again to finish", err=True)
        sys.exit(130)
    for location, reason in report.failures:
        say(f"failed: {reason}")
    click.echo(report.summary())


def _print_stored(songs: Sequence[Song]) -> None:
    for song in songs:
        click.echo(f"stored: {shown_path(song.path)}")
