"""Music files on disk: which files under a folder are music, what kind of entry a path is, and a file's
content hash. Nothing here decodes; a named pipe is never opened."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from image2mood.errors import AudioDecodeError

SUPPORTED_SUFFIXES = frozenset(".aac .aif .aiff .ape .flac .m4a .mka .mp3 .mp4 .oga .ogg .opus .wav .wma .wv".split())
"""Suffixes picked up when walking folders: what libsndfile or ffmpeg decodes."""


def check_regular_file(path: Path) -> os.stat_result:
    """The ``stat`` of ``path`` if it is a non-empty regular file (symlinks followed), else an
    :class:`AudioDecodeError` that says what it is. Nothing is opened, so a named pipe cannot hang us."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        what = "a symlink that points nowhere" if os.path.lexists(path) else "no such file"
        raise AudioDecodeError(f"cannot decode {path}: {what}") from None
    except OSError as e:
        what = "a symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e)).lower()
        raise AudioDecodeError(f"cannot decode {path}: {what}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AudioDecodeError(f"cannot decode {path}: {_kind(info.st_mode)}, not a file; skipped")
    if info.st_size == 0:
        raise AudioDecodeError(f"no audio in {path}: the file is empty")
    return info


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file ``path``: checked before it is opened (a named pipe
    never is), and again after (O_NONBLOCK, then fstat), in case it was replaced meanwhile."""
    check_regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise AudioDecodeError(f"cannot decode {path}: {(e.strerror or str(e)).lower()}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was checked
        os.close(fd)
        raise AudioDecodeError(f"cannot decode {path}: not a regular file; skipped")
    return fd


def content_hash(path: Path) -> str:
    """SHA-256 hex digest of the regular file's bytes, read in chunks."""
    with open(open_regular(path), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def iter_audio_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the music files under ``paths``, each once, in a deterministic order.

    Folders are walked recursively in sorted order (a folder's files, then its sub-folders), skipping
    dot-names and following symlinks without looping; only supported suffixes (any case) are yielded
    from folders, whatever they are (a named pipe, a dangling symlink, a symlink loop), so that
    :func:`check_regular_file` can say what is wrong with them. A path given explicitly that is not
    a folder is yielded as it is, so a mis-named or missing file gets a clear error instead of vanishing.
    """
    seen: set[Path] = set()
    for root in map(Path, paths):
        if not root.is_dir():
            candidates: Iterable[Path] = [root]
        else:
            candidates = _walk(root)
        for path in candidates:
            key = Path(os.path.realpath(path))  # unlike Path.resolve, never raises (a symlink loop stays as it is)
            if key not in seen:
                seen.add(key)
                yield path


def _walk(root: Path) -> Iterator[Path]:
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            dirs.clear()
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                yield Path(folder, name)
