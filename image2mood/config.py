"""One settings object for every command, read from ``IMAGE2MOOD_*`` environment variables and ``.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelKind = Literal["clip", "blip", "clap"]
PROJECTION_FILE = "projection.pt"

DEFAULT_MODELS: dict[ModelKind, str] = {
    "clip": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "blip": "Salesforce/blip-image-captioning-base",
    "clap": "laion/clap-htsat-unfused",
}


TINY_MARKER = "image2mood-tiny.json"


def is_tiny(folder: Path) -> bool:
    """True when ``folder`` (a model folder or a model set) holds tiny random models."""
    return (folder / TINY_MARKER).is_file()


def data_home() -> Path:
    """Where image2mood keeps its own data (the default store) unless told otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "image2mood"


class Settings(BaseSettings):
    """Every knob of image2mood. Environment: ``IMAGE2MOOD_<FIELD>``, e.g. ``IMAGE2MOOD_STORE``."""

    model_config = SettingsConfigDict(env_prefix="IMAGE2MOOD_", env_file=".env", extra="ignore")

    models: Path | None = Field(
        default=None,
        description="A model-set folder holding clip/, blip/ and clap/ (e.g. one written by "
        "`image2mood models tiny DIR`); used for every model not named explicitly.",
    )
    clip_model: str = Field(default=DEFAULT_MODELS["clip"], description="open_clip hub id or local folder.")
    blip_model: str = Field(default=DEFAULT_MODELS["blip"], description="BLIP captioner hub id or local folder.")
    clap_model: str = Field(default=DEFAULT_MODELS["clap"], description="CLAP (transformers) hub id or local folder.")
    projection: str | None = Field(
        default=None,
        description="Projection-head checkpoint mapping CLIP image vectors into CLAP space (\"none\": "
        "use none even if the model set has one); without one the caption route alone serves photos.",
    )
    device: str = Field(default="cpu", description="torch device for the models: cpu, cuda, cuda:1 ...")
    threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = all cores.")

    store: str = Field(
        default_factory=lambda: str(data_home() / "store"),
        description="Embedded store folder, or a Qdrant server URL (http://host:6333), or :memory:.",
    )
    qdrant_api_key: str | None = Field(default=None, description="API key for a Qdrant server.")
    collection: str = Field(default="songs", description="Collection name in a Qdrant server.")

    window_seconds: float = Field(default=10.0, gt=0, description="Length of one CLAP window (s).")
    windows_per_song: int = Field(
        default=6, ge=1, le=64, description="Windows embedded per song, spread evenly over it."
    )
    upsert_batch: int = Field(default=16, ge=1, description="Songs written to the store per batch.")

    alpha: float = Field(default=0.5, ge=0, le=1, description="Weight of the image route in the fused query.")
    top: int = Field(default=10, ge=1, le=100, description="Songs returned per query.")
    caption_tokens: int = Field(default=20, ge=4, le=60, description="Most tokens in a BLIP caption.")
    max_image_pixels: int = Field(default=210_000_000, ge=1, description="Largest photo accepted (pixels).")
    max_upload_mb: float = Field(default=20.0, gt=0, description="Largest upload the service accepts (MB).")

    def model_spec(self, kind: ModelKind) -> str:
        """The spec for one model: an explicit setting wins, then the model-set folder, then the default."""
        field = f"{kind}_model"
        if field in self.model_fields_set or self.models is None:
            return getattr(self, field)
        return str(self.models.expanduser().resolve() / kind)

    def projection_path(self) -> Path | None:
        """The projection checkpoint: the explicit setting, else the model set's, else none."""
        if "projection" in self.model_fields_set:
            off = self.projection is None or self.projection.strip().lower() in ("", "none")
            return None if off else Path(self.projection).expanduser()
        if self.models is not None and (self.models / PROJECTION_FILE).is_file():
            return self.models.expanduser().resolve() / PROJECTION_FILE
        return None
