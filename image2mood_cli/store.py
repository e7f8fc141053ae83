"""`image2mood store ...`: move the song store between an embedded folder and a Qdrant server."""

from __future__ import annotations

import click

from cli_options import store_option, with_store
from image2mood.config import Settings


@click.group()
def store() -> None:
    """Work on the song store as a whole."""


@store.command()
@click.option("--to", "target", required=True, metavar="DIR_OR_URL",
              help="The store to copy into: an embedded store folder or a Qdrant server URL (made when missing).")
@click.option("--to-collection", default=None, metavar="NAME",
              help="Collection in the target server (default: IMAGE2MOOD_COLLECTION).")
@click.option("--to-api-key", default=None, metavar="KEY",
              help="API key of the target server (default: IMAGE2MOOD_QDRANT_API_KEY).")
@click.option("--prune", is_flag=True, help="Remove songs from the target that the source does not hold.")
@click.option("--batch", default=None, type=click.IntRange(1, 10_000), help="Songs per durable write (default 1024).")
@store_option
@click.pass_obj
def migrate(settings: Settings, target: str, to_collection: str | None, to_api_key: str | None, prune: bool,
            batch: int | None, store: str | None) -> None:
    """Copy every song of the store (--store, default IMAGE2MOOD_STORE) into --to, vectors and all.

    A rerun after an interruption copies only what is missing. The copy is verified at the end:
    equal counts, and equal payloads and vectors for a random sample of songs.
    """
    from image2mood.store import cluster_layout, open_configured_store
    from image2mood.store.migrate import BATCH, VECTOR_TOLERANCE, open_target
    from image2mood.store.migrate import migrate as copy_store

    settings = with_store(settings, store)
    collection = to_collection or settings.collection
    with open_configured_store(settings, info=None, create=False) as source, \
            open_target(target, source, api_key=to_api_key or settings.qdrant_api_key, collection=collection,
                        **cluster_layout(settings)) as dest:
        click.echo(f"copying {source.count()} songs from {source.location} to {dest.location} ...", err=True)
        report = copy_store(source, dest, prune=prune, batch=batch or BATCH)
    click.echo(f"copied {report.copied}, already there {report.unchanged}, removed {report.removed}; "
               f"verified: equal counts, {report.verified} sampled songs equal (vectors within {VECTOR_TOLERANCE:g})")
    hint = f" IMAGE2MOOD_COLLECTION={collection}" if collection != settings.collection else ""
    click.echo(f"use it with IMAGE2MOOD_STORE={target}{hint}")
