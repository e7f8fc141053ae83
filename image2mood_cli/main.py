"""Entry point of the `image2mood` command."""

from __future__ import annotations

import gc
import sys

import click

from image2mood.config import Settings, is_tiny
from image2mood.errors import Image2MoodError
from image2mood.text import printable
from image2mood_cli.models import models
from image2mood_cli.store import store
from indexer.cli import commands as indexer_commands
from service.cli import commands as service_commands
from training.cli import train
from tuning.cli import tune


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="image2mood")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """image2mood: a photo in, songs from your own library that fit its mood out."""
    settings = Settings()
    ctx.obj = settings
    if settings.models is not None and is_tiny(settings.models):
        click.echo(f"note: using tiny random models from {settings.models}: the code paths are real, "
                   f"the results are not (see README, 'Real models')", err=True)


cli.add_command(models)
cli.add_command(train)
cli.add_command(store)
cli.add_command(tune)
for command in [*indexer_commands, *service_commands]:
    cli.add_command(command)


def main() -> None:
    """Run the CLI; errors a user can fix print as one line, not a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Image2MoodError as exc:
        click.echo(f"error: {printable(str(exc))}", err=True)  # a file's name can hold terminal escapes
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        # The interpreter's last full collection walks every object torch and transformers made, to free memory
        # the process is about to give back: 0.3-1.1 s of an exit once torch is loaded (bench/README.md,
        # "Fourth round").
        gc.freeze()


if __name__ == "__main__":  # `python -m image2mood_cli.main`: how `train blip --processes N` starts its workers
    main()
