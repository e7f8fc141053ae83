"""The house rules the build checks: import-linter's contracts in pyproject.toml hold, and they bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("image2mood", "cli_options", "indexer", "service", "training", "tuning", "image2mood_cli")


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=folder, capture_output=True, text=True, timeout=120)


def test_the_contracts_are_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("tuning/metrics.py", "import service.fields", "tuning is not allowed to import service"),
    ("indexer/prune.py", "import training.data", "indexer is not allowed to import training"),
    ("image2mood/vectors.py", "import indexer.pipeline", "image2mood is not allowed to import indexer"),
    ("cli_options/__init__.py", "import image2mood_cli.main", "cli_options is not allowed to import image2mood_cli"),
    ("image2mood/answers.py", "import flask", "image2mood is not allowed to import flask"),
])
def test_a_forbidden_import_breaks_the_build(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """A copy of the packages with one forbidden import added fails lint-imports, naming the import."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # deliberately forbidden\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
