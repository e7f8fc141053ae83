"""Shared checks around ``from_pretrained`` calls: clear errors, tokenizers that really loaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from image2mood.errors import ModelLoadError
from image2mood.models.resolve import FAMILY_NAMES, ResolvedModel

T = TypeVar("T")


def load_or_explain(resolved: ResolvedModel, load: Callable[[], T]) -> T:
    """Run ``load``; a failure becomes a ModelLoadError naming the model and its folder."""
    try:
        return load()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"{FAMILY_NAMES[resolved.kind]} model {resolved.spec!r} in {resolved.folder} could not be "
            f"loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check that "
            f"the folder holds a {FAMILY_NAMES[resolved.kind]} model of the expected kind"
        ) from exc


def checked_tokenizer(resolved: ResolvedModel, tokenizer: T, model_vocab: int) -> T:
    """Refuse a tokenizer that loaded empty (transformers can return one silently when files are
    missing) or whose ids would overflow the model's embedding table."""
    size = len(tokenizer)  # type: ignore[arg-type]
    if size < 16 or size > model_vocab:
        raise ModelLoadError(
            f"{FAMILY_NAMES[resolved.kind]} model {resolved.spec!r} in {resolved.folder}: its tokenizer has "
            f"{size} entries but the model expects at most {model_vocab}; the tokenizer files are "
            f"missing or belong to another model"
        )
    return tokenizer
