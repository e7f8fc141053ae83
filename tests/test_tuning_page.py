"""The /tune page of the service: off unless a reports folder is configured; lists runs; serves only their reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from image2mood.config import Settings
from image2mood.library import song_id, store_info
from image2mood.models import factory
from image2mood.store import Song, open_store
from image2mood.vectors import l2_normalise
from image2mood_cli.main import cli
from service.app import create_app


@pytest.fixture(scope="module")
def reports(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reports folder holding one real run (text queries on a small library), a broken one and a way out."""
    work = tmp_path_factory.mktemp("tune-page")
    settings = Settings(_env_file=None, models=tiny_models, store=str(work / "store"))
    rng = np.random.default_rng(3)
    songs = [Song(id=song_id(work / f"s{i}.flac"), path=str(work / f"s{i}.flac"), content_hash=str(i),
                  title=f"Song {i}", artist="Ana", genre="calm" if i % 2 else "happy",
                  vector=l2_normalise(rng.normal(size=512))) for i in range(12)]
    with open_store(settings.store, info=store_info(factory.clap_encoder(settings), settings)) as store:
        store.upsert(songs)
    eval_set = work / "set.jsonl"
    eval_set.write_text("\n".join(json.dumps({"text": t, "labels": [label]})
                                  for t, label in (("calm rain", "calm"), ("a happy day", "happy"))))
    folder = work / "reports"
    result = CliRunner().invoke(cli, ["tune", "run", str(eval_set), "--store", settings.store, "--out",
                                      str(folder / "first-run"), "--cache", str(work / "cache"), "--alpha", "0,1"],
                                env={"IMAGE2MOOD_MODELS": str(tiny_models)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder / "broken").mkdir()
    (folder / "broken" / "report.json").write_text("{not json")
    outside = work / "secret"
    outside.mkdir()
    (outside / "report.html").write_text("secret")
    (outside / "report.json").write_text(json.dumps({"secret": True}))
    (folder / "escape").symlink_to(outside, target_is_directory=True)
    return folder


def client(tiny_models: Path, tmp_path: Path, reports: Path | None):
    settings = Settings(_env_file=None, models=tiny_models, store=str(tmp_path / "served"), tune_reports=reports)
    return create_app(settings).test_client()


def test_the_page_is_off_by_default(tiny_models: Path, tmp_path: Path, reports: Path) -> None:
    web = client(tiny_models, tmp_path, None)
    for url in ("/tune", "/tune/", "/tune/first-run/report.html", "/tune/first-run/report.json"):
        response = web.get(url)
        assert response.status_code == 404, url
    assert "IMAGE2MOOD_TUNE_REPORTS" in web.get("/tune").get_json()["error"]["message"]


def test_the_page_lists_reports_and_serves_only_them(tiny_models: Path, tmp_path: Path, reports: Path) -> None:
    web = client(tiny_models, tmp_path, reports)
    page = web.get("/tune")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    report = json.loads((reports / "first-run" / "report.json").read_text())
    assert "first-run" in text and report["best"]["name"] in text and "/tune/first-run/report.html" in text
    assert "broken" not in text and "escape" not in text  # unreadable or not a report: not listed

    html = web.get("/tune/first-run/report.html")
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert html.get_data() == (reports / "first-run" / "report.html").read_bytes()
    policy = html.headers["Content-Security-Policy"]
    assert "img-src data:" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert web.get("/tune/first-run/report.json").get_json()["format"] == report["format"]

    for url in ("/tune/first-run/store.json", "/tune/first-run/..%2F..%2Fset.jsonl", "/tune/../set.jsonl",
                "/tune/..%2Fsecret/report.html", "/tune/escape/report.html", "/tune/escape/report.json",
                "/tune/broken/report.html", "/tune/.hidden/report.html", "/tune/first-run/stores"):
        response = web.get(url)
        assert response.status_code == 404, url
        assert b"secret" not in response.get_data()
