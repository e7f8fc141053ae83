"""`index` beside a running `serve`: it lowers its own CPU priority by IMAGE2MOOD_INDEX_NICE (default 19), so
the service's answers keep the cores first (the measured effect: bench/beside.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI
from media import write_tone


def _nice_while_running(args: list[str], env: dict[str, str]) -> tuple[int, int]:
    """The highest nice value the process showed while it ran, and its exit status."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    highest = -20
    while proc.poll() is None:
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
        except OSError:
            break
        highest = max(highest, int(stat.rsplit(")", 1)[1].split()[16]))  # field 19: nice
        time.sleep(0.01)
    return highest, proc.wait(timeout=300)


@pytest.mark.parametrize(("setting", "raised_by"), [(None, 19), ("3", 3)])
def test_index_lowers_its_own_priority_by_the_setting(cli_env: dict[str, str], tmp_path: Path,
                                                      setting: str | None, raised_by: int) -> None:
    music = tmp_path / "music"
    music.mkdir()
    write_tone(music / "a.flac", seconds=12, freq=330)
    env = cli_env if setting is None else {**cli_env, "IMAGE2MOOD_INDEX_NICE": setting}
    highest, status = _nice_while_running([str(CLI), "index", str(music), "--store", str(tmp_path / "store")], env)
    assert status == 0
    assert highest == min(os.nice(0) + raised_by, 19)
