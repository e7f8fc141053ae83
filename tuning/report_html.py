"""The report as one self-contained HTML page: ``templates/report.html`` (Jinja2, autoescaped), with its
plots (matplotlib PNGs) and photo thumbnails inlined as base64 ``data:`` URLs."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt  # noqa: E402
from jinja2 import Environment, FileSystemLoader, StrictUndefined  # noqa: E402

from image2mood.errors import Image2MoodError  # noqa: E402
from image2mood.images import load_photo  # noqa: E402

THUMB_SIDE = 160
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                        undefined=StrictUndefined, keep_trailing_newline=True)
TEMPLATES.globals["format_number"] = format


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def metric_names(report: dict) -> list[str]:
    """The metrics that have values (those of a set without photos or labels have none)."""
    return [m for m in report["configs"][0]["metrics"] if report["configs"][0]["metrics"][m]["n"]]


def plot_metrics(report: dict) -> str:
    """Each metric against alpha (one line per setting of the other knobs), or per setting when alpha is fixed."""
    names = metric_names(report)
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    alphas = sorted({c["knobs"]["alpha"] for c in report["configs"]})
    for ax, metric in zip(axes.flat, names):
        if len(alphas) > 1:
            groups: dict[str, list[dict]] = {}
            for config in report["configs"]:
                rest = " ".join(p for p in config["name"].split() if not p.startswith("alpha=")) or "all"
                groups.setdefault(rest, []).append(config)
            for label, members in groups.items():
                members.sort(key=lambda c: c["knobs"]["alpha"])
                x = [c["knobs"]["alpha"] for c in members]
                y = [c["metrics"][metric]["mean"] for c in members]
                low = [c["metrics"][metric]["low"] for c in members]
                high = [c["metrics"][metric]["high"] for c in members]
                ax.plot(x, y, marker="o", label=label)
                ax.fill_between(x, low, high, alpha=0.2)
            ax.set_xlabel("alpha (image-route weight)")
            if len(groups) > 1:
                ax.legend(fontsize=7)
        else:
            configs = report["configs"]
            means = [c["metrics"][metric]["mean"] for c in configs]
            errors = [[m - c["metrics"][metric]["low"] for m, c in zip(means, configs)],
                      [c["metrics"][metric]["high"] - m for m, c in zip(means, configs)]]
            ax.bar(range(len(configs)), means, yerr=errors, capsize=3)
            ax.set_xticks(range(len(configs)), [c["name"] for c in configs], rotation=30, ha="right", fontsize=7)
        ax.set_title(metric)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("metrics with bootstrap 95 % intervals")
    fig.tight_layout()
    return _png(fig)


def thumbnail(photo: str | None) -> str | None:
    """A query photo as a small JPEG data: URL, or None when it has none or it no longer loads."""
    if not photo:
        return None
    try:
        image = load_photo(Path(photo), name=photo)
    except Image2MoodError:
        return None
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page."""
    return TEMPLATES.get_template("report.html").render(
        report=report, best=report["configs"][report["best"]["index"]], metrics=metric_names(report),
        plot=plot_metrics(report), thumbnails=[thumbnail(q.get("photo")) for q in report["queries"]])
