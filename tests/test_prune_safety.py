"""`index --prune` never takes an empty folder for a deletion: a root with no visible entries is refused, and
songs under a sub-folder that exists but is empty (an unmounted sub-mount) are kept, with a warning."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from image2mood.errors import Image2MoodError
from image2mood.store import open_store
from image2mood.store.base import Song
from indexer.prune import prune_plan, prune_roots
from media import write_tone


def songs_at(*paths: Path) -> list[Song]:
    return [Song(id=str(i), path=str(path), content_hash=str(i), title=path.stem) for i, path in enumerate(paths)]


def stored_paths(store: Path) -> set[str]:
    with open_store(str(store), info=None, create=False) as s:
        return {song.path for song in s.scroll()}


def test_a_root_with_no_visible_entries_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "drive"
    root.mkdir()
    with pytest.raises(Image2MoodError, match="is an empty folder"):
        prune_roots([root])
    (root / ".DS_Store").write_text("x")
    (root / ".Trash-1000").mkdir()
    with pytest.raises(Image2MoodError, match=r"refusing to prune: .*drive is an empty folder, or holds only dot-files"):
        prune_roots([root])
    (root / "cover.jpg").write_text("x")
    assert prune_roots([root]) == [root.resolve()]


def test_songs_under_an_empty_sub_folder_are_kept_and_a_deleted_folder_is_pruned(tmp_path: Path) -> None:
    root = tmp_path / "music"
    for folder in ("local", "usb/album", "dots", "gone/deep"):
        (root / folder).mkdir(parents=True)
    (root / "local" / "kept.flac").write_text("x")
    songs = songs_at(root / "local" / "deleted.flac", root / "local" / "kept.flac", root / "usb" / "album" / "a.flac",
                     root / "usb" / "b.flac", root / "dots" / "c.flac", root / "gone" / "deep" / "d.flac",
                     tmp_path / "elsewhere" / "e.flac")
    shutil.rmtree(root / "usb")
    (root / "usb").mkdir()  # an unmounted sub-mount: its mount point is an empty folder
    (root / "dots" / ".directory").write_text("x")  # only dot-files: empty as well
    shutil.rmtree(root / "gone")  # deleted on purpose: the nearest existing folder is the root, which is not empty

    plan = prune_plan(songs, prune_roots([root]))
    assert [Path(s.path).name for s in plan.remove] == ["d.flac", "deleted.flac"]  # in path order
    assert {folder.name: [Path(s.path).name for s in kept] for folder, kept in plan.kept.items()} == {
        "usb": ["a.flac", "b.flac"], "dots": ["c.flac"]}
    warnings = plan.warnings()
    assert len(warnings) == 2 and all("the folder is empty" in line for line in warnings)
    assert f"keeping 2 song(s) under {root.resolve() / 'usb'}" in warnings[1]

    (root / "usb").rmdir()  # the user confirms: the folder is gone, so are its songs
    assert [Path(s.path).name for s in prune_plan(songs, prune_roots([root])).remove] == [
        "d.flac", "deleted.flac", "a.flac", "b.flac"]


def test_the_cli_keeps_an_unmounted_sub_mount_and_refuses_a_root_of_dot_files(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "IMAGE2MOOD_WINDOWS_PER_SONG": "1"}
    music, store = tmp_path / "music", tmp_path / "store"
    (music / "local").mkdir(parents=True)
    (music / "usb").mkdir()
    write_tone(music / "local" / "one.flac", 3, 300)
    write_tone(music / "local" / "two.flac", 3, 350)
    write_tone(music / "usb" / "three.flac", 3, 400)
    index = run_cli(["index", str(music), "--store", str(store)], env, tmp_path)
    assert index.returncode == 0, index.stderr
    everything = stored_paths(store)
    assert len(everything) == 3

    (music / "local" / "two.flac").unlink()
    shutil.rmtree(music / "usb")
    (music / "usb").mkdir()
    dry = run_cli(["index", str(music), "--store", str(store), "--prune", "--dry-run"], env, tmp_path)
    assert dry.stdout.splitlines() == [f"would remove: {music.resolve() / 'local' / 'two.flac'}"], dry.stderr
    assert f"warning: keeping 1 song(s) under {music.resolve() / 'usb'}" in dry.stderr
    pruned = run_cli(["index", str(music), "--store", str(store), "--prune"], env, tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert re.search(r"removed 1, failed 0", pruned.stdout), pruned.stdout
    assert f"warning: keeping 1 song(s) under {music.resolve() / 'usb'}" in pruned.stderr
    assert stored_paths(store) == everything - {str((music / "local" / "two.flac").resolve())}

    shutil.rmtree(music)
    (music / ".Trash-1000").mkdir(parents=True)  # the whole drive away, a dot-folder left on its mount point
    refused = run_cli(["index", str(music), "--store", str(store), "--prune"], env, tmp_path)
    assert refused.returncode == 1
    assert "refusing to prune" in refused.stderr and "nothing was removed" in refused.stderr
    assert stored_paths(store) == everything - {str((music / "local" / "two.flac").resolve())}
