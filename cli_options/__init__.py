"""Command-line options every tenant shares: below the roof, so tenants import this, never the roof or each other."""

from __future__ import annotations

import click

from image2mood.config import Settings

store_option = click.option(
    "--store", metavar="DIR_OR_URL", default=None,
    help="Embedded store folder or Qdrant server URL (default: IMAGE2MOOD_STORE).",
)


def with_store(settings: Settings, store: str | None) -> Settings:
    """``settings`` with the store a command was given, if any."""
    return settings.model_copy(update={"store": store}) if store else settings
