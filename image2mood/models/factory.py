"""Models load once per process, lazily, and are shared by every thread that asks."""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

import torch

from image2mood.config import ModelKind, Settings
from image2mood.errors import ModelNotFoundError
from image2mood.models.resolve import resolve_model

if TYPE_CHECKING:
    from image2mood.faces.reader import FaceModels
    from image2mood.models.blip import Captioner
    from image2mood.models.clap import ClapEncoder
    from image2mood.models.clip import ImageEncoder
    from image2mood.models.projection import ProjectionHead
    from image2mood.models.translator import Translator

_CLASSES: dict[ModelKind, str] = {"clap": "image2mood.models.clap:ClapEncoder",
                                  "clip": "image2mood.models.clip:ImageEncoder",
                                  "blip": "image2mood.models.blip:Captioner",
                                  "translator": "image2mood.models.translator:Translator"}
"""Each family's class, imported only when first loaded: ``index`` needs CLAP alone, and open_clip
and BLIP's imports cost it a second."""
_lock = threading.Lock()
_loaded: dict[tuple[Any, ...], Any] = {}


def _load(kind: ModelKind, settings: Settings) -> Any:
    spec = settings.model_spec(kind)
    extra: dict[str, Any] = {"precision": settings.precision}
    if kind == "blip":
        extra.update(max_new_tokens=settings.caption_tokens, image_size=settings.caption_image_size)
    if kind == "clap":  # both towers follow the setting (the audio tower's bf16: cosine 0.99998 to fp32)
        extra.update(text_precision=settings.precision)
    key = (kind, spec, settings.device, *sorted(extra.items()))  # every argument the instance is built with
    with _lock:
        if key not in _loaded:
            if settings.threads:
                torch.set_num_threads(settings.threads)
            module, name = _CLASSES[kind].split(":")
            cls = getattr(importlib.import_module(module), name)
            _loaded[key] = cls(resolve_model(kind, spec), device=settings.device, **extra)
        return _loaded[key]


def clap_encoder(settings: Settings) -> ClapEncoder:
    """The process's CLAP encoder for these settings."""
    return _load("clap", settings)


def image_encoder(settings: Settings) -> ImageEncoder:
    """The process's CLIP image encoder for these settings."""
    return _load("clip", settings)


def captioner(settings: Settings) -> Captioner:
    """The process's BLIP captioner for these settings."""
    return _load("blip", settings)


def translator(settings: Settings) -> Translator:
    """The process's NLLB translator for these settings (loaded only when a caption needs translating)."""
    return _load("translator", settings)


def projection_head(settings: Settings) -> ProjectionHead | None:
    """The configured projection head (checked against the configured CLIP and CLAP), or None."""
    path = settings.projection_path()
    if path is None:
        return None
    key = ("projection", str(path), settings.model_spec("clip") + "|" + settings.model_spec("clap"))
    with _lock:
        if key not in _loaded:
            from image2mood.models.projection import load_projection

            clip = resolve_model("clip", settings.model_spec("clip"))
            clap = resolve_model("clap", settings.model_spec("clap"))
            _loaded[key] = load_projection(path, clip, clap)
        return _loaded[key]


def face_models(settings: Settings) -> FaceModels | None:
    """The process's face detector and expression model, or None when they are not installed (CLIP's
    zero-shot reading of the whole photo stands in)."""
    folder = settings.faces_folder()
    key = ("faces", str(folder), settings.face_min_size)
    with _lock:
        if key not in _loaded:
            from image2mood.faces.reader import FaceModels

            try:
                _loaded[key] = FaceModels(folder, settings.face_min_size)
            except ModelNotFoundError:
                _loaded[key] = None
        return _loaded[key]
