"""Shared checks around ``from_pretrained`` calls: clear errors, tokenizers that really loaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from image2mood.errors import ModelLoadError, first_line
from image2mood.models.resolve import FAMILY_NAMES, ResolvedModel

T = TypeVar("T")

MIN_TOKENIZER_ENTRIES = 16
"""Fewer entries than this is no real tokenizer: transformers returns a near-empty one (about 5
special tokens) without complaint when a tokenizer's files are missing or empty."""


def load_or_explain(resolved: ResolvedModel, load: Callable[[], T]) -> T:
    """Run ``load``; a failure becomes a ModelLoadError naming the model and its folder."""
    try:
        return load()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"{FAMILY_NAMES[resolved.kind]} model {resolved.spec!r} in {resolved.folder} could not be "
            f"loaded ({first_line(exc)}); check that "
            f"the folder holds a {FAMILY_NAMES[resolved.kind]} model of the expected kind"
        ) from exc


def check_tokenizer_size(tokenizer: object, model_vocab: int, what: str, family: str, fix: str) -> None:
    """Refuse a tokenizer that loaded near-empty or whose ids would overflow the model's embedding
    table (``model_vocab`` rows). ``what`` names the tokenizer, ``fix`` says what to do instead."""
    size = len(tokenizer)  # type: ignore[arg-type]
    if size < MIN_TOKENIZER_ENTRIES or size > model_vocab:
        raise ModelLoadError(
            f"{what} has {size} entries but the model's text tower takes {MIN_TOKENIZER_ENTRIES} to "
            f"{model_vocab}: that is not a {family} tokenizer for this model; {fix}"
        )


def checked_tokenizer(resolved: ResolvedModel, tokenizer: T, model_vocab: int) -> T:
    """``tokenizer``, once :func:`check_tokenizer_size` accepts it for this model."""
    family = FAMILY_NAMES[resolved.kind]
    check_tokenizer_size(
        tokenizer, model_vocab, f"the tokenizer of {family} model {resolved.spec!r} in {resolved.folder}",
        family, "its tokenizer files are missing or belong to another model",
    )
    return tokenizer
