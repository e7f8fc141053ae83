"""What `index --prune` may remove: only songs under the paths of the run whose files are gone.

It refuses when one of those paths is missing or an empty folder (an unmounted drive's mount point),
so a drive that is away cannot have its songs deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from image2mood.errors import Image2MoodError
from image2mood.store.base import Song


def prune_roots(paths: Iterable[Path]) -> list[Path]:
    """The resolved paths a prune may touch; refuses (Image2MoodError) when one is missing or an empty folder."""
    roots = []
    for path in map(Path, paths):
        if not path.exists():
            raise Image2MoodError(f"refusing to prune: {path} does not exist (is its drive mounted?); "
                                  "nothing was removed")
        if path.is_dir():
            with os.scandir(path) as entries:
                if next(entries, None) is None:
                    raise Image2MoodError(
                        f"refusing to prune: {path} is an empty folder (an unmounted drive's mount point?); "
                        "nothing was removed. Mount it, or leave it out of an `index --prune` run")
        roots.append(Path(os.path.realpath(path)))
    return roots


def prune_candidates(songs: Iterable[Song], roots: Sequence[Path]) -> list[Song]:
    """The songs under ``roots`` whose files are gone, in path order."""
    under = (s for s in songs if any(Path(s.path).is_relative_to(root) for root in roots))
    return sorted((s for s in under if not Path(s.path).exists()), key=lambda s: s.path)
