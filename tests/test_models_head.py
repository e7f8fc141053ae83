"""`image2mood models head`: a model set without a projection head gets one, and photos leave the caption-only route."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_cli, serving
from image2mood.config import PROJECTION_FILE, Settings
from image2mood.models.projection import load_projection
from image2mood.models.resolve import resolve_model
from image2mood_cli.main import cli
from image2mood_cli.models import _ensure_head
from media_captions import captioned_image
from test_web import browser, wait  # noqa: F401  (the Chromium fixture)

QUICK = ["--epochs", "2", "--limit", "200"]  # the tiny models' head means nothing; the full corpus is for real ones


@pytest.fixture
def headless(tiny_models: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model set without its projection head (as `models download` used to leave one)."""
    target = tmp_path / "models"
    shutil.copytree(tiny_models, target, ignore=shutil.ignore_patterns(PROJECTION_FILE))
    return target


def _check(env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, ["models", "check"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _route(photo: Path, env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, ["recommend", str(photo), "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["route"]


def test_models_head_turns_the_fused_route_on(headless: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "IMAGE2MOOD_MODELS": str(headless), "IMAGE2MOOD_STORE": str(tmp_path / "store"),
           "IMAGE2MOOD_THREADS": "1"}
    captioned_image(2, seed=999).save(tmp_path / "photo.png")
    assert "head  none: caption route only" in _check(env)
    assert _route(tmp_path / "photo.png", env) == "caption"

    trained = run_cli(["models", "head", *QUICK], env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "the shipped caption corpus: 200 pairs" in trained.stderr
    assert "photos now take the fused image + caption route" in trained.stdout
    head = load_projection(headless / PROJECTION_FILE, *(resolve_model(k, str(headless / k)) for k in ("clip", "clap")))
    assert (head.config.in_dim, head.config.out_dim) == (64, 512)
    assert f"head  ok       {headless / PROJECTION_FILE} (64 → 512)" in _check(env)
    assert _route(tmp_path / "photo.png", env) == "fused"


def test_head_goes_where_the_settings_look(headless: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    env: dict[str, str | None] = {**cli_env, "IMAGE2MOOD_MODELS": str(headless)}
    off = runner.invoke(cli, ["models", "head", *QUICK], env={**env, "IMAGE2MOOD_PROJECTION": "none"})
    assert off.exit_code == 2 and "IMAGE2MOOD_PROJECTION=none turns the head off" in off.output
    nowhere = runner.invoke(cli, ["models", "head", *QUICK], env={**env, "IMAGE2MOOD_MODELS": None})
    assert nowhere.exit_code == 2 and "give --out FILE" in nowhere.output, nowhere.output

    named = tmp_path / "heads" / "mine.pt"
    made = runner.invoke(cli, ["models", "head", *QUICK], env={**env, "IMAGE2MOOD_PROJECTION": str(named)},
                         catch_exceptions=False)
    assert made.exit_code == 0 and named.is_file(), made.output
    assert not (headless / PROJECTION_FILE).exists()  # the explicit setting wins over the model set's place
    elsewhere = tmp_path / "other.pt"
    told = runner.invoke(cli, ["models", "head", *QUICK, "--out", str(elsewhere)], env=env, catch_exceptions=False)
    assert told.exit_code == 0 and f"use it with IMAGE2MOOD_PROJECTION={elsewhere}" in told.output


def test_download_keeps_a_head_that_fits_its_models(tiny_models: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "set"
    shutil.copytree(tiny_models, target)
    before = (target / PROJECTION_FILE).read_bytes()
    _ensure_head(Settings(_env_file=None, clip_model="some/hub-clip"), target)  # the set's own models are checked
    assert "keeping the projection head" in capsys.readouterr().out
    assert (target / PROJECTION_FILE).read_bytes() == before


def test_the_page_says_when_there_is_no_head(headless: Path, cli_env: dict[str, str], tmp_path: Path,
                                            browser) -> None:  # noqa: F811
    with serving(tmp_path / "store", {**cli_env, "IMAGE2MOOD_MODELS": str(headless)}, tmp_path) as url:
        with urllib.request.urlopen(url + "/api/health", timeout=10) as response:
            assert json.load(response)["models"]["projection"] is None
        browser.get(url + "/")
        wait(browser).until(lambda d: "No projection head" in d.find_element("id", "notices").text)
        notices = browser.find_element("id", "notices").text
        assert "caption alone" in notices and "image2mood models head" in notices, notices
