"""The internal page at /tune: the saved tuning reports (`image2mood tune run --out`), off by default.

It is on only when ``IMAGE2MOOD_TUNE_REPORTS`` names a folder; each direct subfolder holding a
``report.json`` is one run. Only ``report.html`` and ``report.json`` of a listed run are served, by name,
never by a path from the request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask import Blueprint, current_app, render_template, send_file
from werkzeug.exceptions import NotFound

tune = Blueprint("tune", __name__, url_prefix="/tune")

REPORT_FILES = {"report.html": "text/html", "report.json": "application/json"}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A report is a static page: its own inline styles and data: images (plots, thumbnails), no scripts.
REPORT_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
                 "form-action 'none'; frame-ancestors 'none'")


def _folder() -> Path:
    folder = current_app.extensions["image2mood"].settings.tune_reports
    if folder is None:
        raise NotFound("the tuning page is off; set IMAGE2MOOD_TUNE_REPORTS to the folder of saved reports")
    return folder.expanduser().resolve()


def _summary(run: Path) -> dict[str, object] | None:
    """What the listing shows of one run, or None when its report.json is not a readable report."""
    try:
        report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        best = report["configs"][report["best"]["index"]]
        value = best["metrics"][report["primary"]]["mean"]
        return {"name": run.name, "created": report["created"], "set": report["set"],
                "queries": len(report["queries"]), "best": best["name"], "primary": report["primary"],
                "value": "–" if value is None else f"{value:.3f}"}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


@tune.get("")
@tune.get("/")
def listing():
    folder = _folder()
    runs = [run for run in folder.iterdir() if RUN_NAME.fullmatch(run.name) and run.is_dir()
            and run.resolve().parent == folder] if folder.is_dir() else []  # what report_file would serve
    reports = [s for s in map(_summary, runs) if s is not None]
    reports.sort(key=lambda s: str(s["created"]), reverse=True)
    return render_template("tune.html", folder=folder.name, reports=reports)  # its name: no path of this machine


@tune.get("/<name>/<filename>")
def report_file(name: str, filename: str):
    """A run's report.html or report.json; anything else, or anything outside the folder, is a 404."""
    folder = _folder()
    if filename not in REPORT_FILES or not RUN_NAME.fullmatch(name):
        raise NotFound("no such report file")
    path = (folder / name / filename).resolve()
    if path.parent.parent != folder or not path.is_file():  # a symlink out of the folder resolves elsewhere
        raise NotFound(f"no report {name!r} in the reports folder")
    response = send_file(path, mimetype=REPORT_FILES[filename], max_age=0)
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    return response
