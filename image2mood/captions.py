"""Captions in the reader's language, and the captioner's language.

An answer's ``captions`` maps page languages (``en``, ``ko``: :data:`~image2mood.config.CAPTION_LANGUAGES`
maps them to NLLB-200 codes) to the caption in each. English is always there: it is what CLAP's text tower
reads. A BLIP fine-tuned on captions in another language (`train blip --caption-language kor_Hang`) records
that language in its ``config.json`` as ``caption_language``; its captions are translated into English for
CLAP, and the original is the one shown. Reading these imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from image2mood.config import CAPTION_LANGUAGES, Settings
from image2mood.errors import ModelNotFoundError

ENGLISH = CAPTION_LANGUAGES["en"]
LANGUAGE_KEY = "caption_language"
"""The key in a BLIP folder's config.json naming the language (an NLLB code) its captions are in."""

Translate = Callable[[list[str], str, str], list[str]]
"""``translate(texts, src, tgt)`` with NLLB codes, as :meth:`Translator.translate` takes them."""


def caption_language(folder: Path) -> str:
    """The NLLB code of the language the BLIP in ``folder`` writes (English unless its config says otherwise)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ENGLISH
    return str(config.get(LANGUAGE_KEY) or ENGLISH)


def blip_language(settings: Settings) -> str | None:
    """The configured BLIP's caption language when it is not English; None for English or a BLIP not here."""
    from image2mood.models.resolve import resolve_model

    try:
        folder = resolve_model("blip", settings.model_spec("blip"), download=False).folder
    except ModelNotFoundError:
        return None
    language = caption_language(folder)
    return None if language == ENGLISH else language


def language_key(code: str) -> str:
    """The page language of an NLLB code (``kor_Hang`` → ``ko``), or the code itself for one the page lacks."""
    return next((lang for lang, nllb in CAPTION_LANGUAGES.items() if nllb == code), code)


def with_languages(captions: dict[str, str], languages: Iterable[str], translate: Translate) -> dict[str, str]:
    """``captions`` (English among them) and the caption in each page language of ``languages`` it lacks,
    translated from the English one."""
    wanted = [lang for lang in dict.fromkeys(languages) if lang not in captions]
    added = {lang: translate([captions["en"]], ENGLISH, CAPTION_LANGUAGES[lang])[0] for lang in wanted}
    return {**captions, **added}


def shown_caption(captions: dict[str, str], language: str | None, original: str | None) -> tuple[str | None, str]:
    """The caption a reader of ``language`` sees, and its language: theirs when there is one, else the
    captioner's own (English for an answer kept before captions had languages)."""
    if language in captions:
        return captions[language], language
    return original, next((lang for lang, text in captions.items() if text == original), "en")
