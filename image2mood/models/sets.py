"""Model sets as data: which CLIP, BLIP and CLAP image2mood uses, each pinned to a hub commit, and their sizes.

Each ``sets/NAME.json`` (shipped in the wheel, as open_clip keeps its model configs) holds, per model, the hub
id, the revision (a 40-hex commit), the weights files fetched, the vector width (``dim``), the input size and
the architecture, and for the set its caption size (most BLIP tokens), precision and projection-head width.
``default`` and ``music`` are fetched from the hub; ``tiny`` is written on this machine by
`image2mood models tiny` and has no hub ids. Reading a set imports no torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ModelKind = Literal["clip", "blip", "clap", "translator"]
KINDS: tuple[ModelKind, ...] = ("clip", "blip", "clap", "translator")
PrecisionName = Literal["auto", "fp32", "bf16", "int8"]
SETS_DIR = Path(__file__).with_name("sets")
COMMIT_PATTERN = r"^[0-9a-f]{40}$"


class ModelEntry(BaseModel):
    """One model of a set: where it comes from (``hub_id`` at ``revision``) and its sizes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hub_id: str | None = Field(default=None, description="Hugging Face hub id; none for models written here.")
    revision: str | None = Field(default=None, pattern=COMMIT_PATTERN, description="The hub commit fetched.")
    weights: tuple[str, ...] = Field(default=(), description="Weights files (or patterns) fetched from the hub.")
    dim: int | None = Field(default=None, gt=0, description="Width of the vectors it returns (CLIP, CLAP).")
    image_size: int | None = Field(default=None, gt=0, description="Side (px) of the images it is built for.")
    sample_rate: int | None = Field(default=None, gt=0, description="Audio rate (Hz) it is built for (CLAP).")
    architecture: dict[str, Any] = Field(default_factory=dict, description="Constructor settings of its layers.")

    @model_validator(mode="after")
    def _pinned(self) -> ModelEntry:
        if self.hub_id is not None and (self.revision is None or not self.weights):
            raise ValueError(f"{self.hub_id}: a hub model needs its revision (a 40-hex commit) and its weights files")
        if self.hub_id is None and self.revision is not None:
            raise ValueError("a revision without a hub_id pins nothing")
        return self


class ModelSet(BaseModel):
    """A model set: CLIP, BLIP and CLAP, and the settings that go with them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    caption_tokens: int = Field(ge=4, le=60, description="Most tokens in a BLIP caption.")
    precision: PrecisionName
    projection_hidden: int = Field(ge=0, description="Hidden width of the projection head trained for the set.")
    models: dict[ModelKind, ModelEntry]

    @model_validator(mode="after")
    def _complete(self) -> ModelSet:
        missing = [kind for kind in KINDS if kind not in self.models]
        if missing:
            raise ValueError(f"model set {self.name!r} lacks {', '.join(missing)}")
        return self

    @property
    def from_hub(self) -> bool:
        """True when every model of the set is fetched from the hub (not written on this machine)."""
        return all(entry.hub_id is not None for entry in self.models.values())

    def hub_id(self, kind: ModelKind) -> str:
        """The hub id of ``kind``; a ValueError for a set written on this machine."""
        hub_id = self.models[kind].hub_id
        if hub_id is None:
            raise ValueError(f"model set {self.name!r} is written on this machine, not fetched: "
                             f"`image2mood models tiny DIR`, then IMAGE2MOOD_MODELS=DIR")
        return hub_id


def set_names() -> list[str]:
    """The names of the shipped model sets."""
    return sorted(path.stem for path in SETS_DIR.glob("*.json"))


@cache
def model_set(name: str) -> ModelSet:
    """The shipped model set ``name``; a ValueError naming the sets there are, or the file and its fault."""
    path = SETS_DIR / f"{name}.json"
    if name not in set_names():
        raise ValueError(f"no model set {name!r}: choose one of {', '.join(set_names())}")
    try:
        chosen = ModelSet.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise ValueError(f"model set file {path} is not valid: {exc}") from exc
    if chosen.name != name:
        raise ValueError(f"model set file {path} calls itself {chosen.name!r}; rename one to match")
    return chosen


def pinned_entry(kind: ModelKind, hub_id: str) -> ModelEntry | None:
    """The entry a shipped set gives hub model ``hub_id`` as its ``kind`` (the first set by name), or None."""
    for name in set_names():
        entry = model_set(name).models[kind]
        if entry.hub_id == hub_id:
            return entry
    return None
