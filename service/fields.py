"""The request fields, typed once: the API (and `recommend`) validate with these models, and
/api/openapi.json is built from them.

An empty field counts as not given. Every bad field (not a number, NaN or ±inf, out of range,
``min_duration`` above ``max_duration``) is a 400 whose message names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from image2mood.config import CAPTION_LANGUAGES, parse_languages
from image2mood.errors import Image2MoodError
from image2mood.recommend import Options
from image2mood.store.base import SongFilter

MAX_TEXT = 1000
"""Longest accepted text field (characters); CLAP reads far fewer tokens."""


class FieldError(Image2MoodError):
    """Request fields that are not what their model allows (the service answers 400)."""


class QueryOptions(BaseModel):
    """What a caller may set on any query: how many songs, which ones, how diverse."""

    model_config = ConfigDict(allow_inf_nan=False, str_strip_whitespace=True, extra="ignore", frozen=True)

    top: int | None = Field(None, ge=1, le=100, description="How many songs to return (default: IMAGE2MOOD_TOP).")
    alpha: float | None = Field(None, ge=0, le=1, description="Photos only: weight of the image route "
                                "(0 = the caption alone, 1 = the picture alone; default: IMAGE2MOOD_ALPHA).")
    artist: str | None = Field(None, max_length=MAX_TEXT, description="Only songs by this artist (exact match).")
    genre: str | None = Field(None, max_length=MAX_TEXT, description="Only songs of this genre (exact match).")
    min_duration: float | None = Field(None, ge=0, description="Shortest song, in seconds.")
    max_duration: float | None = Field(None, ge=0, description="Longest song, in seconds.")
    max_per_artist: int | None = Field(None, ge=1, le=100, description="At most this many songs per artist.")
    mmr: float | None = Field(None, ge=0, le=1,
                              description="Diversify with MMR: 1 = relevance only, 0 = most diverse.")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @model_validator(mode="after")
    def _duration_range(self) -> Self:
        low, high = self.min_duration, self.max_duration
        if low is not None and high is not None and low > high:
            raise PydanticCustomError("duration_range", "'min_duration' ({low:g}) is more than 'max_duration' ({high:g})",
                                      {"low": low, "high": high})
        return self

    def options(self, default_top: int) -> Options:
        """The core's query options (``default_top`` when ``top`` is not given)."""
        return Options(
            top=self.top or default_top, alpha=self.alpha,
            song_filter=SongFilter(artist=self.artist, genre=self.genre,
                                   min_duration=self.min_duration, max_duration=self.max_duration),
            max_per_artist=self.max_per_artist, mmr=self.mmr,
        )


class PhotoForm(QueryOptions):
    """A photo's form fields: its query options, and whether a thumbnail of it is kept with the answer."""

    share_photo: bool = Field(False, description="Keep a small thumbnail (at most 320 px, no metadata) of the photo "
                              "with the kept answer, shown on its shared page /r/<result_id>. The photo itself is "
                              "never kept.")
    lang: str | None = Field(None, max_length=100, description="The languages of the caption, comma-separated ("
                             + ", ".join(CAPTION_LANGUAGES) + "; default: IMAGE2MOOD_CAPTION_LANGUAGES); English is "
                             "always there. The first is the language of the answer's share page and playlists.")

    @field_validator("lang")
    @classmethod
    def _known_languages(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(parse_languages(value))

    def languages(self, default: str) -> tuple[str, ...]:
        """The caption languages asked for, else those of ``default`` (IMAGE2MOOD_CAPTION_LANGUAGES)."""
        return parse_languages(self.lang or default)


class SearchQuery(QueryOptions):
    """A free-text search and its options."""

    q: str = Field(min_length=1, max_length=MAX_TEXT,
                   description="The text to search for, e.g. 'rainy night in the city'.")


class PushForm(BaseModel):
    """A kept answer sent to the configured music server as a playlist."""

    name: str = Field(min_length=1, max_length=200, pattern=r"\S",
                      description="The playlist's name on the server; an existing playlist of yours with this "
                      "name gets these songs instead of its own.")


class VideoForm(BaseModel):
    """A video of a kept answer's song with the photo the answer was for (sent again: it was never kept)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore", frozen=True)

    song: str = Field(min_length=1, max_length=200, description="The id of one of the answer's songs.")
    format: Literal["story", "square", "wide"] = Field(
        "story", description="story: 1080×1920 (a story or reel), square: 1080×1080, wide: 1920×1080.")
    zoom: bool = Field(False, description="Zoom in slowly over the clip.")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        return QueryOptions._blank_is_absent(data)


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], values: Mapping[str, str]) -> Model:
    """Validate request fields with ``model``; a FieldError naming every bad field otherwise."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise FieldError("; ".join(_message(model, error) for error in exc.errors())) from None


def _message(model: type[BaseModel], error: ErrorDetails) -> str:
    if not error["loc"]:  # a rule across fields: its message names them
        return error["msg"]
    name = str(error["loc"][0])
    if error["type"] == "missing":
        return f"'{name}' is required: {model.model_fields[name].description}"
    msg, shown = error["msg"], repr(error["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"'{name}': {msg[0].lower()}{msg[1:]}, got {shown}"


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters, one per field of ``model``, from its JSON schema."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "description": prop.get("description", ""), "schema": value_schema(prop)}
            for name, prop in schema["properties"].items()]


def value_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON schema without its title, description and default, and with ``null`` left out
    (a field that may be left out is simply not sent)."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    (value,) = branches
    return {k: v for k, v in value.items() if k not in ("title", "description", "default")}


def form_properties(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """The fields of ``model`` as multipart form properties (with their descriptions)."""
    return {p["name"]: {**p["schema"], "description": p["description"]} for p in query_parameters(model)}
