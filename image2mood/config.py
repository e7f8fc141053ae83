"""One settings object for every command, read from ``IMAGE2MOOD_*`` environment variables, ``./.env``
and the user's ``config.env`` (:func:`user_config_file`), in that order of precedence."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from image2mood.models.sets import KINDS, ModelKind, PrecisionName, model_set

PROJECTION_FILE = "projection.pt"
FACES_DIR = "faces"

DEFAULT_SET = model_set("default")
DEFAULT_MODELS: dict[ModelKind, str] = {kind: DEFAULT_SET.hub_id(kind) for kind in KINDS}
"""Each model's hub id in the default model set (image2mood/models/sets/default.json)."""
MODEL_SETTINGS: dict[ModelKind, str] = {"clip": "clip_model", "blip": "blip_model", "clap": "clap_model",
                                        "translator": "translator"}
"""Each model's settings field (``IMAGE2MOOD_`` + its upper case is the variable)."""
CAPTION_LANGUAGES: dict[str, str] = {"en": "eng_Latn", "ko": "kor_Hang"}
"""The page's languages and their NLLB-200 codes: the one place that maps them."""


TINY_MARKER = "image2mood-tiny.json"


def is_tiny(folder: Path) -> bool:
    """True when ``folder`` (a model folder or a model set) holds tiny random models."""
    return (folder / TINY_MARKER).is_file()


def parse_languages(text: str) -> tuple[str, ...]:
    """Comma-separated page languages (``"en,ko"``) as a tuple without repeats; ValueError naming an unknown one."""
    languages = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [lang for lang in languages if lang not in CAPTION_LANGUAGES]
    if unknown or not languages:
        raise ValueError(f"{', '.join(unknown) or 'no language'} is not a caption language: give "
                         f"{' or '.join(CAPTION_LANGUAGES)}, comma-separated")
    return languages


def data_home() -> Path:
    """Where image2mood keeps its own data (the default store) unless told otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "image2mood"


def user_config_file() -> Path:
    """The user's settings file, read from any folder: ``$XDG_CONFIG_HOME/image2mood/config.env``
    (``~/.config/image2mood/config.env`` when XDG_CONFIG_HOME is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "image2mood" / "config.env"


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
    model_set: str = Field(
        default=DEFAULT_SET.name,
        description="The shipped model set (default; music: LAION-CLAP's music checkpoint) whose hub models, at their "
        "pinned revisions, caption size and precision are used wherever no other setting names them.",
    )
    translator: str = Field(
        default=DEFAULT_MODELS["translator"], description="NLLB-200 translator (transformers) hub id or local folder: "
        "captions in the reader's language, and a non-English captioner's captions in English for CLAP.")
    caption_languages: str = Field(
        default="en",
        description="Languages an answer's caption is given in when the request names none (comma-separated: "
        "en, ko); English is always there. Any other needs the translator.",
    )
    projection: str | None = Field(
        default=None,
        description="Projection-head checkpoint mapping CLIP image vectors into CLAP space (\"none\": "
        "use none even if the model set has one); without one the caption route alone serves photos.",
    )
    faces: Path | None = Field(
        default=None,
        description="Folder with the face detector and expression weights (`image2mood models faces` writes "
        "it); default: the model set's faces/, else ~/.local/share/image2mood/faces.",
    )
    face_min_size: int = Field(default=40, ge=12, description="Smallest face looked for, in photo pixels.")
    device: str = Field(default="cpu", description="torch device for the models: cpu, cuda, cuda:1 ...")
    threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = all cores.")

    store: str = Field(
        default_factory=lambda: str(data_home() / "store"),
        description="Embedded store folder, or a Qdrant server URL (http://host:6333), or :memory:.",
    )
    qdrant_api_key: str | None = Field(default=None, description="API key for a Qdrant server.")
    collection: str = Field(default="songs", description="Collection name in a Qdrant server.")
    qdrant_shards: int = Field(default=1, ge=1, le=1024, description="Shards of a collection image2mood makes on a Qdrant "
                               "server: on a cluster, one or more per node, spread over the nodes.")
    qdrant_replication: int = Field(default=1, ge=1, le=16, description="Copies of each shard a new collection keeps "
                                    "on a Qdrant cluster (2: the library survives losing a node).")
    qdrant_write_consistency: int = Field(default=1, ge=1, le=16, description="Copies of a shard that must take a write "
                                          "before it counts as done (at most IMAGE2MOOD_QDRANT_REPLICATION).")

    window_seconds: float = Field(default=10.0, gt=0, description="Length of one CLAP window (s).")
    windows_per_song: int = Field(
        default=6, ge=0, le=64, description="Windows embedded per song, spread evenly over it; 0: every window "
        "(up to 64, then 64 spread evenly).",
    )
    upsert_batch: int = Field(default=16, ge=1, description="Songs written to the store per batch.")
    index_workers: int = Field(default=0, ge=0, le=64, description="Songs `index` embeds at once, each on its own "
                               "share of the cores; 0: one per core (up to 4) on a CPU, one on a GPU.")
    index_nice: int = Field(default=19, ge=0, le=19, description="How much `index` lowers its own CPU priority "
                            "(nice), so that a `serve` on the same machine keeps answering promptly; 0: not at all.")
    exact_search_limit: int = Field(
        default=20_000, ge=0,  # why 20k: image2mood.store.base.EXACT_SEARCH_LIMIT
        description="Libraries up to this many songs compare every full vector; larger ones scan 4-bit codes, "
                    "then rescore the best candidates with their full vectors.",
    )

    alpha: float = Field(default=0.5, ge=0, le=1, description="Weight of the image route in the fused query.")
    top: int = Field(default=10, ge=1, le=100, description="Songs returned per query.")
    highlight_seconds: float = Field(
        default=15.0, ge=1, le=600, description="Length of each answered song's highlight: the part of the song "
        "closest to the query, where the page's players start (a song shorter than this: all of it).")
    caption_tokens: int = Field(default=DEFAULT_SET.caption_tokens, ge=4, le=60,
                                description="Most tokens in a BLIP caption (default: the model set's).")
    caption_image_size: int = Field(
        default=224, ge=0, le=1024, description="Side (px) BLIP sees the photo at, or the model's own where that is "
        "smaller; 0: the model's own (384 for BLIP-base). 224 is about twice as fast.",
    )
    precision: PrecisionName = Field(
        default=DEFAULT_SET.precision, description="Number format of BLIP, CLIP's image tower and CLAP's two towers: auto = bf16 where the "
        "CPU (AVX512-BF16, AMX) or GPU computes it fast, else fp32, and on a CPU int8 weights in BLIP (vision tower "
        "and decoder), CLAP's text tower and the translator; bf16 = bf16 everywhere; int8 = fp32 with int8 weights in "
        "those and in CLAP's audio tower; fp32 = full precision.",
    )
    max_image_pixels: int = Field(default=210_000_000, ge=1, description="Largest photo accepted (pixels).")
    max_decode_mb: int = Field(
        default=280, ge=16, description="Memory one photo's decode may take (MB); JPEG is decoded at reduced "
        "scale, other formats whole.",
    )
    max_upload_mb: float = Field(default=20.0, gt=0, description="Largest upload the service accepts (MB).")
    tune_reports: Path | None = Field(
        default=None,
        description="Folder of saved tuning reports (`image2mood tune run --out DIR/NAME`), listed by `serve` "
        "at /tune; unset, the page is off.",
    )
    results: Path = Field(
        default_factory=lambda: data_home() / "results",
        description="Folder of kept answers (caption, moods, query vector, song ids; a photo's thumbnail only "
        "when its owner shares it), which /r/<id> and the playlist downloads read. An answer is written here "
        "only once it is shared or its playlist is asked for.",
    )
    result_ttl_hours: float = Field(default=168.0, gt=0, description="Hours a kept answer lasts (default a week).")
    results_max_count: int = Field(
        default=10_000, ge=1, description="Most kept answers in the results folder; past it the oldest go first.")
    results_max_mb: float = Field(
        default=500.0, gt=0, description="Most megabytes of kept answers in the results folder; past it the "
        "oldest go first.")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="The address people reach `serve` at (e.g. https://mood.example.org): the "
        "base of playlist URLs and of the share page's og:url. Unset, the request's Host header is used.",
    )
    connection_limit: int = Field(default=1000, ge=1, le=10_000,
                                  description="Most connections `serve` holds open at once.")
    channel_timeout: int = Field(default=30, ge=1, description="Seconds `serve` keeps a silent connection open.")
    trusted_proxy: str | None = Field(
        default=None,
        description="Address of the reverse proxy in front of `serve` (e.g. 127.0.0.1, or * for any); its "
        "X-Forwarded-For/-Proto/-Host/-Port headers are trusted, everyone else's are dropped.",
    )
    subsonic_url: str | None = Field(
        default=None, description="A Subsonic/OpenSubsonic music server (Navidrome, Jellyfin, Airsonic, Gonic ...) "
        "for `index subsonic` and `recommend --push`, e.g. https://music.example.org.",
    )
    subsonic_user: str | None = Field(default=None, description="User name on the Subsonic server.")
    subsonic_password: SecretStr | None = Field(
        default=None, description="Password on the Subsonic server (sent as a salted token where the server takes one).")
    subsonic_api_key: SecretStr | None = Field(
        default=None, description="OpenSubsonic API key, instead of user and password where the server offers one.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments win, then IMAGE2MOOD_* variables, then ./.env, then the user config file
        (``_env_file=None`` reads neither file)."""
        sources = [init_settings, env_settings, dotenv_settings]
        if getattr(dotenv_settings, "env_file", None) is not None:
            sources.append(DotEnvSettingsSource(settings_cls, env_file=user_config_file()))
        return (*sources, file_secret_settings)

    @field_validator("caption_languages")
    @classmethod
    def _known_languages(cls, value: str) -> str:
        return ",".join(parse_languages(value))

    @field_validator("model_set")
    @classmethod
    def _shipped_set(cls, value: str) -> str:
        model_set(value).hub_id("clip")  # a ValueError names the sets there are, or how to use the tiny one
        return value

    @model_validator(mode="after")
    def _set_defaults(self) -> Settings:
        """Caption size and precision not set otherwise are the model set's."""
        chosen = model_set(self.model_set)
        for field in ("caption_tokens", "precision"):
            if field not in self.model_fields_set:
                self.__dict__[field] = getattr(chosen, field)  # a default: left out of model_fields_set
        return self

    def model_spec(self, kind: ModelKind) -> str:
        """The spec for one model: an explicit setting wins, then the model-set folder, then the model set's hub id."""
        field = MODEL_SETTINGS[kind]
        if field in self.model_fields_set:
            return getattr(self, field)
        if self.models is None:
            return model_set(self.model_set).hub_id(kind)
        return str(self.models.expanduser().resolve() / kind)

    def faces_folder(self) -> Path:
        """Where the face weights are: the explicit setting, else the model set's faces/, else the data home's."""
        if self.faces is not None:
            return self.faces.expanduser()
        if self.models is not None:
            return self.models.expanduser().resolve() / FACES_DIR
        return data_home() / FACES_DIR

    def projection_path(self) -> Path | None:
        """The projection checkpoint: the explicit setting, else the model set's, else none."""
        if "projection" in self.model_fields_set:
            off = self.projection is None or self.projection.strip().lower() in ("", "none")
            return None if off else Path(self.projection).expanduser()
        if self.models is not None and (self.models / PROJECTION_FILE).is_file():
            return self.models.expanduser().resolve() / PROJECTION_FILE
        return None
