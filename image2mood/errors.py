"""Errors a user can cause or fix. Each message names the file, model or setting involved and the fix."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception in one line for a message: ``"TypeName: first non-blank line"`` (or just the type)."""
    line = next((text.strip() for text in str(exc).splitlines() if text.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class Image2MoodError(Exception):
    """Base class: the CLI prints these as one clear line, the service turns them into 4xx JSON."""


class ModelNotFoundError(Image2MoodError):
    """A configured model is neither a local directory nor reachable on the hub (or in its cache).

    ``reason`` says what is missing where; ``fix`` (when given) how to get it. The message holds both.
    """

    def __init__(self, reason: str, fix: str | None = None) -> None:
        super().__init__(f"{reason}; {fix}" if fix else reason)
        self.reason, self.fix = reason, fix


class ModelLoadError(Image2MoodError):
    """A model was found but its files are not a model of the expected kind."""


class AudioDecodeError(Image2MoodError):
    """A music file could not be decoded (corrupt, not audio, unsupported codec, empty)."""


class ImageError(Image2MoodError):
    """A photo could not be used (not an image, truncated, too large)."""


class StoreError(Image2MoodError):
    """The song store could not be opened or used."""


class StoreLockedError(StoreError):
    """The embedded store is held by another process."""


class StoreMismatchError(StoreError):
    """The store was built with another CLAP model or windowing than the one configured now."""
