"""`image2mood tune make-set | run | compare`: measure retrieval quality and sweep the knobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from cli_options import store_option, with_store
from image2mood.config import Settings, data_home

_NONE = ("none", "off", "")


def _say(line: str) -> None:
    click.echo(line, err=True)


def _list(kind: Callable[[str], float], low: float | None = None, high: float | None = None,
          allow_none: bool = False):
    """A click callback for comma-separated values ("0,0.25,0.5"; "none" where allowed)."""
    def parse(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        out = []
        for raw in value.split(","):
            raw = raw.strip().lower()
            if allow_none and raw in _NONE:
                out.append(None)
                continue
            try:
                number = kind(raw)
            except ValueError:
                raise click.BadParameter(f"{raw!r} is not a {'whole number' if kind is int else 'number'}"
                                         f"{' or none' if allow_none else ''}") from None
            if (low is not None and number < low) or (high is not None and number > high):
                raise click.BadParameter(f"{raw} is outside {low:g}..{high if high is not None else '∞'}")
            out.append(number)
        return list(dict.fromkeys(out))
    return parse


@click.group()
def tune() -> None:
    """Measure how well photos find their songs, sweep the knobs, and report."""


@tune.command("make-set")
@click.argument("photos", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns photo,labels (labels separated by ';') or JSONL {\"photo\", \"labels\"}.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the set (default: standard output).")
def make_set(photos: Path, labels_file: Path, out: Path | None) -> None:
    """Build an evaluation set from a folder of PHOTOS and a labels file."""
    from tuning.evalset import make_set as build

    lines = build(photos, labels_file, out, _say)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    _say(f"{len(lines)} queries{f' written to {out}' if out else ''}")


@tune.command("run")
@click.argument("eval_set", metavar="SET.jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.json, report.html and any re-embedded stores.")
@store_option
@click.option("--alpha", callback=_list(float, 0, 1), help="Image-route weights, e.g. 0,0.25,0.5,0.75,1.")
@click.option("--projection", "projections", multiple=True,
              help="Projection checkpoint (repeat to compare several; 'none' for the caption route alone).")
@click.option("--templates", "template_specs", multiple=True,
              help="Mood prompt templates separated by ';', e.g. \"{} music;a {} song\" (repeatable).")
@click.option("--vocabulary", "vocabularies", multiple=True,
              help="Mood words separated by commas, e.g. calm,happy,sad,energetic (repeatable).")
@click.option("--max-per-artist", callback=_list(int, 1, 100, allow_none=True), help="Per-artist caps, e.g. none,1,2.")
@click.option("--mmr", callback=_list(float, 0, 1, allow_none=True), help="MMR lambdas, e.g. none,0.7.")
@click.option("--face-weight", callback=_list(float, 0, 5), help="How far a face pulls the query, e.g. 0,0.5,1.")
@click.option("--windows", callback=_list(int, 1, 64), help="Windows per song, e.g. 3,6 (re-embeds the songs).")
@click.option("--window-seconds", callback=_list(float, 1, 10),
              help="Window lengths in seconds, e.g. 5,10 (re-embeds the songs).")
@click.option("--pooling", callback=lambda c, p, v: None if v is None else _pooling(v),
              help="How a song's windows score against a query: mean,max (one vector each: re-embeds the songs), "
                   "maxsim (its best window, from the window vectors the store keeps).")
@click.option("--song-labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Songs' labels: CSV song,labels or JSONL (default: the genre tags in the store).")
@click.option("-k", "--top", "k", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Cut-off K of the metrics.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Query-vector cache (default: ~/.local/share/image2mood/tune-cache).")
@click.option("--write-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the best setting as IMAGE2MOOD_* lines (a .env file) here.")
@click.pass_obj
def run(settings: Settings, eval_set: Path, out: Path, store: str | None, alpha, projections, template_specs,
        vocabularies, max_per_artist, mmr, face_weight, windows, window_seconds, pooling, song_labels: Path | None,
        k: int, cache: Path | None, write_config: Path | None) -> None:
    """Score SET.jsonl on every combination of the given knobs; write DIR/report.json and report.html."""
    from tuning import report
    from tuning.cache import QueryCache
    from tuning.evalset import load_set, load_song_labels
    from image2mood.query import FACE_WEIGHT
    from tuning.knobs import SongVectors, SweepSpec, templates, vocabulary
    from tuning.sweep import Sweep

    settings = with_store(settings, store)
    queries = load_set(eval_set)
    labels = load_song_labels(song_labels) if song_labels else None
    configured = settings.projection_path()
    spec = SweepSpec(
        alphas=alpha or [settings.alpha],
        projections=[None if p.strip().lower() in _NONE else Path(p).expanduser() for p in projections]
        or [configured],
    )
    if template_specs:
        spec.templates = [templates(t) for t in template_specs]
    if vocabularies:
        spec.vocabularies = [vocabulary(v) for v in vocabularies]
    spec.max_per_artist = max_per_artist or [None]
    spec.mmr = mmr or [None]
    spec.face_weights = face_weight or [FACE_WEIGHT]
    spec.k = k
    if windows or window_seconds or pooling:
        spec.song_vectors = [SongVectors(w, s, p) for w in windows or [settings.windows_per_song]
                             for s in window_seconds or [settings.window_seconds] for p in pooling or ["mean"]]
    _say(f"{len(queries)} queries, {len(spec.grid(SongVectors(settings.windows_per_song, settings.window_seconds)))} "
         f"settings, store {settings.store}")
    result = Sweep(settings, out, QueryCache(settings, cache or data_home() / "tune-cache"), _say).run(
        queries, spec, labels)
    built = report.build(result, eval_set.resolve())
    json_path, html_path = report.write(built, out)
    best = built["configs"][built["best"]["index"]]
    for metric, value in best["metrics"].items():
        if value["n"]:
            verdict = best["vs_baseline"].get(metric, {}).get("verdict", "")
            click.echo(f"{metric:>12}  {value['mean']:.3f}  [{value['low']:.3f}, {value['high']:.3f}]  {verdict}")
    click.echo(f"best setting: {best['name']} (by {built['primary']}; baseline: {built['baseline']})")
    click.echo(f"report: {html_path} (numbers: {json_path})")
    if write_config:
        write_settings(write_config, best["knobs"])
        click.echo(f"configuration written to {write_config}")


def _pooling(value: str) -> list[str]:
    from tuning.sweep import POOLINGS

    chosen = [p.strip().lower() for p in value.split(",") if p.strip()]
    bad = [p for p in chosen if p not in POOLINGS]
    if bad or not chosen:
        raise click.BadParameter(f"pooling is one of {', '.join(POOLINGS)} (comma-separated), got {value!r}")
    return list(dict.fromkeys(chosen))


def write_settings(path: Path, knobs: dict) -> None:
    """The best knobs as ``IMAGE2MOOD_*`` lines; knobs the service has no setting for are written as comments."""
    values = {"alpha": knobs["alpha"], "projection": knobs["projection"] or "none",
              "windows_per_song": knobs["windows"], "window_seconds": knobs["window_seconds"],
              "face_weight": knobs["face_weight"], "max_per_artist": knobs["max_per_artist"], "mmr": knobs["mmr"],
              "mood_templates": ";".join(knobs["templates"]), "mood_vocabulary": ",".join(knobs["vocabulary"])}
    lines = ["# best setting found by `image2mood tune run`"]
    for name, value in values.items():
        if value is None:
            continue
        if name in Settings.model_fields:
            lines.append(f"IMAGE2MOOD_{name.upper()}={value}")
        else:
            lines.append(f"# {name}={value}  (no setting for it yet: the built-in value is used)")
    if knobs["pooling"] != "mean":
        lines.append(f"# pooling={knobs['pooling']}  (the product searches the mean-pooled vector only)")
    lines.append("# a changed windows_per_song or window_seconds needs re-indexing into a new store (--store NEW)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@tune.command("compare")
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option("--setting-a", default=None, help="A setting of run A by name (default: its best).")
@click.option("--setting-b", default=None, help="A setting of run B by name (default: its best).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare(a: Path, b: Path, setting_a: str | None, setting_b: str | None, as_json: bool) -> None:
    """Two runs (report folders) side by side: B − A per metric, with its 95 % interval."""
    from tuning import report

    result = report.compare(report.load(a), report.load(b), setting_a, setting_b)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    click.echo(f"A: {a} [{result['a']['setting']}]\nB: {b} [{result['b']['setting']}]\n"
               f"{result['queries']} shared queries")
    click.echo(f"{'metric':>12}  {'A':>6}  {'B':>6}  {'B − A [95 % interval]':<26} verdict")
    for metric, row in result["metrics"].items():
        d = row["difference"]
        interval = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        click.echo(f"{metric:>12}  {row['a']['mean']:6.3f}  {row['b']['mean']:6.3f}  {interval:<26} "
                   f"{row['verdict']}{' (significant)' if row['significant'] else ''}")
