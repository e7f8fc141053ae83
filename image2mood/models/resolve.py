"""Turn a model spec (a local folder or a hub id) into a local folder holding a complete model.

Every model image2mood uses loads from a local folder; this module is the one place that decides
which folder. A spec that names an existing folder is used as it is. Anything else is a Hugging Face
hub id: the local hub cache is tried first (no network at all), and only when the model is not
cached, and the hub is not switched off (``HF_HUB_OFFLINE=1``), is it downloaded. A model that cannot
be had raises :class:`ModelNotFoundError` naming the model, where we looked and how to get it.

A hub id that a shipped model set names (:mod:`image2mood.models.sets`) is fetched, and looked up in the
cache, at that set's pinned revision and with the set's weights files; ``org/name@REVISION`` names
another revision (a commit, a tag or ``main``). :func:`hub_request` says what would be fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, RevisionNotFoundError

from image2mood.config import MODEL_SETTINGS, ModelKind, Settings
from image2mood.errors import ModelNotFoundError, first_line
from image2mood.models.sets import model_set, pinned_entry

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")

# Files a complete model folder of each family holds (any one name of each tuple).
REQUIRED_FILES: dict[ModelKind, tuple[tuple[str, ...], ...]] = {
    "clip": (("open_clip_config.json",),),
    "blip": (("config.json",), ("preprocessor_config.json", "processor_config.json"),
             ("tokenizer.json", "vocab.txt")),
    "clap": (("config.json",), ("preprocessor_config.json", "processor_config.json"),
             ("tokenizer.json", "vocab.json")),
    "translator": (("config.json",), ("tokenizer.json", "sentencepiece.bpe.model")),
}

# What a download fetches: configs and tokenizers, and the weights the model set names, else safetensors
# weights (never TF/Flax copies).
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model")
SAFETENSORS = ("*.safetensors",)
PYTORCH_WEIGHTS: dict[ModelKind, str] = {"translator": "pytorch_model.bin"}
"""For a hub id no model set names: fetched only when the repo has no safetensors weights (NLLB-200's repos
ship a pickled PyTorch file alone; transformers reads it with torch's weights-only loader)."""

FAMILY_NAMES: dict[ModelKind, str] = {"clip": "CLIP", "blip": "BLIP", "clap": "CLAP", "translator": "NLLB translator"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model spec and the local folder it resolved to."""

    kind: ModelKind
    spec: str
    folder: Path


@dataclass(frozen=True)
class HubRequest:
    """What is fetched from the hub for one model: ``repo_id`` at ``revision`` (None: the main branch), the
    files matching ``allow_patterns``, and ``fallback`` too when no safetensors weights came."""

    kind: ModelKind
    repo_id: str
    revision: str | None
    allow_patterns: tuple[str, ...]
    fallback: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.repo_id!r} at revision {self.revision}" if self.revision else f"{self.repo_id!r} (main branch)"


def hub_request(kind: ModelKind, spec: str) -> HubRequest:
    """What hub spec ``org/name`` or ``org/name@REVISION`` fetches: a model set's id at its pinned revision with
    its weights files, an explicit revision as given, any other id from its main branch with safetensors."""
    repo_id, at, revision = spec.partition("@")
    if at and not revision:
        raise ModelNotFoundError(f"{FAMILY_NAMES[kind]} model {spec!r} names no revision after '@'",
                                 f"write {repo_id}@COMMIT, or {repo_id} alone for the model set's pinned revision")
    entry = pinned_entry(kind, repo_id)
    if entry is not None:
        return HubRequest(kind, repo_id, revision or entry.revision, (*CONFIG_PATTERNS, *entry.weights))
    fallback = PYTORCH_WEIGHTS.get(kind)
    return HubRequest(kind, repo_id, revision or None, (*CONFIG_PATTERNS, *SAFETENSORS), (fallback,) if fallback else ())


def download_plan(settings: Settings, kinds: tuple[ModelKind, ...]) -> list[HubRequest]:
    """What `image2mood models download` fetches for ``kinds``: each configured hub model, and the model set's
    where a folder is configured (a model-set folder, which may not exist yet)."""
    chosen = model_set(settings.model_set)
    specs = {kind: settings.model_spec(kind) for kind in kinds}
    return [hub_request(kind, chosen.hub_id(kind) if looks_like_path(spec) else spec) for kind, spec in specs.items()]


def how_to_get(kind: ModelKind, spec: str) -> str:
    """The fix, in words, for a model that is not here."""
    setting = f"IMAGE2MOOD_{MODEL_SETTINGS[kind].upper()}"
    flag = " --with-translator" if kind == "translator" else ""
    return (
        f"get it on a machine with internet (`image2mood models download{flag} DIR`, then copy DIR here and "
        f"set IMAGE2MOOD_MODELS=DIR), or point {setting} at a local folder holding the model; "
        f"to try image2mood with tiny random models: `image2mood models tiny DIR` and IMAGE2MOOD_MODELS=DIR"
    )


def missing_files(kind: ModelKind, folder: Path) -> list[str]:
    """Names of the files a complete ``kind`` model folder lacks (empty when complete)."""
    missing = [" or ".join(names) for names in REQUIRED_FILES[kind]
               if not any((folder / name).is_file() for name in names)]
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (" + ", ".join(WEIGHT_PATTERNS) + ")")
    return missing


def looks_like_path(spec: str) -> bool:
    """A spec written as a path (not ``org/name``) is never sent to the hub."""
    return spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1 or Path(spec).expanduser().exists()


def resolve_model(kind: ModelKind, spec: str, download: bool = True) -> ResolvedModel:
    """Find ``spec`` as a complete local model folder; a hub model not in the cache is downloaded
    when ``download`` is true and the hub is not switched off."""
    family = FAMILY_NAMES[kind]
    if looks_like_path(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(f"{family} model folder {folder} does not exist", how_to_get(kind, spec))
    else:
        folder = _from_hub(kind, spec, download)
    absent = missing_files(kind, folder)
    if absent:
        raise ModelNotFoundError(f"{family} model {spec!r} at {folder} is incomplete: missing {', '.join(absent)}",
                                 how_to_get(kind, spec))
    return ResolvedModel(kind=kind, spec=spec, folder=folder)


def download_model(request: HubRequest, target: Path) -> Path:
    """Download ``request`` into ``target`` (a plain folder), for `image2mood models download`."""
    family = FAMILY_NAMES[request.kind]
    try:
        _snapshot(request, local_dir=target)
    except RevisionNotFoundError as exc:
        raise _no_such_revision(request) from exc
    except Exception as exc:  # the hub client raises many kinds; all mean "could not download"
        raise ModelNotFoundError(
            f"could not download {family} model {request} from the Hugging Face hub: {exc}"
        ) from exc
    absent = missing_files(request.kind, target)
    if absent:
        raise ModelNotFoundError(
            f"{family} model {request} on the hub lacks {', '.join(absent)} "
            f"(fetched: {', '.join((*request.allow_patterns, *request.fallback))}); choose another model id"
        )
    return target


def _snapshot(request: HubRequest, **where: object) -> Path:
    """Fetch ``request``'s files (``where``: ``local_dir`` or ``local_files_only``), and its fallback weights
    when no safetensors came."""
    def fetch(patterns: tuple[str, ...]) -> Path:
        return Path(snapshot_download(request.repo_id, revision=request.revision, allow_patterns=list(patterns),
                                      **where))  # type: ignore[arg-type]

    folder = fetch(request.allow_patterns)
    if request.fallback and not any(folder.glob("*.safetensors")):
        folder = fetch((*request.allow_patterns, *request.fallback))
    return folder


def _no_such_revision(request: HubRequest) -> ModelNotFoundError:
    setting = f"IMAGE2MOOD_{MODEL_SETTINGS[request.kind].upper()}"
    return ModelNotFoundError(
        f"{FAMILY_NAMES[request.kind]} model {request.repo_id!r} has no revision {request.revision} on the hub",
        f"set {setting}={request.repo_id}@COMMIT with a commit the repo has (or @main), or pin it anew in the "
        f"model set's file (image2mood/models/sets/)")


def _from_hub(kind: ModelKind, spec: str, download: bool) -> Path:
    family = FAMILY_NAMES[kind]
    cache = constants.HF_HUB_CACHE
    request = hub_request(kind, spec)
    try:
        return _snapshot(request, local_files_only=True)
    except HFValidationError as exc:
        raise ModelNotFoundError(f"{family} model {spec!r} is neither a folder nor a hub id: {exc}") from exc
    except Exception:  # not in the local cache: fall through to the hub
        pass
    fix = how_to_get(kind, spec)
    if request.revision:
        fix += (f"; a cache holding another revision of it serves with IMAGE2MOOD_{MODEL_SETTINGS[kind].upper()}="
                f"{request.repo_id}@main")
    if constants.is_offline_mode():
        raise ModelNotFoundError(
            f"{family} model {request} is not in the Hugging Face cache ({cache}) and the hub is off "
            f"(HF_HUB_OFFLINE=1)", fix)
    if not download:
        raise ModelNotFoundError(
            f"{family} model {request} is not in the Hugging Face cache ({cache})",
            f"`image2mood models check --download` fetches it (needs internet), or {fix}")
    try:
        return _snapshot(request)
    except RevisionNotFoundError as exc:
        raise _no_such_revision(request) from exc
    except Exception as exc:  # network down, unknown repo, gated repo ...
        raise ModelNotFoundError(
            f"{family} model {request} is not in the Hugging Face cache ({cache}) and could not be "
            f"downloaded ({first_line(exc)})", fix) from exc
