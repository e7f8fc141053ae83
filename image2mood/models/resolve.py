"""Turn a model spec (a local folder or a hub id) into a local folder holding a complete model.

Every model image2mood uses loads from a local folder; this module is the one place that decides
which folder. A spec that names an existing folder is used as it is. Anything else is a Hugging Face
hub id: the local hub cache is tried first (no network at all), and only when the model is not
cached, and the hub is not switched off (``HF_HUB_OFFLINE=1``), is it downloaded. A model that cannot
be had raises :class:`ModelNotFoundError` naming the model, where we looked and how to get it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError

from image2mood.config import ModelKind
from image2mood.errors import ModelNotFoundError, first_line

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")

# Files a complete model folder of each family holds (any one name of each tuple).
REQUIRED_FILES: dict[ModelKind, tuple[tuple[str, ...], ...]] = {
    "clip": (("open_clip_config.json",),),
    "blip": (("config.json",), ("preprocessor_config.json", "processor_config.json"),
             ("tokenizer.json", "vocab.txt")),
    "clap": (("config.json",), ("preprocessor_config.json", "processor_config.json"),
             ("tokenizer.json", "vocab.json")),
}

# What a download fetches: configs, tokenizers and safetensors weights (never TF/Flax copies).
DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]

FAMILY_NAMES: dict[ModelKind, str] = {"clip": "CLIP", "blip": "BLIP", "clap": "CLAP"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model spec and the local folder it resolved to."""

    kind: ModelKind
    spec: str
    folder: Path


def how_to_get(kind: ModelKind, spec: str) -> str:
    """The fix, in words, for a model that is not here."""
    setting = f"IMAGE2MOOD_{kind.upper()}_MODEL"
    return (
        f"get it on a machine with internet (`image2mood models download DIR`, then copy DIR here and "
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


def download_model(kind: ModelKind, spec: str, target: Path) -> Path:
    """Download hub model ``spec`` into ``target`` (a plain folder), for `image2mood models download`."""
    try:
        snapshot_download(spec, local_dir=target, allow_patterns=DOWNLOAD_PATTERNS)
    except Exception as exc:  # the hub client raises many kinds; all mean "could not download"
        raise ModelNotFoundError(
            f"could not download {FAMILY_NAMES[kind]} model {spec!r} from the Hugging Face hub: {exc}"
        ) from exc
    absent = missing_files(kind, target)
    if absent:
        raise ModelNotFoundError(
            f"{FAMILY_NAMES[kind]} model {spec!r} on the hub lacks {', '.join(absent)} "
            f"(only safetensors weights are fetched); choose another model id"
        )
    return target


def _from_hub(kind: ModelKind, spec: str, download: bool) -> Path:
    family = FAMILY_NAMES[kind]
    cache = constants.HF_HUB_CACHE
    try:
        return Path(snapshot_download(spec, local_files_only=True, allow_patterns=DOWNLOAD_PATTERNS))
    except HFValidationError as exc:
        raise ModelNotFoundError(f"{family} model {spec!r} is neither a folder nor a hub id: {exc}") from exc
    except Exception:  # not in the local cache: fall through to the hub
        pass
    if constants.is_offline_mode():
        raise ModelNotFoundError(
            f"{family} model {spec!r} is not in the Hugging Face cache ({cache}) and the hub is off "
            f"(HF_HUB_OFFLINE=1)", how_to_get(kind, spec))
    if not download:
        raise ModelNotFoundError(
            f"{family} model {spec!r} is not in the Hugging Face cache ({cache})",
            f"`image2mood models check --download` fetches it (needs internet), or {how_to_get(kind, spec)}")
    try:
        return Path(snapshot_download(spec, allow_patterns=DOWNLOAD_PATTERNS))
    except Exception as exc:  # network down, unknown repo, gated repo ...
        raise ModelNotFoundError(
            f"{family} model {spec!r} is not in the Hugging Face cache ({cache}) and could not be "
            f"downloaded ({first_line(exc)})",
            how_to_get(kind, spec)) from exc
