"""What `index --prune` may remove: only songs under the paths of the run whose files are gone.

An unmounted drive looks like an empty folder (its mount point), so emptiness is never taken for
deletion. The run is refused when one of its paths is missing or holds no visible entries (nothing, or
only dot-files). A song whose file is gone is kept, with a warning, when the nearest folder above it
that still exists holds no visible entries: a sub-folder that was a mount point of its own. Songs of a
folder deleted on purpose go, since their nearest existing folder is a non-empty one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from image2mood.errors import Image2MoodError
from image2mood.paths import local_path
from image2mood.store.base import Song


def prune_roots(paths: Iterable[Path]) -> list[Path]:
    """The resolved paths a prune may touch; refuses (Image2MoodError) when one is missing or a folder
    with no visible entries."""
    roots = []
    for path in map(Path, paths):
        if not path.exists():
            raise Image2MoodError(f"refusing to prune: {path} does not exist (is its drive mounted?); "
                                  "nothing was removed")
        if path.is_dir() and not has_visible_entries(path):
            raise Image2MoodError(
                f"refusing to prune: {path} is an empty folder, or holds only dot-files (an unmounted drive's "
                "mount point?); nothing was removed. Mount it, or leave it out of an `index --prune` run")
        roots.append(Path(os.path.realpath(path)))
    return roots


def has_visible_entries(folder: Path) -> bool:
    """Whether ``folder`` holds anything but dot-names (what the indexer walks past)."""
    with os.scandir(folder) as entries:
        return any(not entry.name.startswith(".") for entry in entries)


@dataclass
class PrunePlan:
    """The songs to remove, and those kept because their folder is empty (``kept``: folder -> songs)."""

    remove: list[Song] = field(default_factory=list)
    kept: dict[Path, list[Song]] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        """One line per empty folder whose songs are kept."""
        return [f"keeping {len(songs)} song(s) under {folder}, although their files are gone: the folder is "
                "empty (an unmounted drive's mount point?). Mount it; or, if the songs were deleted, delete the "
                "empty folder and prune again" for folder, songs in sorted(self.kept.items())]


def prune_plan(songs: Iterable[Song], roots: Sequence[Path]) -> PrunePlan:
    """What a prune of ``roots`` does with ``songs``: those under a root whose files are gone are removed,
    in path order, unless their nearest existing folder is empty (see the module docstring)."""
    plan = PrunePlan()
    empty: dict[Path, bool] = {}  # folder -> whether it has no visible entries, asked once per folder
    for song in sorted(songs, key=lambda s: s.path):
        path = local_path(song.path)
        if not any(path.is_relative_to(root) for root in roots) or path.exists():
            continue
        folder = _nearest_existing(path)
        if folder not in empty:
            empty[folder] = folder.is_dir() and not has_visible_entries(folder)
        if empty[folder]:
            plan.kept.setdefault(folder, []).append(song)
        else:
            plan.remove.append(song)
    return plan


def _nearest_existing(path: Path) -> Path:
    return next(folder for folder in path.parents if folder.exists())
