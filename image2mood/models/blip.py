"""BLIP through transformers: a short greedy caption per photo."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor

from image2mood.models.loading import checked_tokenizer, load_or_explain
from image2mood.models.resolve import ResolvedModel


class Captioner:
    """``BlipForConditionalGeneration`` with its processor; greedy decoding, few tokens."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu", max_new_tokens: int = 20) -> None:
        folder = resolved.folder
        self.name = resolved.spec
        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        self.model = load_or_explain(
            resolved, lambda: BlipForConditionalGeneration.from_pretrained(folder)
        ).eval().to(self.device)
        self.processor = load_or_explain(resolved, lambda: BlipProcessor.from_pretrained(folder))
        checked_tokenizer(resolved, self.processor.tokenizer, self.model.config.text_config.vocab_size)

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per RGB image."""
        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        ids = self.model.generate(
            pixel_values=inputs["pixel_values"], max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1
        )
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
