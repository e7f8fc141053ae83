"""The sweep's report: ``report.json`` with every number, ``report.html`` that needs nothing else to open.

The HTML inlines its plots (matplotlib PNGs) and photo thumbnails as base64 ``data:`` URLs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt  # noqa: E402

from image2mood.errors import Image2MoodError  # noqa: E402
from image2mood.images import load_photo  # noqa: E402
from tuning import metrics  # noqa: E402
from tuning.sweep import ConfigResult, SweepResult  # noqa: E402

FORMAT = "image2mood-tune-report/1"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
THUMB_SIDE = 160


class ReportError(Image2MoodError):
    """A report folder or file that is not a tuning report."""


def _mean(config: dict, metric: str) -> float:
    value = config["metrics"].get(metric, {}).get("mean")
    return -math.inf if value is None or math.isnan(value) else value


def compare_values(a: Sequence[float | None], b: Sequence[float | None]) -> metrics.Comparison | None:
    """Paired comparison over the queries where both sides have a value."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return metrics.paired([x for x, _ in pairs], [y for _, y in pairs]) if pairs else None


def _comparisons(base: ConfigResult, other: ConfigResult) -> dict[str, dict]:
    """Each metric of ``other`` against ``base``, query by query."""
    out = {}
    for name, values in other.per_query.items():
        comparison = compare_values(base.per_query.get(name, []), values)
        if comparison is not None:
            out[name] = comparison.to_json()
    return out


def build(result: SweepResult, set_path: Path) -> dict:
    """Every number of a sweep as one JSON-ready dict; each setting is compared with the baseline."""
    baseline = result.configs[result.baseline]
    configs = []
    for config in result.configs:
        configs.append({
            "name": config.name,
            "knobs": config.knobs.to_json(),
            "metrics": {name: interval.to_json() for name, interval in config.summary().items()},
            "per_query": {name: [None if v is None else round(v, 6) for v in values]
                          for name, values in config.per_query.items()},
            "vs_baseline": _comparisons(baseline, config),
            "health": config.health.to_json(),
            "rankings": [[{"id": r.song.id, "score": round(r.score, 6)} for r in ranked[: result.k]]
                         for ranked in config.rankings],
        })
    best_index = max(range(len(configs)), key=lambda i: _mean(configs[i], result.primary))
    best = result.configs[best_index]
    queries = []
    for qv, ranked, moods in zip(result.queries, best.rankings, best.query_moods):
        relevant = qv.query.relevant or None
        queries.append({
            **qv.query.to_json(),
            "caption": qv.caption,
            "face_moods": {mood: round(w, 4) for mood, w in qv.face_moods.items()},
            "moods": moods,
            "results": [{
                "id": r.song.id, "title": r.song.title, "artist": r.song.artist, "path": r.song.path,
                "score": round(r.score, 6), "moods": [m.mood.key for m in r.moods],
                "labels": sorted(result.song_labels.get(r.song.id, ())),
                "hit": (r.song.id in relevant) if relevant else bool(
                    result.song_labels.get(r.song.id, frozenset()) & qv.query.labels),
            } for r in ranked[: result.k]],
        })
    return {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "set": str(set_path),
        "k": result.k,
        "primary": result.primary,
        "stores": result.stores,
        "cache": result.cache,
        "notes": result.notes,
        "baseline": configs[result.baseline]["name"],
        "best": {"index": best_index, "name": configs[best_index]["name"], "knobs": configs[best_index]["knobs"],
                 "vs_baseline": configs[best_index]["vs_baseline"]},
        "configs": configs,
        "queries": queries,
    }


def load(path: Path) -> dict:
    """A saved report, from its folder or its report.json."""
    path = Path(path)
    file = path / REPORT_JSON if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read a tuning report at {file}: {e}; give a folder written by "
                          "`image2mood tune run --out DIR`") from e
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise ReportError(f"{file} is not a tuning report (format {FORMAT})")
    return report


def pick(report: dict, name: str | None) -> dict:
    """A setting of a report by name, or its best one."""
    if name is None:
        return report["configs"][report["best"]["index"]]
    for config in report["configs"]:
        if config["name"] == name:
            return config
    names = ", ".join(repr(c["name"]) for c in report["configs"])
    raise ReportError(f"no setting named {name!r} in {report['set']}; the settings are {names}")


def compare(a: dict, b: dict, config_a: str | None = None, config_b: str | None = None) -> dict:
    """Two runs side by side: means per metric and the paired difference (B − A) over shared queries."""
    side_a, side_b = pick(a, config_a), pick(b, config_b)
    ids_a, ids_b = [q["id"] for q in a["queries"]], [q["id"] for q in b["queries"]]
    shared = [i for i in ids_a if i in set(ids_b)]
    if not shared:
        raise ReportError("the two reports share no query ids; compare runs of the same evaluation set")
    index_a, index_b = {q: i for i, q in enumerate(ids_a)}, {q: i for i, q in enumerate(ids_b)}
    rows = {}
    for metric, values_a in side_a["per_query"].items():
        values_b = side_b["per_query"].get(metric)
        if values_b is None:
            continue
        va = [values_a[index_a[q]] for q in shared]
        vb = [values_b[index_b[q]] for q in shared]
        comparison = compare_values(va, vb)
        if comparison is None:
            continue
        rows[metric] = {"a": metrics.bootstrap([v for v in va if v is not None]).to_json(),
                        "b": metrics.bootstrap([v for v in vb if v is not None]).to_json(),
                        **comparison.to_json()}
    return {"a": {"set": a["set"], "created": a["created"], "setting": side_a["name"]},
            "b": {"set": b["set"], "created": b["created"], "setting": side_b["name"]},
            "queries": len(shared), "metrics": rows}


# ---------------------------------------------------------------- HTML


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _metric_names(report: dict) -> list[str]:
    return [m for m in report["configs"][0]["metrics"] if report["configs"][0]["metrics"][m]["n"]]


def plot_metrics(report: dict) -> str:
    """Each metric against alpha (one line per setting of the other knobs), or per setting when alpha is fixed."""
    names = _metric_names(report)
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


def _thumbnail(photo: str | None) -> str | None:
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


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _interval(value: dict) -> str:
    if value["n"] == 0:
        return "–"
    return f"{value['mean']:.3f} <small>[{value['low']:.3f}, {value['high']:.3f}]</small>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
th{background:#f3f3f3}.query{display:flex;gap:16px;border-top:1px solid #ddd;padding:12px 0}
.query img{width:160px;height:auto;border-radius:4px}.hit{background:#e3f6e3}.hit td:first-child::before{content:"✓ "}
.note{color:#555}img.plot{max-width:100%}
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _best_section(report: dict, best: dict, names: list[str]) -> str:
    rows = []
    for metric in names:
        versus = best["vs_baseline"].get(metric)
        rows.append([html.escape(metric), _interval(best["metrics"][metric]),
                     _interval(versus["difference"]) if versus else "–",
                     f"<b>{html.escape(versus['verdict'])}</b>" if versus else "–"])
    return (f"<h2>Best setting: {html.escape(best['name'])}</h2><p>by {html.escape(report['primary'])}, against "
            f"the baseline ({html.escape(report['baseline'])}):</p>"
            + _table(["metric", "best", "best − baseline", "verdict"], rows))


def _settings_section(report: dict, names: list[str]) -> str:
    rows = []
    for config in report["configs"]:
        h = config["health"]
        versus = config["vs_baseline"].get(report["primary"], {}).get("verdict", "–")
        rows.append([html.escape(config["name"]), *(_interval(config["metrics"][m]) for m in names),
                     html.escape(versus), _fmt(h["mean_pairwise_cosine"]), _fmt(h["coverage"], ".2f"),
                     _fmt(h["artist_concentration"], ".2f"), _fmt(h["hubness_skew"], ".2f")])
    header = ["setting", *map(html.escape, names), f"{html.escape(report['primary'])} vs baseline",
              "mean cosine", "coverage", "artist share", "hubness skew"]
    return "<h2>Every setting</h2>" + _table(header, rows)


def _health_section(report: dict, best: dict) -> str:
    h, k = best["health"], report["k"]
    artists = ", ".join(f"{artist} {share:.0%}" for artist, share in h["top_artists"])
    rows = [
        ["songs", str(h["songs"])],
        ["mean pairwise cosine of the audio vectors (collapse above ~0.8)", _fmt(h["mean_pairwise_cosine"])],
        ["score spread: std of a query's scores over the library", _fmt(h["score_std"], ".4f")],
        [f"score spread: 1st result minus the one at rank {k}", _fmt(h["top_gap"], ".4f")],
        ["largest share of one artist in a result list", _fmt(h["artist_concentration"], ".2f")],
        ["top artists in all results", html.escape(artists) or "–"],
        [f"coverage: share of the library in any top {k}", _fmt(h["coverage"], ".2f")],
        [f"hubs: songs in the top {k} of half the queries or more",
         f"{len(h['hubs'])} (skew of how often songs appear: {_fmt(h['hubness_skew'], '.2f')})"],
    ]
    return "<h2>Library health (best setting)</h2>" + _table(["measure", "value"], rows)


def _query_card(query: dict) -> str:
    e = html.escape
    thumb = _thumbnail(query.get("photo"))
    image = f"<img alt='{e(query['id'])}' src='{thumb}'>" if thumb else ""
    wanted = ", ".join(query.get("labels", [])) or f"{len(query.get('relevant', []))} songs named"
    rows = "".join(
        f"<tr class='{'hit' if r['hit'] else ''}'><td>{i}</td><td>{e(r['title'])}</td><td>{e(r['artist'] or '?')}</td>"
        f"<td>{r['score']:.3f}</td><td>{e(', '.join(r['moods']))}</td><td>{e(', '.join(r['labels']))}</td></tr>"
        for i, r in enumerate(query["results"], 1))
    return (f"<div class='query'>{image}<div><b>{e(query['id'])}</b>: {e(query.get('caption') or query.get('text'))}"
            f"<br><span class='note'>wants: {e(wanted)}; query moods: {e(', '.join(query['moods']))}</span>"
            f"<table><tr><th>#</th><th>title</th><th>artist</th><th>score</th><th>moods</th><th>labels</th></tr>"
            f"{rows}</table></div></div>")


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    names = _metric_names(report)
    best = report["configs"][report["best"]["index"]]
    cache = report["cache"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>image2mood tuning report</title>"
        f"<style>{STYLE}</style></head><body><h1>Tuning report</h1>",
        f"<p>Set <code>{e(report['set'])}</code>, {len(report['queries'])} queries, top {report['k']}, "
        f"created {e(report['created'])}.</p>",
        *(f"<p class='note'>{e(note)}</p>" for note in report["notes"]),
        f"<p class='note'>query vectors: computed {e(json.dumps(cache['computed']))}, "
        f"from the cache {e(json.dumps(cache['hits']))}</p>",
        _best_section(report, best, names),
        f"<h2>Metrics</h2><img class='plot' id='metric-plot' alt='metrics against alpha' src='{plot_metrics(report)}'>",
        _settings_section(report, names),
        _health_section(report, best),
        f"<h2>Per query ({e(best['name'])})</h2>",
        *map(_query_card, report["queries"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def write(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path
