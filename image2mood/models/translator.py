"""NLLB-200 through transformers: short texts (captions) from one language into another.

``facebook/nllb-200-distilled-600M`` (the model family that translated the LAION-COCO-NLLB captions)
names languages by codes such as ``eng_Latn`` and ``kor_Hang``: the tokenizer's ``src_lang`` marks
the input, and the first generated token is forced to the target's code. Decoding is greedy and capped
(:data:`MAX_NEW_TOKENS`). Translations are remembered by (text, source, target): the last
:data:`CACHED_TRANSLATIONS`, so a caption seen again costs nothing. On a CPU with ``precision`` auto or
int8, the linear layers run in int8 (:class:`~image2mood.models.precision.Int8Linear`), as BLIP's text decoder does.
"""

from __future__ import annotations

import image2mood.models._torchvision  # noqa: F401  (first: lets transformers import torchvision)

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from image2mood.errors import ModelLoadError
from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.precision import Precision, int8_linears, uses_bf16, uses_int8_weights
from image2mood.models.resolve import ResolvedModel

ENGLISH = "eng_Latn"
MAX_NEW_TOKENS = 48  # a caption is at most 60 BLIP tokens (IMAGE2MOOD_CAPTION_TOKENS); NLLB's pieces are longer
MAX_INPUT_TOKENS = 128
CACHED_TRANSLATIONS = 4096


class Translator:
    """``AutoModelForSeq2SeqLM`` (M2M100/NLLB) with its tokenizer; greedy, capped, batched, cached."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", precision: Precision = "auto",
                 max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        folder = resolved.folder
        self.name = resolved.spec
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        self.model = load_or_explain(resolved, lambda: AutoModelForSeq2SeqLM.from_pretrained(folder)).eval()
        self.tokenizer = load_or_explain(resolved, lambda: AutoTokenizer.from_pretrained(folder))
        checked_tokenizer(resolved, self.tokenizer, self.model.config.vocab_size)
        if self.tokenizer.convert_tokens_to_ids(ENGLISH) == self.tokenizer.unk_token_id:
            raise ModelLoadError(f"the tokenizer of NLLB translator {resolved.spec!r} in {folder} has no language "
                                 f"code {ENGLISH}: it is not an NLLB-200 tokenizer")
        if uses_int8_weights(precision, self.device):
            self.model = int8_linears(self.model)
        elif uses_bf16(precision, self.device):
            self.model = self.model.to(torch.bfloat16)
        self.model = self.model.to(self.device)
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lock = threading.Lock()  # the tokenizer's src_lang and the cache are shared state

    def language_id(self, code: str) -> int:
        """The token id of an NLLB language code; ValueError for a code this tokenizer does not know."""
        token_id = self.tokenizer.convert_tokens_to_ids(code)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{code!r} is not a language code of the NLLB translator {self.name!r} "
                             "(codes look like eng_Latn, kor_Hang)")
        return int(token_id)

    def translate(self, texts: Sequence[str], src: str = ENGLISH, tgt: str = "kor_Hang") -> list[str]:
        """Each text from language ``src`` into ``tgt`` (NLLB codes); the same text when they are equal."""
        if src == tgt:
            return list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if (t, src, tgt) not in self._cache))
            if missing:
                for text, out in zip(missing, self._generate(missing, src, tgt), strict=True):
                    self._cache[(text, src, tgt)] = out
            found = []
            for text in texts:
                self._cache.move_to_end((text, src, tgt))
                found.append(self._cache[(text, src, tgt)])
            while len(self._cache) > CACHED_TRANSLATIONS:
                self._cache.popitem(last=False)
        return found

    def clear_cache(self) -> None:
        """Forget every remembered translation."""
        with self._lock:
            self._cache.clear()

    @torch.inference_mode()
    def _generate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        forced = self.language_id(tgt)
        self.language_id(src)
        self.tokenizer.src_lang = src
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                max_length=MAX_INPUT_TOKENS).to(self.device)
        ids = self.model.generate(**inputs, forced_bos_token_id=forced, max_new_tokens=self.max_new_tokens,
                                  do_sample=False, num_beams=1)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
