"""A benchmark's baseline: an earlier revision of the code, checked out by git into a temporary worktree.

The benchmark's own script stays the working tree's; only the code it times (``image2mood``, ``indexer``,
``service``, ``image2mood_cli``) comes from the revision, put first on ``PYTHONPATH`` of a child process run
with the same interpreter and venv. Candidate and baseline then run back to back in one call, so that a
shared machine's drift hits both alike: compare the ratio.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def revision_tree(rev: str) -> Iterator[Path]:
    """A detached worktree of ``rev`` in a temporary folder, removed afterwards (on SIGTERM too)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    tree = folder / "tree"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), rev],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"--baseline {rev}: git worktree add failed: {exc.stderr.strip()}") from None
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def code_env(tree: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``tree``'s packages imported ahead of the working tree's."""
    return {**(os.environ if env is None else env), "PYTHONPATH": str(tree)}


def side_by_side(rows: list[tuple[str, float, float]], unit: str, higher_is_better: bool) -> None:
    """Print ``(what, candidate, baseline)`` rows with the candidate's gain (>1: the candidate is better)."""
    print(f"  {'':<44} {'candidate':>11} {'baseline':>11}  gain")
    for name, new, old in rows:
        gain = (new / old if higher_is_better else old / new) if new and old else float("nan")
        print(f"  {name:<44} {new:9.3f} {unit:<1} {old:9.3f} {unit:<1}  {gain:.2f}x")
