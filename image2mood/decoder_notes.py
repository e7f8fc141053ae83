"""What audio decoders print: libsndfile's MP3 decoder (mpg123) writes its notes about damage it read past
to file descriptor 2 from C, where Python cannot catch them. :func:`decoder_notes` diverts fd 2 meanwhile
and keeps the lines; :func:`separate_stderr` keeps Python's own messages on the terminal meanwhile."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_NOTES = 5  # decoder notes kept per file
_STDERR_LOCK = threading.Lock()  # one diversion of fd 2 at a time (see decoder_notes)


@contextmanager
def decoder_notes(notes: list[str]) -> Iterator[None]:
    """Divert fd 2 to a temporary file meanwhile and add its lines to ``notes``.

    libsndfile's MP3 decoder (mpg123) prints its notes to fd 2 from C, where Python cannot catch
    them otherwise. The diversion is process-wide: what other threads write to fd 2 meanwhile is
    caught too, so Python's own messages should go through :func:`separate_stderr`.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            notes.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())


@contextmanager
def separate_stderr() -> Iterator[None]:
    """Point ``sys.stderr`` at a duplicate of fd 2 meanwhile, so that Python's messages (progress
    bars, warnings) keep reaching the terminal while decoding diverts fd 2 (see :func:`decoder_notes`)."""
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # None, or a stand-in (a test runner's buffer): not diverted
        on_fd2 = False
    if not on_fd2:
        yield
        return
    sys.stderr.flush()
    with open(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
              errors="backslashreplace") as stream, contextlib.redirect_stderr(stream):
        yield


def kept(notes: list[str]) -> tuple[str, ...]:
    """Each distinct note once, at most ``MAX_NOTES`` of them (then how many more)."""
    unique = list(dict.fromkeys(notes))
    if len(unique) > MAX_NOTES:
        unique[MAX_NOTES:] = [f"... and {len(unique) - MAX_NOTES} more notes"]
    return tuple(unique)
