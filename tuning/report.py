"""The sweep's report: ``report.json`` with every number, and ``report.html`` (:mod:`tuning.report_html`)
that needs nothing else to open."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path

from image2mood.errors import Image2MoodError
from tuning import metrics
from tuning.report_html import render_html
from tuning.sweep import ConfigResult, SweepResult

FORMAT = "image2mood-tune-report/1"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"


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


def write(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path
