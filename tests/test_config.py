"""Where settings come from: IMAGE2MOOD_* variables, then ./.env, then the user's config.env."""

from __future__ import annotations

from pathlib import Path

import pytest

from image2mood.config import Settings, user_config_file


@pytest.fixture
def user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "xdg" / "image2mood" / "config.env"
    path.parent.mkdir(parents=True)
    return path


def test_user_file_lives_under_xdg_config_home_or_dot_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert user_config_file() == tmp_path / "cfg" / "image2mood" / "config.env"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config_file() == tmp_path / "home" / ".config" / "image2mood" / "config.env"


def test_variables_win_over_dot_env_which_wins_over_the_user_file(
    user_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file.write_text("IMAGE2MOOD_TOP=3\nIMAGE2MOOD_ALPHA=0.25\nIMAGE2MOOD_STORE=/from/user\n")
    (tmp_path / ".env").write_text("IMAGE2MOOD_TOP=4\nIMAGE2MOOD_ALPHA=0.75\n")  # the hermetic fixture's cwd
    monkeypatch.setenv("IMAGE2MOOD_TOP", "5")
    settings = Settings()
    assert (settings.top, settings.alpha, settings.store) == (5, 0.75, "/from/user")


def test_user_file_applies_from_any_folder(user_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_file.write_text("IMAGE2MOOD_WINDOWS_PER_SONG=9\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Settings().windows_per_song == 9
    assert Settings(_env_file=None).windows_per_song == 6  # no files at all when asked for none


def test_bad_value_in_the_user_file_names_the_field(user_file: Path) -> None:
    user_file.write_text("IMAGE2MOOD_TOP=many\n")
    with pytest.raises(ValueError, match="top"):
        Settings()
